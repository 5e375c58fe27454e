import type { Config } from '../config';
import type { Logger } from '../log';
import type { Sql } from '../store/db';
import { customersWithHeldMail, unreferencedObjectKeys } from '../store/messages';
import type { ObjectStore } from '../store/objects';
import type { Doorbell } from './doorbell';

// Ingest depends only on storage (DESIGN invariant 2), so Temporal may miss a doorbell: while it is down, or when
// an ingest process dies with rings pending. At start and then every MXF_RECONCILE_MS, ring every customer that has
// held mail; the workflow recounts from PostgreSQL, so an extra ring costs one signal and nothing else.
//
// It also sweeps bodies stored for a transaction that then failed to commit (the ingest deletes them at once, but
// a crash between the two steps leaves one): objects of the last two days older than ORPHAN_AGE_MS with no row.
// The age is hours, far beyond the ingest's 30 s commit timeout and any clock skew between MinIO and us.

export const ORPHAN_AGE_MS = 6 * 3_600_000;

export async function reconcile(deps: {
  sql: Sql;
  doorbell: Pick<Doorbell, 'ring'>;
  log: Logger;
}): Promise<string[]> {
  const customers = await customersWithHeldMail(deps.sql);
  for (const customerId of customers) deps.doorbell.ring(customerId, 0);
  if (customers.length)
    deps.log.debug({ customers: customers.length }, 'reconciler rang customers with held mail');
  return customers;
}

export async function sweepOrphanBodies(
  deps: { sql: Sql; objects: ObjectStore; config: Config; log: Logger },
  now = Date.now(),
) {
  const { sql, objects, config, log } = deps;
  const days = [now, now - 86_400_000].map((t) => new Date(t).toISOString().slice(0, 10));
  const candidates: string[] = [];
  for (const day of days) {
    for await (const item of objects.listObjectsV2(config.s3.bucket, `held/${day}/`, true)) {
      if (item.name && item.lastModified && now - item.lastModified.getTime() > ORPHAN_AGE_MS)
        candidates.push(item.name);
    }
  }
  const orphans = await unreferencedObjectKeys(sql, candidates);
  if (orphans.length) {
    await objects.removeObjects(config.s3.bucket, orphans);
    log.warn({ count: orphans.length }, 'removed message bodies that no held message refers to');
  }
  return orphans;
}

export function startReconciler(
  deps: Parameters<typeof reconcile>[0] & Parameters<typeof sweepOrphanBodies>[0],
) {
  const run = async () => {
    try {
      await reconcile(deps);
      await sweepOrphanBodies(deps);
    } catch (err) {
      deps.log.warn({ err: (err as Error).message }, 'reconciler run failed; will try again');
    }
  };
  void run();
  const timer = setInterval(() => void run(), deps.config.smtp.reconcileMs);
  return () => clearInterval(timer);
}

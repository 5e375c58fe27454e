import type { Config } from '../config';
import type { Logger } from '../log';
import type { Sql } from '../store/db';
import { customersWithHeldMail } from '../store/held';
import { unreferencedObjectKeys } from '../store/messages';
import type { ObjectStore } from '../store/objects';
import type { Doorbell } from './doorbell';

// Ingest depends only on storage (DESIGN invariant 2), so Temporal may miss a doorbell: while it is down, or when
// an ingest process dies with rings pending. At start and then every MXF_RECONCILE_MS, ring every customer that has
// held mail; the workflow recounts from PostgreSQL, so an extra ring costs one signal and nothing else.
//
// It also sweeps bodies stored for a transaction that then failed to commit, or whose ingest died before the
// commit (the ingest cannot delete them itself: a segment may hold bodies that did commit): objects of the last
// two days older than ORPHAN_AGE_MS that no row points at.
// The age is hours, far beyond the ingest's 30 s commit timeout and any clock skew between MinIO and us.

export const ORPHAN_AGE_MS = 6 * 3_600_000;
/** Keys looked up and removed together: a backlog of a million bodies is never listed into memory at once. */
export const SWEEP_PAGE_SIZE = 1000;
/** "mxf\2", with the bucket's hash as the second key; migrations hold "mxf\1". */
const SWEEP_LOCK_KEY = 0x6d78_6602;

export async function reconcile(deps: {
  sql: Sql;
  doorbell: Pick<Doorbell, 'ring'>;
  log: Logger;
  /** Customers whose runbook keeps quarantined mail: that mail alone is no reason to ring. */
  keepQuarantined?: string[];
}): Promise<string[]> {
  const customers = await customersWithHeldMail(deps.sql, deps.keepQuarantined);
  for (const customerId of customers) deps.doorbell.ring(customerId, 0);
  if (customers.length)
    deps.log.debug({ customers: customers.length }, 'reconciler rang customers with held mail');
  return customers;
}

interface SweepDeps {
  sql: Sql;
  objects: Pick<ObjectStore, 'listObjectsV2' | 'removeObjects'>;
  config: Config;
  log: Logger;
}

/** How many orphaned bodies were removed; skipped when another ingest node is sweeping. */
export type SweepResult = { skipped: false; removed: number } | { skipped: true };

export async function sweepOrphanBodies(
  deps: SweepDeps,
  now = Date.now(),
  pageSize = SWEEP_PAGE_SIZE,
): Promise<SweepResult> {
  const removed = await whileSweepLocked(deps.sql, deps.config.s3.bucket, () =>
    sweepPages(deps, now, pageSize),
  );
  if (removed === undefined) return { skipped: true };
  if (removed) deps.log.warn({ count: removed }, 'removed message bodies that no held message refers to');
  return { skipped: false, removed };
}

/**
 * Every ingest node runs the sweep, and they share one bucket: one sweep of a bucket at a time is enough, and two
 * would list the same keys and race to delete them. A try-lock, so a node that finds it taken skips this round
 * instead of queueing behind it; held on a connection of its own, so a node that dies mid-sweep lets go of it.
 */
async function whileSweepLocked<T>(
  sql: Sql,
  bucket: string,
  sweep: () => Promise<T>,
): Promise<T | undefined> {
  const session = await sql.reserve();
  try {
    const [row] = await session<{ locked: boolean }[]>`
      select pg_try_advisory_lock(${SWEEP_LOCK_KEY}::int, hashtext(${bucket})) as locked`;
    if (!row?.locked) return undefined;
    try {
      return await sweep();
    } finally {
      await session`select pg_advisory_unlock(${SWEEP_LOCK_KEY}::int, hashtext(${bucket}))`;
    }
  } finally {
    session.release();
  }
}

/** Candidates a page at a time, in listing order: the listing itself fetches the next page only when asked. */
async function sweepPages(deps: SweepDeps, now: number, pageSize: number): Promise<number> {
  const { objects, config } = deps;
  const days = [now, now - 86_400_000].map((t) => new Date(t).toISOString().slice(0, 10));
  let removed = 0;
  let page: string[] = [];
  for (const day of days) {
    for await (const item of objects.listObjectsV2(config.s3.bucket, `held/${day}/`, true)) {
      if (item.name && item.lastModified && now - item.lastModified.getTime() > ORPHAN_AGE_MS)
        page.push(item.name);
      if (page.length < pageSize) continue;
      removed += await removeOrphans(deps, page);
      page = [];
    }
  }
  return removed + (await removeOrphans(deps, page));
}

async function removeOrphans(deps: SweepDeps, keys: string[]): Promise<number> {
  const orphans = await unreferencedObjectKeys(deps.sql, keys);
  if (orphans.length) await deps.objects.removeObjects(deps.config.s3.bucket, orphans);
  return orphans.length;
}

export function startReconciler(deps: Parameters<typeof reconcile>[0] & SweepDeps) {
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

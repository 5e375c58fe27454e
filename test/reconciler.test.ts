import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import pino from 'pino';
import { ORPHAN_AGE_MS, reconcile, sweepOrphanBodies } from '../src/ingest/reconciler';
import { createSql } from '../src/store/db';
import { commitHeldMessage } from '../src/store/messages';
import { createObjectStore, ensureBucket, type ObjectStore } from '../src/store/objects';
import { heldMessage } from './helpers/fixtures';
import { testConfig } from './helpers/stack';

// The sweeps get a bucket of their own: the sweep removes every old unreferenced body in its bucket, and the
// shared one holds bodies other test files are about to commit.
const config = testConfig({ MXF_S3_BUCKET: `sweep-${randomUUID().slice(0, 8)}` });
const sql = createSql(config);
const objects = createObjectStore(config);
const log = pino({ level: 'silent' });
before(() => ensureBucket(objects, config));
after(() => sql.end());

const day = new Date().toISOString().slice(0, 10);
const later = Date.now() + ORPHAN_AGE_MS + 60_000;

/** Bodies stored under today's prefix; with `held`, each gets a row pointing at it. */
async function storeBodies(n: number, opts: { held?: boolean } = {}): Promise<string[]> {
  const keys = Array.from({ length: n }, () => `held/${day}/${randomUUID()}.eml`);
  for (const key of keys) {
    await objects.putObject(config.s3.bucket, key, Buffer.from('x'));
    if (opts.held)
      await commitHeldMessage(sql, heldMessage('sweep', ['c@sweep.example'], { objectKey: key }));
  }
  return keys;
}

async function bucketKeys(): Promise<string[]> {
  const keys: string[] = [];
  for await (const item of objects.listObjectsV2(config.s3.bucket, 'held/', true)) keys.push(item.name!);
  return keys;
}

/** The object store as the sweep sees it, with its deletions recorded and, if asked, held at a gate. */
function watchedStore(gate?: Promise<void>) {
  const batches: number[] = [];
  let reached!: () => void;
  const deleting = new Promise<void>((resolve) => {
    reached = resolve;
  });
  const store: Pick<ObjectStore, 'listObjectsV2' | 'removeObjects'> = {
    listObjectsV2: (...args) => objects.listObjectsV2(...args),
    async removeObjects(bucket, keys) {
      batches.push(keys.length);
      reached();
      await gate;
      return objects.removeObjects(bucket, keys);
    },
  };
  return { store, batches, deleting };
}

test('the reconciler rings every customer with undelivered held mail, and only those', async () => {
  const id = await commitHeldMessage(sql, heldMessage('reconcile-held', ['a@held.example']));
  const done = await commitHeldMessage(sql, heldMessage('reconcile-done', ['b@done.example']));
  await sql`insert into delivery_ledger (message_id, recipient, target, outcome)
            values (${done}, 'b@done.example', 'restore:mx.done.example:25', 'delivered')`;
  const rung: string[] = [];
  await reconcile({ sql, log, doorbell: { ring: (c: string) => rung.push(c) } });
  assert.ok(rung.includes('reconcile-held'));
  assert.ok(!rung.includes('reconcile-done'), 'a delivered message needs no ring');
  assert.ok(id);
});

test('the orphan sweep removes old bodies no row points at, and keeps the rest', async () => {
  const [kept] = await storeBodies(1, { held: true });
  const [orphan] = await storeBodies(1);
  const deps = { sql, objects, config, log };

  assert.deepEqual(
    await sweepOrphanBodies(deps),
    { skipped: false, removed: 0 },
    'young objects are left alone',
  );
  assert.deepEqual(await sweepOrphanBodies(deps, later), { skipped: false, removed: 1 });
  await assert.rejects(objects.statObject(config.s3.bucket, orphan!));
  await objects.statObject(config.s3.bucket, kept!);
});

test('the orphan sweep works a page at a time: more orphans than a page are all removed, a page per deletion', async () => {
  const kept = await storeBodies(2, { held: true });
  const orphans = await storeBodies(7);
  const { store, batches } = watchedStore();

  const result = await sweepOrphanBodies({ sql, objects: store, config, log }, later, 3);
  assert.deepEqual(result, { skipped: false, removed: 7 });
  assert.ok(batches.length >= 3, `deleted in pages (${batches.join(', ')})`);
  assert.ok(
    batches.every((n) => n <= 3),
    `no deletion beyond the page size (${batches.join(', ')})`,
  );
  const left = await bucketKeys();
  assert.ok(
    kept.every((k) => left.includes(k)) && !orphans.some((k) => left.includes(k)),
    'the bodies with rows are left, and only those',
  );
});

test('one ingest node sweeps at a time: a second sweep while one runs skips, and the lock is let go after', async () => {
  await storeBodies(2);
  let open!: () => void;
  const first = watchedStore(
    new Promise<void>((resolve) => {
      open = resolve;
    }),
  );
  const running = sweepOrphanBodies({ sql, objects: first.store, config, log }, later);
  await first.deleting;

  assert.deepEqual(await sweepOrphanBodies({ sql, objects, config, log }, later), { skipped: true });
  open();
  assert.deepEqual(await running, { skipped: false, removed: 2 });

  const failing = {
    listObjectsV2: () => {
      throw new Error('object store unreachable');
    },
    removeObjects: objects.removeObjects.bind(objects),
  };
  await assert.rejects(sweepOrphanBodies({ sql, objects: failing, config, log }, later));
  assert.deepEqual(
    await sweepOrphanBodies({ sql, objects, config, log }, later),
    { skipped: false, removed: 0 },
    'a failed sweep lets go of the lock',
  );
});

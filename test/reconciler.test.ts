import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import pino from 'pino';
import { ORPHAN_AGE_MS, reconcile, sweepOrphanBodies } from '../src/ingest/reconciler';
import { createSql } from '../src/store/db';
import { commitHeldMessage } from '../src/store/messages';
import { createObjectStore } from '../src/store/objects';
import { heldMessage } from './helpers/fixtures';
import { testConfig } from './helpers/stack';

const config = testConfig();
const sql = createSql(config);
const objects = createObjectStore(config);
const log = pino({ level: 'silent' });
after(() => sql.end());

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
  const now = new Date();
  const day = now.toISOString().slice(0, 10);
  const orphan = `held/${day}/ORPHAN${Date.now()}.eml`;
  const kept = `held/${day}/KEPT${Date.now()}.eml`;
  for (const key of [orphan, kept]) await objects.putObject(config.s3.bucket, key, Buffer.from('x'));
  await commitHeldMessage(sql, heldMessage('sweep', ['c@sweep.example'], { objectKey: kept }));

  assert.deepEqual(
    await sweepOrphanBodies({ sql, objects, config, log }, now.getTime()),
    [],
    'young objects are left alone',
  );
  const later = now.getTime() + ORPHAN_AGE_MS + 60_000;
  const removed = await sweepOrphanBodies({ sql, objects, config, log }, later);
  assert.ok(removed.includes(orphan));
  assert.ok(!removed.includes(kept));
  await assert.rejects(objects.statObject(config.s3.bucket, orphan));
  await objects.statObject(config.s3.bucket, kept);
});

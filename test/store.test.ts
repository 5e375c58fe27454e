import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { createSql } from '../src/store/db';
import { commitHeldMessage } from '../src/store/messages';
import { migrate } from '../src/store/migrate';
import { BodyWriter, createObjectStore, ensureBucket, readBody } from '../src/store/objects';
import { heldMessage } from './helpers/fixtures';
import { testConfig } from './helpers/stack';

const config = testConfig();
const sql = createSql(config);
const objects = createObjectStore(config);
after(() => sql.end());

test('migrations are applied once; a second run is a no-op', async () => {
  assert.deepEqual(await migrate(sql), [], 'the harness already migrated this database');
  const tables = await sql<{ table_name: string }[]>`
    select table_name from information_schema.tables where table_schema = 'public' order by table_name`;
  assert.deepEqual(
    tables.map((t) => t.table_name),
    [
      'api_token',
      'audit_event',
      'delivery_ledger',
      'delivery_pace',
      'filter_health',
      'held_message',
      'held_recipient',
      'mailbox',
      'mailbox_sign_in_link',
      'quarantine_review',
      'schema_migration',
      'submission',
      'submission_recipient',
    ],
  );
});

test('concurrent migrators (ingest, worker, api starting together) do not race', async () => {
  const results = await Promise.all([migrate(sql), migrate(sql), migrate(sql)]);
  assert.deepEqual(results, [[], [], []]);
});

test('the delivery ledger admits one outcome per message, recipient and target', async () => {
  const id = await commitHeldMessage(sql, heldMessage('ledger-test', ['r@c.example']));
  const row = {
    message_id: id,
    recipient: 'r@c.example',
    target: 'restore:mail.c.example:25',
    outcome: 'delivered',
  };
  await sql`insert into delivery_ledger ${sql(row)}`;
  await assert.rejects(
    sql`insert into delivery_ledger ${sql(row)}`,
    /duplicate key value violates unique constraint/,
  );
});

test('MinIO keeps a body byte for byte, and ensureBucket is idempotent', async () => {
  assert.equal(await ensureBucket(objects, config), false, 'the harness created the bucket');
  const body = Buffer.from('Received: from x\r\nSubject: t\r\n\r\nbody \u00e9\r\n.\r\n', 'utf8');
  const key = `test/${randomUUID()}.eml`;
  await objects.putObject(config.s3.bucket, key, body, body.length);
  const chunks: Buffer[] = [];
  for await (const chunk of await objects.getObject(config.s3.bucket, key)) chunks.push(chunk as Buffer);
  const back = Buffer.concat(chunks);
  assert.equal(
    createHash('sha256').update(back).digest('hex'),
    createHash('sha256').update(body).digest('hex'),
  );
});

test('BodyWriter: bodies arriving together share a segment, each readable by its range; big ones stand alone', async () => {
  const writer = new BodyWriter(objects, config.s3.bucket);
  const bodies = Array.from({ length: 10 }, (_, i) =>
    Buffer.from(`Subject: ${i}\r\n\r\n${'x'.repeat(100 * i)}\r\n`),
  );
  const refs = await Promise.all(
    bodies.map((b, i) => writer.put(`held/test/${randomUUID()}-${i}.eml`, Readable.from([b]), 1 << 20)),
  );
  for (const [i, ref] of refs.entries()) {
    assert.ok((await readBody(objects, config.s3.bucket, ref)).equals(bodies[i]!), `body ${i}`);
  }
  const keys = new Set(refs.map((r) => r.objectKey));
  assert.ok(keys.size < refs.length, `ten bodies arriving together used ${keys.size} PUTs`);

  const big = Buffer.alloc(3 * 1024 * 1024 + 7, 'y');
  const chunks: Buffer[] = [];
  for (let at = 0; at < big.length; at += 1_000_000) chunks.push(big.subarray(at, at + 1_000_000));
  const ref = await writer.put(`held/test/${randomUUID()}.eml`, Readable.from(chunks), 50 << 20);
  assert.equal(ref.offset, 0);
  assert.equal(ref.length, big.length);
  assert.ok((await readBody(objects, config.s3.bucket, ref)).equals(big));
});

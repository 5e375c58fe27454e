import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import pino from 'pino';
import { outageWorkflowId } from '../src/domain/outage';
import { ORPHAN_AGE_MS, sweepOrphanBodies } from '../src/ingest/reconciler';
import { startMinio } from '../src/stack/minio';
import { ensureDatabase, startPrivatePostgres } from '../src/stack/postgres';
import type { ManagedProcess } from '../src/stack/process';
import { startTemporalDevServer } from '../src/stack/temporal';
import { createSql } from '../src/store/db';
import { migrate } from '../src/store/migrate';
import { createObjectStore, ensureBucket, type ObjectStore } from '../src/store/objects';
import { statusQuery } from '../src/workflows/messages';
import { eventually } from './helpers/eventually';
import { startIngest, uniqueRunbook } from './helpers/ingest';
import { freePort } from './helpers/ports';
import { transaction } from './helpers/smtp-client';
import { testConfig, testTmp } from './helpers/stack';
import { withWorker } from './helpers/temporal';

// Each fault gets components of its own, so stopping one does not disturb the rest of the suite.
const running: ManagedProcess[] = [];
after(() => Promise.all(running.map((p) => p.stop())));

const runbook = uniqueRunbook('harborview-law');
const to = [(runbook.recipients as string[])[0]!];
const send = (port: number) =>
  transaction(port, { from: 'sender@example.net', to, data: 'Subject: fault\r\n\r\nhello' });
const dir = (name: string) => {
  const path = join(testTmp(), `${name}-${randomUUID().slice(0, 8)}`);
  mkdirSync(path, { recursive: true });
  return path;
};

async function objectCount(objects: ObjectStore, bucket: string): Promise<number> {
  let n = 0;
  for await (const _ of objects.listObjectsV2(bucket, 'held/', true)) n++;
  return n;
}

test('PostgreSQL down: 451 4.3.0 and no half-stored message; back up: accepted again', async () => {
  const pgDir = dir('pg');
  const port = await freePort();
  const startPg = () =>
    startPrivatePostgres({ dir: pgDir, port, logFile: join(pgDir, 'pg.log'), ephemeral: true });
  let pg = await startPg();
  running.push(pg);
  await ensureDatabase(pg.url('postgres'), 'faults');
  const bucket = `faults-${randomUUID().slice(0, 8)}`;
  const env = { DATABASE_URL: pg.url('faults'), MXF_S3_BUCKET: bucket };
  const config = testConfig(env);
  const setup = createSql(config, { max: 1 });
  await migrate(setup).finally(() => setup.end());
  const objects = createObjectStore(config);
  await ensureBucket(objects, config);
  const ingest = await startIngest([runbook], { env });
  try {
    assert.match((await send(ingest.port)).end!, /^250 /);
    await pg.stop();
    const down = await send(ingest.port);
    assert.match(down.end!, /^451 4\.3\.0 /, 'a temporary failure, never a 5xx');
    pg = await startPg();
    running.push(pg);
    assert.match((await send(ingest.port)).end!, /^250 /);
    const [{ n }] = (await ingest.sql`select count(*)::int as n from held_message`) as unknown as [
      { n: number },
    ];
    assert.equal(n, 2, 'exactly the two acknowledged messages are held');
    // The refused message's body was stored before its commit failed; the orphan sweep removes it.
    assert.equal(await objectCount(objects, bucket), 3);
    const later = Date.now() + ORPHAN_AGE_MS + 60_000;
    const swept = await sweepOrphanBodies(
      { sql: ingest.sql, objects, config, log: pino({ level: 'silent' }) },
      later,
    );
    assert.deepEqual(swept, { skipped: false, removed: 1 });
    assert.equal(await objectCount(objects, bucket), 2);
  } finally {
    await ingest.close();
  }
});

test('MinIO down: 451 4.3.0 and no row; back up: accepted again', async () => {
  const minioDir = dir('minio');
  const [port, consolePort] = [await freePort(), await freePort()];
  const base = testConfig();
  const startStore = () =>
    startMinio({
      dir: minioDir,
      port,
      consolePort,
      accessKey: base.s3.accessKey,
      secretKey: base.s3.secretKey,
      logFile: join(minioDir, 'minio.log'),
    });
  let minio = await startStore();
  running.push(minio);
  const env = { MXF_S3_ENDPOINT: `http://127.0.0.1:${port}` };
  await ensureBucket(createObjectStore(testConfig(env)), testConfig(env));
  const faultRunbook = uniqueRunbook('harborview-law');
  const faultTo = [(faultRunbook.recipients as string[])[0]!];
  const ingest = await startIngest([faultRunbook], { env });
  const held = async () => {
    const [{ n }] = (await ingest.sql`
      select count(*)::int as n from held_recipient where customer_id = ${faultRunbook.id}`) as unknown as [
      { n: number },
    ];
    return n;
  };
  const sendHere = () =>
    transaction(ingest.port, { from: 'a@example.net', to: faultTo, data: 'Subject: s3\r\n\r\nhi' });
  try {
    assert.match((await sendHere()).end!, /^250 /);
    await minio.stop();
    assert.match((await sendHere()).end!, /^451 4\.3\.0 /);
    assert.equal(await held(), 1, 'no row for a body that was not stored');
    minio = await startStore();
    running.push(minio);
    assert.match((await sendHere()).end!, /^250 /);
    assert.equal(await held(), 2);
  } finally {
    await ingest.close();
  }
});

test('Temporal down: mail is still accepted, and the outage workflow learns of it once Temporal is back', async () => {
  const temporalPort = await freePort();
  const address = `127.0.0.1:${temporalPort}`;
  const logs = dir('temporal');
  const startTemporal = () =>
    startTemporalDevServer({ port: temporalPort, namespace: 'default', logFile: join(logs, 'temporal.log') });
  const env = { TEMPORAL_ADDRESS: address, MXF_TASK_QUEUE: `faults-${randomUUID()}`, MXF_DOORBELL_MS: '100' };
  const config = testConfig(env);
  const client = new Client({ connection: Connection.lazy({ address }), namespace: 'default' });
  const ingest = await startIngest([runbook], { env, temporal: client });
  const doorbell = ingest.doorbell!;
  try {
    const started = Date.now();
    assert.match((await send(ingest.port)).end!, /^250 /, 'accepted with Temporal unreachable');
    assert.ok(Date.now() - started < 2_000, 'the 250 does not wait for Temporal');
    await eventually(
      'the doorbell keeps the ring pending',
      async () => doorbell.unsent(),
      (u) => u.includes(runbook.id),
    );

    running.push(await startTemporal());
    await withWorker(
      { address, namespace: 'default', taskQueue: config.temporal.taskQueue, sql: ingest.sql },
      async () => {
        const handle = client.workflow.getHandle(outageWorkflowId(runbook.id));
        const status = await eventually(
          'the workflow counts the held mail',
          () => handle.query(statusQuery),
          (s) => s.heldMessages >= 1,
          60_000,
        );
        assert.equal(status.customerId, runbook.id);
        await handle.terminate('test finished');
      },
    );
  } finally {
    await ingest.close();
    await client.connection.close();
  }
});

import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { runbookSchema } from '../src/domain/runbook';
import { startProcess } from '../src/stack/process';
import { createSql } from '../src/store/db';
import { commitHeldMessage } from '../src/store/messages';
import { BodyWriter, createObjectStore } from '../src/store/objects';
import { ringOutage } from '../src/temporal';
import { instructUpdate, statusQuery } from '../src/workflows/messages';
import { startCatcher } from './helpers/catcher';
import { eventually } from './helpers/eventually';
import { heldMessage } from './helpers/fixtures';
import { uniqueRunbook } from './helpers/ingest';
import { freePort } from './helpers/ports';
import { testConfig } from './helpers/stack';

// The worker is killed (SIGKILL) in the middle of a restore batch and started again: every message still reaches
// the primary exactly once, and the ledger agrees with what the primary received.
const config = testConfig();
const sql = createSql(config);
after(() => sql.end());

function startWorker(taskQueue: string) {
  return startProcess('worker', process.execPath, ['--import', 'tsx', join(__dirname, '../src/worker.ts')], {
    env: { ...process.env, MXF_TASK_QUEUE: taskQueue, MXF_LOG_LEVEL: 'error' },
    graceMs: 1,
  });
}

test('a worker killed mid-batch and restarted delivers every message exactly once per target', async () => {
  const MESSAGES = 30;
  const primaryPort = await freePort();
  const runbook = runbookSchema.parse({
    ...uniqueRunbook('harborview-law'),
    primary: [{ host: '127.0.0.1', port: primaryPort }],
    detection: { probeInterval: '1s', confirmAfter: '1s' },
    notify: [{ after: '0s', channels: ['ops-call'] }],
    instructions: { default: { after: '1h', action: 'hold' } },
    restore: { mode: 'approval', ratePerSecond: 1000 },
  });
  const recipient = (runbook.recipients as string[])[0]!;
  const bodies = new BodyWriter(createObjectStore(config), config.s3.bucket);
  for (let i = 0; i < MESSAGES; i++) {
    const raw = Buffer.from(
      `Subject: crash ${i}\r\nMessage-ID: <crash-${i}-${randomUUID()}@test>\r\n\r\nmessage ${i}\r\n`,
    );
    const ref = await bodies.put(`held/test/${randomUUID()}.eml`, Readable.from([raw]), 1 << 20);
    await commitHeldMessage(
      sql,
      heldMessage(runbook.id, [recipient], {
        objectKey: ref.objectKey,
        bodyOffset: ref.offset,
        sizeBytes: ref.length,
        sha256: createHash('sha256').update(raw).digest('hex'),
      }),
    );
  }

  const taskQueue = `crash-${randomUUID()}`;
  const connection = await Connection.connect({ address: config.temporal.address });
  const client = new Client({ connection, namespace: config.temporal.namespace });
  let worker = startWorker(taskQueue);
  let primary: Awaited<ReturnType<typeof startCatcher>> | undefined;
  try {
    const handle = await ringOutage(client, taskQueue, runbook, MESSAGES);
    await eventually(
      'the outage is declared',
      () => handle.query(statusQuery),
      (s) => s.phase === 'awaiting-instructions',
      60_000,
    );
    // The primary comes back, slow: each delivery takes about 100 ms, so a batch of 30 takes 3 s.
    primary = await startCatcher({ port: primaryPort, rcptDelayMs: 100 });
    await handle.executeUpdate(instructUpdate, { args: [{ action: 'restore', actor: 'ops:alice' }] });
    await eventually(
      'the batch is under way',
      async () => primary!.caught.length,
      (n) => n >= 5,
      30_000,
    );
    worker.child.kill('SIGKILL');
    await worker.exited;
    const deliveredBeforeCrash = primary.caught.length;
    assert.ok(deliveredBeforeCrash < MESSAGES, 'killed in the middle of the batch');
    await sleep(500);
    worker = startWorker(taskQueue);

    const result = await handle.result();
    assert.equal(result.phase, 'closed');
    const ids = primary.caught.map((m) => /Message-ID: <([^>]+)>/.exec(m.raw.toString())![1]);
    assert.equal(new Set(ids).size, MESSAGES, 'every message arrived');
    assert.equal(ids.length, MESSAGES, `no message arrived twice (${ids.length} deliveries)`);
    const [{ n }] = (await sql`
      select count(*)::int as n from delivery_ledger d join held_recipient r using (message_id, recipient)
      where r.customer_id = ${runbook.id} and d.outcome = 'delivered'`) as unknown as [{ n: number }];
    assert.equal(n, MESSAGES, 'the ledger agrees with the primary');
  } finally {
    await worker.stop();
    await primary?.close();
    await connection.close();
  }
});

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
// the primary, and the ledger agrees with what the primary received. Exactly once, except for the one message the
// README's "Trust" section allows: a worker killed between the primary's 250 and our ledger write has no record of
// that delivery, and sends that message again. With one SMTP session, at most one message is ever in that window.
const config = testConfig();
const sql = createSql(config);
after(() => sql.end());

function startWorker(taskQueue: string) {
  return startProcess('worker', process.execPath, ['--import', 'tsx', join(__dirname, '../src/worker.ts')], {
    // Monitoring off: the worker would otherwise schedule probes of the shipped runbooks in the shared test
    // Temporal, and a tick while it runs starts outage:harborview-law on this queue, left without a worker for the
    // walkthrough test to trip over.
    env: { ...process.env, MXF_TASK_QUEUE: taskQueue, MXF_LOG_LEVEL: 'error', MXF_MONITOR: 'off' },
    graceMs: 1,
  });
}

test('a worker killed mid-batch and restarted loses nothing, and sends again at most the message in flight', async () => {
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
  /** Message-ID header by held_message id, to tell which message the ledger has no record of. */
  const headerIdOf = new Map<string, string>();
  for (let i = 0; i < MESSAGES; i++) {
    const messageId = `crash-${i}-${randomUUID()}@test`;
    const raw = Buffer.from(`Subject: crash ${i}\r\nMessage-ID: <${messageId}>\r\n\r\nmessage ${i}\r\n`);
    const ref = await bodies.put(`held/test/${randomUUID()}.eml`, Readable.from([raw]), 1 << 20);
    const id = await commitHeldMessage(
      sql,
      heldMessage(runbook.id, [recipient], {
        objectKey: ref.objectKey,
        bodyOffset: ref.offset,
        sizeBytes: ref.length,
        sha256: createHash('sha256').update(raw).digest('hex'),
      }),
    );
    headerIdOf.set(String(id), messageId);
  }
  const headerIds = (caught: { raw: Buffer }[]) =>
    caught.map((m) => /Message-ID: <([^>]+)>/.exec(m.raw.toString())![1]!);
  const recorded = async () => {
    const rows = await sql<{ message_id: string }[]>`
      select d.message_id from delivery_ledger d join held_recipient r using (message_id, recipient)
      where r.customer_id = ${runbook.id} and d.outcome = 'delivered'`;
    return rows.map((r) => headerIdOf.get(String(r.message_id))!);
  };

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
    // Once the primary has read what the dead worker managed to send: the message it accepted that our ledger has
    // no record of is the one in flight, the only one the design allows to arrive twice.
    await sleep(500);
    const ledgerAtCrash = new Set(await recorded());
    const inFlight = headerIds(primary.caught).filter((id) => !ledgerAtCrash.has(id));
    assert.ok(primary.caught.length < MESSAGES, 'killed in the middle of the batch');
    assert.ok(
      inFlight.length <= 1,
      `one SMTP session has at most one message between the primary's 250 and our ledger write; unrecorded: ${inFlight.join(', ')}`,
    );
    worker = startWorker(taskQueue);

    const result = await handle.result();
    assert.equal(result.phase, 'closed');
    const ids = headerIds(primary.caught);
    assert.equal(new Set(ids).size, MESSAGES, 'no loss: every message arrived');
    const twice = [...new Set(ids.filter((id, i) => ids.indexOf(id) !== i))];
    const allowed = twice.filter((id) => inFlight.includes(id) && ids.filter((x) => x === id).length === 2);
    assert.deepEqual(
      twice,
      allowed,
      `only the message in flight at the kill (${inFlight.join(', ') || 'none'}) may arrive again, and only once ` +
        `more: the primary's 250 came before our ledger write, so the restarted worker had no record of it ` +
        `(${ids.length} deliveries for ${MESSAGES} messages)`,
    );
    assert.deepEqual(
      (await recorded()).sort(),
      [...new Set(ids)].sort(),
      'the ledger records each message delivered once',
    );
  } finally {
    await worker.stop();
    await primary?.close();
    await connection.close();
  }
});

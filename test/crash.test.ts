import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { type ManagedProcess, startProcess } from '../src/stack/process';
import { createSql } from '../src/store/db';
import { ringOutage } from '../src/temporal';
import { instructUpdate, statusQuery } from '../src/workflows/messages';
import { messageIdsOf, startCatcher } from './helpers/catcher';
import { eventually } from './helpers/eventually';
import { holdBacklog } from './helpers/held';
import { freePort } from './helpers/ports';
import { runbookWithPrimaryAt } from './helpers/runbooks';
import { testConfig } from './helpers/stack';

// A worker is killed (SIGKILL) in the middle of a restore and started again, at a chosen moment of one message's
// SMTP transaction. Between the primary's 250 and our ledger write is the one window the README's "Trust" section
// allows a duplicate in: exactly that message arrives twice. Before the primary accepted, nothing arrives twice.
// Either way nothing is lost, and the ledger ends up agreeing with what the primary kept.
const config = testConfig();
const sql = createSql(config);
after(() => sql.end());

const MESSAGES = 30;
/** The message whose transaction the kill interrupts, well inside the first batch. */
const K = 10;

function startWorker(taskQueue: string) {
  return startProcess('worker', process.execPath, ['--import', 'tsx', join(__dirname, '../src/worker.ts')], {
    // Monitoring off: the worker would otherwise schedule probes of the shipped runbooks in the shared test
    // Temporal, and a tick while it runs starts outage:harborview-law on this queue, left without a worker for the
    // walkthrough test to trip over.
    env: { ...process.env, MXF_TASK_QUEUE: taskQueue, MXF_LOG_LEVEL: 'error', MXF_MONITOR: 'off' },
    graceMs: 1,
  });
}

async function kill(worker: ManagedProcess) {
  worker.child.kill('SIGKILL');
  await worker.exited;
}

interface Crash {
  /** The worker process running the restore (until killed). */
  worker: ManagedProcess;
  /** Message-IDs of the messages the primary kept so far, in arrival order. */
  kept(): string[];
  /** Message-IDs of the messages our ledger records as delivered, in arrival order. */
  recorded(): Promise<string[]>;
}

/**
 * MESSAGES held, the outage declared, a primary that comes back with `beforeReply` as its hook, and a restore.
 * `crash` returns once the worker is dead; then a new worker finishes the restore and the outage closes. Returns
 * what the primary kept and the ledger recorded, at the crash and at the end.
 */
async function restoreThroughCrash(
  beforeReply: (crash: Crash, stage: 'rcpt' | 'data', index: number) => Promise<void> | void,
  crash: (crash: Crash) => Promise<void>,
) {
  const primaryPort = await freePort();
  const runbook = runbookWithPrimaryAt(primaryPort);
  const backlog = await holdBacklog(sql, runbook.id, [(runbook.recipients as string[])[0]!], MESSAGES);
  const taskQueue = `crash-${randomUUID()}`;
  const connection = await Connection.connect({ address: config.temporal.address });
  const client = new Client({ connection, namespace: config.temporal.namespace });
  let primary: Awaited<ReturnType<typeof startCatcher>> | undefined;
  const scene: Crash = {
    worker: startWorker(taskQueue),
    kept: () => messageIdsOf(primary?.caught ?? []),
    async recorded() {
      const rows = await sql<{ message_id: string }[]>`
        select d.message_id from delivery_ledger d join held_recipient r using (message_id, recipient)
        where r.customer_id = ${runbook.id} and d.outcome = 'delivered' order by d.message_id`;
      return rows.map((r) => backlog.byRowId.get(String(r.message_id))!);
    },
  };
  try {
    const handle = await ringOutage(client, taskQueue, runbook, MESSAGES);
    await eventually(
      'the outage is declared',
      () => handle.query(statusQuery),
      (s) => s.phase === 'awaiting-instructions',
      60_000,
    );
    primary = await startCatcher({ port: primaryPort, beforeReply: (...a) => beforeReply(scene, ...a) });
    await handle.executeUpdate(instructUpdate, { args: [{ action: 'restore', actor: 'ops:alice' }] });
    await crash(scene);
    const atCrash = { kept: scene.kept(), recorded: await scene.recorded() };
    scene.worker = startWorker(taskQueue);
    const result = await handle.result();
    assert.equal(result.phase, 'closed');
    return { messageIds: backlog.messageIds, atCrash, kept: scene.kept(), recorded: await scene.recorded() };
  } finally {
    await scene.worker.stop();
    await primary?.close();
    await connection.close();
  }
}

/** How many copies of each message arrived, by Message-ID. */
function copies(kept: string[]): Map<string, number> {
  const n = new Map<string, number>();
  for (const id of kept) n.set(id, (n.get(id) ?? 0) + 1);
  return n;
}

test("a worker killed between the primary's 250 and our ledger write sends that message, and only that one, twice", async () => {
  // At message K's final dot the primary keeps the message and locks the ledger before it answers 250: the
  // worker reads the 250 and blocks on its ledger write, where it is killed. Its database session is ended too,
  // so the write it had sent never commits.
  const ledger = await sql.reserve();
  let stalled: Promise<void> | undefined;
  let unlocked: Promise<void> | undefined;
  // Once, after the kill; and when the test fails, since a held lock would stall everything after it.
  const unlock = () => {
    unlocked ??= ledger`rollback`.then(() => ledger.release());
    return unlocked;
  };
  const r = await restoreThroughCrash(
    (_crash, stage, index) => {
      if (stage !== 'data' || index !== K || stalled) return;
      stalled = ledger`begin; lock table delivery_ledger in share mode`.simple().then(() => {});
      return stalled;
    },
    async (crash) => {
      const [writer] = await eventually(
        "the worker's ledger write after the 250, waiting on the lock",
        async () => {
          await stalled;
          return sql<{ pid: number }[]>`
            select pid from pg_stat_activity
            where wait_event_type = 'Lock' and query ilike 'insert into delivery_ledger%'`;
        },
        (rows) => rows.length === 1,
        30_000,
      );
      await kill(crash.worker);
      await sql`select pg_terminate_backend(${writer!.pid})`;
      await unlock();
    },
  ).finally(unlock);
  const k = r.messageIds[K]!;
  assert.deepEqual(r.atCrash.kept, r.messageIds.slice(0, K + 1), 'the primary had kept messages 0 to K');
  assert.deepEqual(r.atCrash.recorded, r.messageIds.slice(0, K), 'the ledger had no record of message K');
  const n = copies(r.kept);
  assert.deepEqual(
    r.messageIds.filter((id) => n.get(id) !== 1),
    [k],
    `exactly one message arrived other than once: message K, sent again by the restarted worker (${r.kept.length} deliveries)`,
  );
  assert.equal(n.get(k), 2, 'message K arrived twice, not more');
  assert.deepEqual(r.recorded, r.messageIds, 'no loss: the ledger records every message delivered, once');
});

test('a worker killed before the primary accepted a message sends nothing twice and loses nothing', async () => {
  // At message K's RCPT, before its DATA: what the worker had sent is recorded, K is not accepted anywhere.
  let killed: Promise<void> | undefined;
  const r = await restoreThroughCrash(
    (crash, stage, index) => {
      if (stage === 'rcpt' && index === K) killed ??= kill(crash.worker);
      return killed;
    },
    async () => {
      await eventually('the kill at message K', async () => killed !== undefined, Boolean, 30_000);
      await killed;
    },
  );
  assert.deepEqual(r.atCrash.kept, r.messageIds.slice(0, K), 'the primary had kept messages 0 to K-1');
  assert.deepEqual(r.atCrash.recorded, r.atCrash.kept, 'the ledger recorded each of them');
  assert.deepEqual(r.kept, r.messageIds, 'every message arrived once, in order');
  assert.deepEqual(r.recorded, r.messageIds, 'and the ledger records each');
});

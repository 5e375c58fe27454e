import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import type { ImapFlow } from 'imapflow';
import { mailboxTargetKey } from '../src/domain/delivery';
import { withMailbox } from '../src/mailbox/imap';
import { type ManagedProcess, startProcess } from '../src/stack/process';
import { createSql } from '../src/store/db';
import { ringOutage } from '../src/temporal';
import { instructUpdate, statusQuery } from '../src/workflows/messages';
import { eventually } from './helpers/eventually';
import { holdBacklog } from './helpers/held';
import { freePort } from './helpers/ports';
import { runbookWithPrimaryAt } from './helpers/runbooks';
import { testConfig } from './helpers/stack';

// Issue 14: a worker killed while it fills temporary mailboxes, at the one moment that matters: Dovecot has taken
// message K (LMTP answered 250 for both recipients) and the worker has not yet recorded it. A new worker must find
// K in the mailboxes instead of copying it again; in the end every message is in each mailbox exactly once.
const config = testConfig();
const sql = createSql(config);
after(() => sql.end());

const MESSAGES = 40;
/** The message whose copy the kill interrupts: large, so that its LMTP transfer is slow enough to catch. */
const K = 20;

function startWorker(taskQueue: string) {
  return startProcess('worker', process.execPath, ['--import', 'tsx', join(__dirname, '../src/worker.ts')], {
    env: { ...process.env, MXF_TASK_QUEUE: taskQueue, MXF_LOG_LEVEL: 'error', MXF_MONITOR: 'off' },
    graceMs: 1,
  });
}

const compose = async (i: number, messageId: string) =>
  Buffer.from(
    [
      `Subject: case file ${i}`,
      `Message-ID: <${messageId}>`,
      '',
      // K is 8 MB of scanned exhibits; the rest a line each.
      i === K ? `${'exhibit scan 0123456789 '.repeat(40)}\r\n`.repeat(8_000) : `note ${i}`,
      '',
    ].join('\r\n'),
  );

async function inboxIds(address: string): Promise<string[]> {
  return withMailbox(config, address, async (imap: ImapFlow) => {
    const lock = await imap.getMailboxLock('INBOX');
    try {
      const ids: string[] = [];
      for await (const m of imap.fetch('1:*', { envelope: true })) ids.push(m.envelope?.messageId ?? '');
      return ids.map((id) => id.replace(/^<|>$/g, ''));
    } finally {
      lock.release();
    }
  });
}

test('a worker killed after Dovecot took a copy and before the ledger said so: every message in each mailbox once', async () => {
  const runbook = runbookWithPrimaryAt(await freePort());
  const recipients = runbook.recipients as string[];
  const backlog = await holdBacklog(sql, runbook.id, recipients, MESSAGES, { compose });
  const kId = [...backlog.byRowId.entries()].find(([, m]) => m === backlog.messageIds[K])![0];
  const key = mailboxTargetKey(runbook.id);
  const taskQueue = `mailbox-crash-${randomUUID()}`;
  const connection = await Connection.connect({ address: config.temporal.address });
  const client = new Client({ connection, namespace: config.temporal.namespace });
  let worker: ManagedProcess = startWorker(taskQueue);
  const ledger = await sql.reserve();
  let locked = false;
  const unlock = async () => {
    if (!locked) return;
    locked = false;
    await ledger`rollback`;
  };
  try {
    const handle = await ringOutage(client, taskQueue, runbook, MESSAGES);
    await eventually(
      'declared',
      () => handle.query(statusQuery),
      (s) => s.phase === 'awaiting-instructions',
      60_000,
    );
    await handle.executeUpdate(instructUpdate, { args: [{ action: 'mailboxes', actor: 'ops:alice' }] });

    // K is being copied: hold the ledger, so that the worker's "copied" waits once Dovecot has answered.
    await eventually(
      "message K's 'copying' row",
      () =>
        sql`select 1 from delivery_ledger where message_id = ${kId} and target = ${key} and outcome = 'copying'`,
      (rows) => rows.length > 0,
      60_000,
    );
    await ledger`begin; lock table delivery_ledger in share mode`.simple();
    locked = true;
    const [writer] = await eventually(
      "the worker's 'copied' write, waiting on the lock",
      () => sql<{ pid: number }[]>`
        select pid from pg_stat_activity
        where wait_event_type = 'Lock' and query ilike '%insert into delivery_ledger%'`,
      (rows) => rows.length === 1,
      30_000,
    );
    worker.child.kill('SIGKILL');
    await worker.exited;
    await sql`select pg_terminate_backend(${writer!.pid})`;
    await unlock();

    // The window: K is in both mailboxes, and the ledger still says only 'copying'.
    const [row] =
      await sql`select outcome from delivery_ledger where message_id = ${kId} and target = ${key} limit 1`;
    assert.equal(row?.outcome, 'copying', 'killed before the ledger recorded the copy');
    for (const r of recipients)
      assert.ok((await inboxIds(r)).includes(backlog.messageIds[K]!), `K already in ${r}`);

    worker = startWorker(taskQueue);
    await eventually(
      'every copy recorded',
      () =>
        sql<
          { n: number }[]
        >`select count(*)::int as n from delivery_ledger where target = ${key} and outcome = 'copied'`,
      (rows) => rows[0]!.n === MESSAGES * recipients.length,
      120_000,
    );
    for (const r of recipients)
      assert.deepEqual(await inboxIds(r), backlog.messageIds, `${r}: every message once, in arrival order`);
    const found =
      await sql`select smtp_response from delivery_ledger where message_id = ${kId} and target = ${key}`;
    for (const f of found) assert.match(f.smtp_response, /found in the mailbox after a restart/);
  } finally {
    await unlock().catch(() => {});
    ledger.release();
    await worker.stop();
    await connection.close();
  }
});

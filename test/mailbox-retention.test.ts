import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { after, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import pino from 'pino';
import { fillMailboxes } from '../src/activities/mailbox-fill';
import { createMailboxActivities } from '../src/activities/mailboxes';
import { primaryTargetKey } from '../src/domain/delivery';
import { runbookSchema } from '../src/domain/runbook';
import { withMailbox } from '../src/mailbox/imap';
import { createSql } from '../src/store/db';
import { createObjectStore } from '../src/store/objects';
import { holdBacklog } from './helpers/held';
import { runbookWithPrimaryAt } from './helpers/runbooks';
import { testConfig, testTmp } from './helpers/stack';

// Issue 14: temporary mailboxes go after the runbook's retention, and never while mail they copy is still held for
// the customer's own servers. The activities run as the worker runs them (MockActivityEnvironment gives them the
// activity context), against the stack's Dovecot and PostgreSQL.
const config = testConfig();
const sql = createSql(config);
after(() => sql.end());

const inboxCount = (address: string) =>
  withMailbox(config, address, async (imap) => {
    const status = await imap.status('INBOX', { messages: true });
    return status === false ? -1 : (status.messages ?? 0);
  });

/** The message files of a mailbox in the stack's Dovecot (maildir: <data>/dovecot/mail/<domain>/<user>). */
function maildirFiles(address: string): string[] {
  const [user, domain] = address.split('@') as [string, string];
  const root = join(testTmp(), 'dovecot', 'mail', domain, user);
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory()
        ? walk(join(dir, e.name))
        : /^(cur|new)$/.test(basename(dir))
          ? [join(dir, e.name)]
          : [],
    );
  return walk(root);
}

test('retention: a closed mailbox is emptied once its time has passed and its held mail is restored, not before', async () => {
  const runbook = runbookSchema.parse({ ...runbookWithPrimaryAt(2525), mailboxes: { retention: '1s' } });
  const [reception, it] = runbook.recipients as [string, string];
  const backlog = await holdBacklog(sql, runbook.id, [reception], 2);
  const deps = { sql, objects: createObjectStore(config), config, log: pino({ level: 'silent' }) };
  const env = new MockActivityEnvironment();
  const filled: { delivered: number } = await env.run(fillMailboxes, deps, {
    runbook,
    target: { kind: 'mailboxes' as const },
    limit: 10,
  });
  assert.equal(filled.delivered, 2);
  assert.equal(await inboxCount(reception), 2);
  assert.equal(maildirFiles(reception).length, 2, "the copies are files in Dovecot's folder");

  const activities = createMailboxActivities(deps);
  const closed: { closed: number } = await env.run(activities.closeMailboxes, runbook);
  assert.equal(closed.closed, 2, 'both listed recipients had a mailbox, both closed');
  await new Promise((r) => setTimeout(r, 1_100));
  // Held mail not restored yet: reception's mailbox stays; the other (nothing copied, nothing sent) goes.
  await env.run(activities.expireMailboxes);
  const state = async (a: string) =>
    (
      await sql<
        { deleted: boolean }[]
      >`select deleted_at is not null as deleted from mailbox where address = ${a}`
    )[0]!.deleted;
  assert.equal(await state(reception), false, 'kept while the mail it copies is held for the primary');
  assert.equal(await state(it), true);
  assert.equal(await inboxCount(reception), 2);

  // The restore delivered both: now it goes, emptied, on record.
  for (const id of backlog.byRowId.keys())
    await sql`insert into delivery_ledger (message_id, recipient, target, outcome)
              values (${id}, ${reception}, ${primaryTargetKey(runbook.id)}, 'delivered')`;
  await env.run(activities.expireMailboxes);
  assert.equal(await state(reception), true);
  assert.deepEqual(maildirFiles(reception), [], "its mail removed from Dovecot's folder");
  assert.equal(await inboxCount(reception).catch(() => 'refused'), 'refused', 'and nobody signs in to it');
  const audit =
    await sql`select detail from audit_event where action = 'mailbox.deleted' and customer_id = ${runbook.id}`;
  assert.deepEqual(audit.map((a) => a.detail.address).sort(), [it, reception].sort());
});

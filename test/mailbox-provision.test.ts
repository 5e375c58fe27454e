import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { MockActivityEnvironment } from '@temporalio/testing';
import { fillMailboxes } from '../src/activities/mailbox-fill';
import { primaryTargetKey } from '../src/domain/delivery';
import { provisionMailboxes } from '../src/mailbox/provision';
import { issueSignInLink, redeemSignInLink, resetMailboxPassword } from '../src/mailbox/sign-in';
import { createSql } from '../src/store/db';
import { createObjectStore } from '../src/store/objects';
import { holdBacklog } from './helpers/held';
import { canSignIn } from './helpers/imap';
import { runbookWithPrimaryAt } from './helpers/runbooks';
import { testConfig } from './helpers/stack';

// Issue 14: what a temporary mailbox holds is a copy of what is held for the customer's own servers, nothing more;
// and a mailbox opened again for a customer's next outage carries none of the last outage's sign-ins.
const config = testConfig();
const sql = createSql(config);
after(() => sql.end());
const deps = { sql, objects: createObjectStore(config), config };

test("mail the customer's own server refused for good is held nowhere, so it is not copied into a mailbox", async () => {
  const runbook = runbookWithPrimaryAt(2525);
  const [reception] = runbook.recipients as [string];
  const backlog = await holdBacklog(sql, runbook.id, [reception], 3);
  const [refusedId] = backlog.byRowId.keys();
  await sql`insert into delivery_ledger (message_id, recipient, target, outcome, smtp_response)
            values (${refusedId!}, ${reception}, ${primaryTargetKey(runbook.id)}, 'failed', '550 5.7.1 spam')`;
  const result: { delivered: number; remaining: number } = await new MockActivityEnvironment().run(
    fillMailboxes,
    deps,
    { runbook, target: { kind: 'mailboxes' as const }, limit: 10 },
  );
  assert.equal(result.delivered, 2, 'the two still held, not the one refused months ago');
  assert.equal(result.remaining, 0);
});

test('a mailbox opened again for a new outage: no old password, link, lock or last sign-in', async () => {
  const runbook = runbookWithPrimaryAt(2525);
  const [reception] = runbook.recipients as [string];
  await provisionMailboxes(sql, runbook, 'first-outage');
  const oldPassword = await resetMailboxPassword(sql, reception);
  const oldLink = await issueSignInLink(sql, reception);
  assert.ok(await canSignIn(config, reception, oldPassword));
  await sql`update mailbox set sign_in_allowed = false, closed_at = now(), failed_sign_ins = 3 where address = ${reception}`;

  await provisionMailboxes(sql, runbook, 'second-outage');
  const [row] = await sql`select outage_id, sign_in_allowed, password_set_at, last_sign_in_at, failed_sign_ins
                          from mailbox where address = ${reception}`;
  assert.deepEqual(
    { ...row },
    {
      outage_id: 'second-outage',
      sign_in_allowed: true,
      password_set_at: null,
      last_sign_in_at: null,
      failed_sign_ins: 0,
    },
  );
  assert.equal(await canSignIn(config, reception, oldPassword), false, "the last outage's password is gone");
  assert.equal((await redeemSignInLink(sql, oldLink)).ok, false, 'and its link');
});

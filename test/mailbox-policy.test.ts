import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import { after, before, test } from 'node:test';
import nodemailer from 'nodemailer';
import pino from 'pino';
import { startAuthPolicy } from '../src/mailbox/auth-policy';
import { withMailbox } from '../src/mailbox/imap';
import { hashMailboxPassword, newMailboxPassword } from '../src/mailbox/password';
import { createSql } from '../src/store/db';
import { canSignIn } from './helpers/imap';
import { testConfig } from './helpers/stack';

// Issue 14: sign-ins through mail apps count and are limited like the web inbox's. The stack's Dovecot asks our
// policy server before each IMAP or submission sign-in and reports after it: a phone's sign-in is "last seen", five
// wrong passwords lock the mailbox whichever door they came through, and our own master sign-ins are neither.
const config = testConfig();
const sql = createSql(config);
let policy: Server;
before(async () => {
  policy = await startAuthPolicy({ sql, log: pino({ level: 'silent' }) }, config.mailbox.authPolicyPort);
});
after(async () => {
  await new Promise((r) => policy.close(r));
  await sql.end();
});

const imap = (user: string, pass: string) => canSignIn(config, user, pass);

const seen = async (address: string) =>
  (
    await sql<{ at: Date | null; failed: number }[]>`
    select last_sign_in_at as at, failed_sign_ins as failed from mailbox where address = ${address}`
  )[0]!;

test('a mail app sign-in is last seen; master sign-ins are not; five wrong passwords lock IMAP and submission', async () => {
  const address = `phone-${Date.now()}@policy.example`;
  const password = newMailboxPassword();
  await sql`insert into mailbox (address, customer_id, password_hash)
            values (${address}, 'policy', ${hashMailboxPassword(password)})`;

  await withMailbox(config, address, async () => {});
  assert.equal((await seen(address)).at, null, "our services' master sign-in is not the person's");
  assert.ok(await imap(address, password));
  assert.ok((await seen(address)).at, 'the phone signed in: last seen now');

  for (let i = 0; i < 5; i++) assert.equal(await imap(address, `wrong-${i}`), false);
  assert.equal((await seen(address)).failed, 5);
  assert.equal(await imap(address, password), false, 'locked: even the right password is refused');
  const submission = nodemailer.createTransport({
    host: config.mailbox.host,
    port: config.mailbox.submissionPort,
    secure: false,
    requireTLS: true,
    tls: { rejectUnauthorized: false },
    auth: { user: address, pass: password },
  });
  await assert.rejects(submission.verify(), /Authentication|535|auth/i, 'and at submission');

  await sql`update mailbox set locked_until = null where address = ${address}`;
  assert.ok(await imap(address, password), 'after the lock, the right password works again');
  assert.equal((await seen(address)).failed, 0, 'and the failures are forgiven');
});

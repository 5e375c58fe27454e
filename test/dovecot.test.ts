import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ImapFlow } from 'imapflow';
import nodemailer from 'nodemailer';
import { generate } from 'selfsigned';
import { hashMailboxPassword, mailboxPasswordMatches, newMailboxPassword } from '../src/mailbox/password';
import { startDovecot } from '../src/stack/dovecot';
import type { ManagedProcess } from '../src/stack/process';
import { createSql } from '../src/store/db';
import { freePort } from './helpers/ports';
import { testConfig, testTmp } from './helpers/stack';

// Issue 14's foundation: a private Dovecot started like the stack's other servers, signing in from our PostgreSQL's
// mailbox table, taking mail over LMTP, and read over IMAP with STARTTLS as any mail client does.

const config = testConfig();
const sql = createSql(config);
const ports = { imap: 0, lmtp: 0 };
let dovecot: ManagedProcess;

before(async () => {
  ports.imap = await freePort();
  ports.lmtp = await freePort();
  const dir = join(testTmp(), `dovecot-${randomUUID()}`);
  const pair = await generate([{ name: 'commonName', value: 'imap.failover.test' }], { keySize: 2048 });
  const tls = {
    cert: join(testTmp(), `dovecot-cert-${ports.imap}.pem`),
    key: join(testTmp(), `dovecot-key-${ports.imap}.pem`),
  };
  writeFileSync(tls.cert, pair.cert);
  writeFileSync(tls.key, pair.private, { mode: 0o600 });
  dovecot = await startDovecot({
    dir,
    ports,
    databaseUrl: config.database.url,
    tls,
    logFile: join(dir, '..', `dovecot-${ports.imap}.log`),
  });
});
after(async () => {
  await dovecot?.stop();
  await sql.end();
});

async function mailbox(domain = 'bigcorp.example') {
  const address = `user-${randomUUID().slice(0, 8)}@${domain}`;
  const password = newMailboxPassword();
  await sql`insert into mailbox (address, customer_id, password_hash) values (${address}, 'bigcorp', ${hashMailboxPassword(password)})`;
  return { address, password };
}

/** As the worker will fill mailboxes: LMTP on loopback, Dovecot's STARTTLS taken without checking its certificate. */
const lmtpTransport = () =>
  nodemailer.createTransport({
    lmtp: true,
    host: '127.0.0.1',
    port: ports.lmtp,
    name: 'mx.failover.test',
    tls: { rejectUnauthorized: false },
  });

const imap = (user: string, pass: string) =>
  new ImapFlow({
    host: '127.0.0.1',
    port: ports.imap,
    secure: false,
    auth: { user, pass },
    tls: { rejectUnauthorized: false },
    logger: false,
  });

test('passwords: made readable, stored as {SSHA512}, checked', () => {
  const password = newMailboxPassword();
  assert.match(password, /^[a-km-np-zA-HJ-NP-Z2-9]{24}$/);
  const hash = hashMailboxPassword(password);
  assert.match(hash, /^\{SSHA512\}[A-Za-z0-9+/]+=*$/);
  assert.ok(mailboxPasswordMatches(password, hash));
  assert.ok(!mailboxPasswordMatches(`${password}x`, hash));
  assert.notEqual(hashMailboxPassword(password), hash, 'salted');
});

test('a message delivered over LMTP is read back over IMAP (STARTTLS) byte for byte; a wrong password is refused', async () => {
  const { address, password } = await mailbox();
  const raw = Buffer.from(
    `From: Counsel <counsel@sender.example.org>\r\nTo: ${address}\r\nSubject: Held since Monday\r\nMessage-ID: <${randomUUID()}@sender.example.org>\r\n\r\nThe filing moved to Thursday.\r\n`,
  );
  const lmtp = lmtpTransport();
  const info = await lmtp.sendMail({ envelope: { from: 'counsel@sender.example.org', to: [address] }, raw });
  assert.deepEqual(info.accepted, [address]);

  const client = imap(address, password);
  await client.connect();
  try {
    assert.ok(client.secureConnection, 'STARTTLS before the password');
    const lock = await client.getMailboxLock('INBOX');
    try {
      const message = await client.fetchOne('*', { source: true });
      assert.ok(message && message.source !== undefined, 'the message is in the inbox');
      const source = message.source as Buffer;
      // Dovecot puts the envelope sender above the message (Return-Path, RFC 5321 4.4); the rest is as held.
      const returnPath = Buffer.from('Return-Path: <counsel@sender.example.org>\r\n');
      assert.ok(
        source.equals(Buffer.concat([returnPath, raw])),
        `held bytes unchanged:\n${source.toString()}`,
      );
    } finally {
      lock.release();
    }
    const folders = (await client.list()).map((f) => f.path).sort();
    assert.deepEqual(folders, ['INBOX', 'Junk', 'Sent']);
  } finally {
    await client.logout();
  }
  await assert.rejects(
    imap(address, `${password}x`).connect(),
    (err: Error & { authenticationFailed?: boolean }) => err.authenticationFailed === true,
  );
});

test('LMTP refuses a recipient without a mailbox, and one whose sign-in is closed', async () => {
  const lmtp = lmtpTransport();
  const raw = Buffer.from('Subject: nobody\r\n\r\nx\r\n');
  await assert.rejects(
    lmtp.sendMail({ envelope: { from: 'a@b.example', to: ['nobody@bigcorp.example'] }, raw }),
    (err: Error & { responseCode?: number }) => (err.responseCode ?? 0) >= 500,
  );
  const { address } = await mailbox();
  await sql`update mailbox set sign_in_allowed = false where address = ${address}`;
  await assert.rejects(
    lmtp.sendMail({ envelope: { from: 'a@b.example', to: [address] }, raw }),
    (err: Error & { responseCode?: number }) => (err.responseCode ?? 0) >= 500,
  );
});

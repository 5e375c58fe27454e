import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { ImapFlow } from 'imapflow';
import nodemailer from 'nodemailer';
import pino from 'pino';
import type { OutageStatus, OutageWorkflow } from '../src/domain/outage';
import type { Runbook } from '../src/domain/runbook';
import { buildSubmissionRelay } from '../src/mailbox/relay';
import { resetMailboxPassword } from '../src/mailbox/sign-in';
import { createSql } from '../src/store/db';
import { createObjectStore, readBody } from '../src/store/objects';
import { outageStart } from '../src/temporal';
import { declareUpdate, instructUpdate, statusQuery } from '../src/workflows/messages';
import { messageIdsOf, startCatcher } from './helpers/catcher';
import { GMAIL_DOMAIN } from './helpers/dns-zone';
import { eventually } from './helpers/eventually';
import { startGmail } from './helpers/gmail';
import { type Backlog, holdBacklog } from './helpers/held';
import { imapClient } from './helpers/imap';
import { startIngest } from './helpers/ingest';
import { freePort } from './helpers/ports';
import { runbookWithPrimaryAt } from './helpers/runbooks';
import { transaction } from './helpers/smtp-client';
import { testConfig } from './helpers/stack';
import { useTemporalClient, withQueueWorker } from './helpers/temporal';

// Issue 14: a large organisation's outage with temporary mailboxes, driven as people's mail apps drive it. Held mail
// fills a mailbox per recipient byte for byte (quarantined mail in Junk); a phone in IMAP IDLE sees new mail come;
// people reply through submission (AUTH, their own address only) and it reaches the outside world through our
// outbound path, with a copy in Sent; after the restore the primary has the held mail and what they sent.
const temporal = useTemporalClient();
const config = testConfig();
const sql = createSql(config);
after(() => sql.end());

const HELD = 12;

/** A mail app signed in to a temporary mailbox over IMAP with STARTTLS, as a person is. */
async function signIn(user: string, pass: string) {
  const imap = imapClient(config, user, pass);
  await imap.connect();
  return imap;
}

async function sources(imap: ImapFlow, folder: string): Promise<Buffer[]> {
  const lock = await imap.getMailboxLock(folder);
  try {
    const found: Buffer[] = [];
    for await (const m of imap.fetch('1:*', { source: true, uid: true })) found.push(m.source!);
    return found;
  } finally {
    lock.release();
  }
}

/** Fails, saying what it waited for, rather than hanging the file until the runner's timeout. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`waited ${ms} ms for ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** What a phone's mail app does to send: submission, STARTTLS, AUTH. */
const submission = (auth?: { user: string; pass: string }) =>
  nodemailer.createTransport({
    host: config.mailbox.host,
    port: config.mailbox.submissionPort,
    secure: false,
    requireTLS: true,
    tls: { rejectUnauthorized: false },
    ...(auth ? { auth } : {}),
  });

async function startRelay(runbook: Runbook, taskQueue: string) {
  const relay = buildSubmissionRelay({
    sql,
    objects: createObjectStore(config),
    config: { ...config, temporal: { ...config.temporal, taskQueue } },
    client: temporal.client,
    log: pino({ level: 'silent' }),
    runbooks: [runbook],
    dovecotAddresses: ['127.0.0.1'],
  });
  await new Promise<void>((resolve) => relay.listen(config.mailbox.relayPort, '127.0.0.1', resolve));
  return () => new Promise<void>((resolve) => relay.close(() => resolve()));
}

test('mailboxes: filled byte for byte (Junk for quarantined), IDLE sees new mail, replies go out and come back at restore', async () => {
  const primaryPort = await freePort();
  const runbook = runbookWithPrimaryAt(primaryPort);
  const [reception, it] = runbook.recipients as [string, string];
  const backlog = await holdBacklog(sql, runbook.id, [reception, it], HELD);
  const spam = await holdBacklog(sql, runbook.id, [reception], 1);
  const [spamId] = spam.byRowId.keys();
  await sql`update held_message set spam_verdict = 'quarantined', spam_score = 12 where id = ${spamId!}`;
  const gmail = await startGmail({ host: '127.0.0.25', port: 25 });
  const ingest = await startIngest([runbook], { temporal: temporal.client });
  try {
    await withQueueWorker(sql, {}, async (taskQueue) => {
      const stopRelay = await startRelay(runbook, taskQueue);
      try {
        const handle = await temporal.client.workflow.start<OutageWorkflow>(
          'outageWorkflow',
          outageStart(taskQueue, runbook),
        );
        await handle.executeUpdate(declareUpdate, { args: [{ actor: 'ops:alice' }] });
        await handle.executeUpdate(instructUpdate, { args: [{ action: 'mailboxes', actor: 'ops:alice' }] });
        const filled = await eventually(
          'each message once in each recipient mailbox',
          () => handle.query(statusQuery),
          (s) => s.phase === 'hosting-mailboxes' && s.counts.copiedToMailboxes === 2 * HELD + 1,
          60_000,
        );
        assert.equal(filled.mailboxes?.provisioned, 2);

        const password = await resetMailboxPassword(sql, reception);
        const phone = await signIn(reception, password);
        await filledAsHeld(phone, backlog, spam.messageIds[0]!);

        await idleSeesNewMail(phone, ingest.port, reception);
        await sendingRules(reception, password, it);
        await phone.logout();

        await restoreAndClose(handle, primaryPort, backlog.messageIds, { reception, password });
        // The reply reached the outside world through our outbound path, signed by our forwarding domain.
        const out = gmail.kept.find((m) => m.to.includes(`client@${GMAIL_DOMAIN}`));
        assert.ok(out, 'the reply reached the Gmail stand-in by its MX');
        assert.equal(out.from, reception);
        assert.ok(
          out.auth.dkim.some((d) => d.result === 'pass'),
          JSON.stringify(out.auth.dkim),
        );
      } finally {
        await stopRelay();
      }
    });
  } finally {
    await ingest.close();
    await gmail.close();
  }
});

type Handle = Awaited<ReturnType<typeof temporal.client.workflow.start<OutageWorkflow>>>;

/** Byte for byte, in arrival order, as reception's mail app sees it; quarantined mail in Junk only. */
async function filledAsHeld(phone: ImapFlow, backlog: Backlog, spamMessageId: string) {
  const inbox = await sources(phone, 'INBOX');
  assert.deepEqual(messageIdsOf(inbox.map((raw) => ({ raw, from: '', to: [], at: 0 }))), backlog.messageIds);
  const held = await sql<{ object_key: string; body_offset: string; size_bytes: string }[]>`
    select object_key, body_offset, size_bytes from held_message
    where id in ${sql([...backlog.byRowId.keys()])} order by id`;
  for (const [i, row] of held.entries()) {
    const raw = await readBody(createObjectStore(config), config.s3.bucket, {
      objectKey: row.object_key,
      offset: Number(row.body_offset),
      length: Number(row.size_bytes),
    });
    const got = inbox[i]!;
    assert.ok(got.toString().startsWith('Return-Path: '), 'LMTP adds only the Return-Path line');
    assert.ok(got.subarray(got.length - raw.length).equals(raw), `message ${i} byte for byte`);
    assert.equal(got.length, raw.length + got.indexOf('\r\n') + 2, 'nothing else added');
  }
  const junk = await sources(phone, 'Junk');
  assert.equal(junk.length, 1);
  assert.match(junk[0]!.toString(), /X-Spam-Flag: YES/i);
  assert.match(junk[0]!.toString(), new RegExp(spamMessageId));
}

/** As a phone does: the inbox open, the connection in IDLE; mail that arrives over SMTP shows up at once. */
async function idleSeesNewMail(phone: ImapFlow, ingestPort: number, reception: string) {
  await phone.mailboxOpen('INBOX');
  const before = (phone.mailbox as { exists: number }).exists;
  const seen = new Promise<number>((resolve) => phone.on('exists', (e) => resolve(e.count)));
  void phone.idle();
  const reply = await transaction(ingestPort, {
    from: 'client@outside.example',
    to: [reception],
    data: [
      'From: A Client <client@outside.example>',
      `To: <${reception}>`,
      'Subject: are you open?',
      `Date: ${new Date().toUTCString().replace('GMT', '+0000')}`,
      'Message-ID: <idle-test@outside.example>',
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      '',
      'Hello, we heard about the flood. Are you open today, or should we come to the court directly?',
      '',
    ].join('\r\n'),
  });
  assert.match(reply.end ?? '', /^250/);
  assert.equal(await within(seen, 30_000, 'IMAP IDLE to see the new message'), before + 1);
}

/** Restore: the primary gets every held message once, and reception's own copy of what she sent; sign-in closes. */
async function restoreAndClose(
  handle: Handle,
  primaryPort: number,
  messageIds: string[],
  who: { reception: string; password: string },
) {
  const primary = await startCatcher({ port: primaryPort });
  try {
    await handle.executeUpdate(instructUpdate, { args: [{ action: 'restore', actor: 'ops:alice' }] });
    const closed = (await within(handle.result(), 60_000, 'the restore to close the outage')) as OutageStatus;
    assert.equal(closed.phase, 'closed');
    assert.equal(closed.mailboxes?.closed, 2, 'sign-in closed with the outage');
    const toReception = primary.caught.filter((m) => m.to.includes(who.reception));
    assert.ok(
      toReception.some((m) => /Subject: Re: the flood/.test(m.raw.toString())),
      'her sent copy restored',
    );
    for (const id of messageIds)
      assert.equal(messageIdsOf(primary.caught).filter((m) => m === id).length, 1, `${id} restored once`);
    await assert.rejects(signIn(who.reception, who.password), 'a closed mailbox refuses its password');
  } finally {
    await primary.close();
  }
}

/** Submission: AUTH and one's own address, or nothing goes; what goes is in Sent; a colleague's copy too. */
async function sendingRules(me: string, password: string, colleague: string) {
  await assert.rejects(
    submission().sendMail({ from: me, to: `client@${GMAIL_DOMAIN}`, subject: 'x', text: 'x' }),
    (err: { responseCode?: number }) => err.responseCode === 530,
    'no AUTH, no sending: not an open relay',
  );
  await assert.rejects(
    submission({ user: me, pass: password }).sendMail({
      from: colleague,
      to: `client@${GMAIL_DOMAIN}`,
      subject: 'x',
      text: 'x',
    }),
    (err: { responseCode?: number }) => err.responseCode === 553,
    "another user's address is refused",
  );
  const sent = await submission({ user: me, pass: password }).sendMail({
    from: me,
    to: [`client@${GMAIL_DOMAIN}`, colleague],
    subject: 'Re: the flood',
    text: 'We are working from home this week; write to this address.',
  });
  assert.match(sent.response, /^250/);
  const mine = await signIn(me, password);
  try {
    await eventually(
      'a copy in Sent',
      () => sources(mine, 'Sent'),
      (inSent) => inSent.some((raw) => /Subject: Re: the flood/.test(raw.toString())),
    );
  } finally {
    await mine.logout();
  }
  // The colleague's temporary mailbox gets it like mail from outside.
  const theirs = await resetMailboxPassword(sql, colleague);
  const other = await signIn(colleague, theirs);
  try {
    await eventually(
      "in the colleague's inbox",
      () => sources(other, 'INBOX'),
      (inbox) => inbox.some((raw) => /Subject: Re: the flood/.test(raw.toString())),
      30_000,
    );
  } finally {
    await other.logout();
  }
}

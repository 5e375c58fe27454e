import { Context, heartbeat } from '@temporalio/activity';
import nodemailer, { type Transporter } from 'nodemailer';
import type { Config } from '../config';
import type { DeliveryBatchResult } from '../domain/delivery';
import { mailboxTargetKey } from '../domain/delivery';
import { spamGateFor } from '../domain/spam';
import { withMailbox } from '../mailbox/imap';
import { provisionMailboxes } from '../mailbox/provision';
import type { Sql } from '../store/db';
import { countHeldMessages } from '../store/held';
import { mailboxCounts } from '../store/mailboxes';
import { BatchBodies, type StoredBody } from './body-reader';
import {
  BatchTally,
  type DeliverBatchInput,
  type DeliveryDeps,
  HEARTBEAT_EVERY_MS,
  nextBatch,
  type PendingMessage,
  spamPolicyOf,
  stopped,
  tagged,
} from './deliver';
import { type SendOutcome, sendVia, TargetDeferred } from './smtp-send';

// Filling temporary mailboxes: each held message, byte for byte, into the mailbox of each of its recipients, in
// arrival order: over LMTP into the inbox, or (quarantined mail) by IMAP APPEND into Junk. Exactly once, through
// the ledger (target mailbox:<customer>): a 'copying' row is written before Dovecot is handed the copy and becomes
// 'copied' after; a worker killed in between leaves 'copying', and the next batch looks in the mailbox to see
// whether the copy got there before it sends it again (settleInterrupted).

const SETTLE_AT_ONCE = 200;
/**
 * A 'copying' row is settled only once it is older than the activity's heartbeat timeout (20 s) and then some: by
 * then the attempt that wrote it is dead or has been told so, never still copying beside us.
 */
const SETTLE_AFTER_S = 30;
/** A batch ends after this, well inside the activity's 15-minute start-to-close, so no retry runs beside it. */
const BATCH_TIME_MS = 10 * 60_000;

type Folder = 'INBOX' | 'Junk';

export async function fillMailboxes(
  deps: DeliveryDeps,
  input: DeliverBatchInput,
): Promise<DeliveryBatchResult> {
  const { sql, config } = deps;
  const customerId = input.runbook.id;
  const key = mailboxTargetKey(customerId);
  const gate = spamGateFor({ kind: 'mailboxes' }, spamPolicyOf(input.runbook));
  const tally = new BatchTally();
  const lmtp = lmtpTransport(config);
  // Heartbeats for the whole batch, also while settling and provisioning: a short heartbeat timeout finds a dead
  // worker quickly, and a live one is never declared dead (which would start a retry beside it).
  const beat = setInterval(() => heartbeat(), HEARTBEAT_EVERY_MS);
  try {
    await settleInterrupted(deps, customerId);
    const batch = await nextBatch(sql, customerId, key, gate, input.limit);
    // After the batch is read: every recipient in it has a mailbox before its copy goes to Dovecot.
    await provisionMailboxes(sql, input.runbook, input.outageId ?? null);
    await copyBatch(deps, input, batch, tally, lmtp);
  } catch (err) {
    throw stopped(err, tally);
  } finally {
    clearInterval(beat);
    lmtp.close();
  }
  const remaining = await countHeldMessages(sql, customerId, key, gate);
  return { ...tally.outcome(), remaining, mailboxes: await mailboxCounts(sql, customerId) };
}

async function copyBatch(
  deps: DeliveryDeps,
  input: DeliverBatchInput,
  batch: PendingMessage[],
  tally: BatchTally,
  lmtp: Transporter,
) {
  const { sql, objects, config } = deps;
  const key = mailboxTargetKey(input.runbook.id);
  const threshold = spamPolicyOf(input.runbook).quarantineAt;
  const bodies = new BatchBodies(objects, config.s3.bucket, batch);
  const cancelled = Context.current().cancellationSignal;
  const stopAt = Date.now() + BATCH_TIME_MS;
  for (const message of batch) {
    if (cancelled.aborted) throw new Error('mailbox fill cancelled');
    if (Date.now() > stopAt) break; // the rest in the next batch
    const raw = tagged(message, await bodies.read(message), threshold);
    // The ledger keeps recipients as stored (the held definition matches them exactly); Dovecot's are lower case.
    const recipients = message.recipients;
    await mark(sql, message.id, recipients, key, 'copying');
    const lower = recipients.map((r) => r.toLowerCase());
    const outcome = message.quarantined
      ? await appendToJunk(config, lower, raw)
      : await sendVia([lmtp], { from: message.envelope_from, to: lower }, raw);
    await settle(sql, message.id, key, asStored(outcome, recipients), recipients, tally);
  }
}

/** Dovecot's (and nodemailer's) lower-case addresses back to the held recipients they stand for. */
function asStored(outcome: SendOutcome, recipients: string[]): SendOutcome {
  if (outcome.kind === 'permanent') return outcome;
  const stored = new Map(recipients.map((r) => [r.toLowerCase(), r]));
  const back = (a: string) => stored.get(a.toLowerCase()) ?? a;
  return {
    ...outcome,
    accepted: outcome.accepted.map(back),
    refused: outcome.refused.map((r) => ({ ...r, recipient: back(r.recipient) })),
    deferred: outcome.deferred.map((d) => ({ ...d, recipient: back(d.recipient) })),
  };
}

/** Ledger rows for a message's recipients, in one statement: all 'copying', or each one's outcome. */
async function mark(
  sql: Sql,
  messageId: string,
  recipients: string[],
  key: string,
  outcome: string,
  reply = '',
) {
  if (recipients.length === 0) return;
  await sql`
    insert into delivery_ledger (message_id, recipient, target, outcome, smtp_response)
    select ${messageId}, r, ${key}, ${outcome}, ${reply} from unnest(${recipients}::text[]) r
    on conflict (message_id, recipient, target)
    do update set outcome = excluded.outcome, smtp_response = excluded.smtp_response, recorded_at = now()`;
}

/** What Dovecot answered, into the ledger: copied, refused for good, or (4xx) not copied and tried later. */
async function settle(
  sql: Sql,
  messageId: string,
  key: string,
  outcome: SendOutcome,
  recipients: string[],
  tally: BatchTally,
) {
  if (outcome.kind === 'permanent') {
    await mark(sql, messageId, recipients, key, 'failed', outcome.response);
    tally.refuse(
      messageId,
      recipients.map((recipient) => ({ recipient, reply: outcome.response })),
    );
    return;
  }
  await mark(sql, messageId, outcome.accepted, key, 'copied', outcome.response);
  tally.delivered += outcome.accepted.length;
  const refused = outcome.refused.map((r) => r.recipient);
  await mark(sql, messageId, refused, key, 'failed', outcome.refused[0]?.reply);
  tally.refuse(messageId, outcome.refused);
  if (outcome.deferred.length > 0) {
    const deferred = outcome.deferred.map((d) => d.recipient);
    await sql`delete from delivery_ledger where message_id = ${messageId} and target = ${key}
              and recipient = any(${deferred}::text[]) and outcome = 'copying'`;
    throw new TargetDeferred(outcome.deferred[0]!.error);
  }
}

/**
 * Quarantined mail goes to Junk, where people look for what a filter held back, never to the inbox. A mailbox we
 * cannot sign in to (closed, deleted) refuses its copy for good, like LMTP's 550: it does not stop the others.
 */
async function appendToJunk(config: Config, recipients: string[], raw: Buffer): Promise<SendOutcome> {
  const accepted: string[] = [];
  const refused: { recipient: string; reply: string }[] = [];
  for (const address of recipients) {
    try {
      await withMailbox(config, address, (imap) => imap.append('Junk', raw, []));
      accepted.push(address);
    } catch (err) {
      if (!signInRefused(err)) throw err;
      refused.push({ recipient: address, reply: `IMAP: ${(err as { responseText?: string }).responseText}` });
    }
  }
  return { kind: 'sent', accepted, refused, deferred: [], response: 'appended to Junk' };
}

/** Dovecot refused the master sign-in itself (no such mailbox, closed): nothing a retry changes. */
const signInRefused = (err: unknown) =>
  (err as { authenticationFailed?: boolean }).authenticationFailed === true;

/**
 * A worker that died between handing Dovecot a copy and recording it left 'copying' rows. For each, look in the
 * mailbox (inbox and Junk) for the very bytes: there, it becomes 'copied'; not there, the row goes and the copy is
 * made again. Either way the message is in the mailbox once.
 */
async function settleInterrupted(deps: DeliveryDeps, customerId: string) {
  const { sql, objects, config } = deps;
  const key = mailboxTargetKey(customerId);
  const rows = await sql<(StoredBody & { id: string; recipient: string; message_header: string | null })[]>`
    select m.id, m.object_key, m.body_offset, m.size_bytes, m.message_id as message_header, d.recipient
    from delivery_ledger d join held_message m on m.id = d.message_id
    where d.target = ${key} and d.outcome = 'copying' and d.recorded_at < now() - ${SETTLE_AFTER_S} * interval '1 second'
    order by m.id limit ${SETTLE_AT_ONCE}`;
  if (rows.length === 0) return;
  const bodies = new BatchBodies(objects, config.s3.bucket, rows);
  for (const row of rows) {
    const raw = await bodies.read(row);
    const there = await withMailbox(config, row.recipient.toLowerCase(), (imap) =>
      holds(imap, row.message_header, raw),
    );
    if (there)
      await mark(sql, row.id, [row.recipient], key, 'copied', 'found in the mailbox after a restart');
    else
      await sql`delete from delivery_ledger where message_id = ${row.id} and recipient = ${row.recipient}
                and target = ${key} and outcome = 'copying'`;
  }
}

/** Does a folder of this mailbox hold these bytes (LMTP puts a Return-Path line above them)? */
async function holds(
  imap: import('imapflow').ImapFlow,
  messageIdHeader: string | null,
  raw: Buffer,
): Promise<boolean> {
  for (const folder of ['INBOX', 'Junk'] satisfies Folder[]) {
    const lock = await imap.getMailboxLock(folder);
    try {
      const query = messageIdHeader
        ? { header: { 'message-id': messageIdHeader } }
        : { larger: raw.length - 1, smaller: 2 * raw.length + 65_536 };
      const uids = (await imap.search(query, { uid: true })) || [];
      for (const uid of uids) {
        const found = await imap.fetchOne(String(uid), { source: true }, { uid: true });
        const source = found === false ? undefined : found.source;
        // Dovecot keeps lines as it likes and gives them back with CRLF: compare the lines, not the line ends.
        if (source && lines(source).includes(lines(raw))) return true;
      }
    } finally {
      lock.release();
    }
  }
  return false;
}

const lines = (b: Buffer) => b.toString('latin1').replace(/\r\n/g, '\n');

/** LMTP to our Dovecot; its STARTTLS certificate is the stack's own, on this host. */
function lmtpTransport(config: Config) {
  return nodemailer.createTransport({
    lmtp: true,
    pool: true,
    maxConnections: 1,
    host: config.mailbox.host,
    port: config.mailbox.lmtpPort,
    name: config.hostname,
    secure: false,
    tls: { rejectUnauthorized: false },
    connectionTimeout: 30_000,
  });
}

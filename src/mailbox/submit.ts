import { createHash, randomBytes } from 'node:crypto';
import { type Client, WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import libmime from 'libmime';
import addressparser from 'nodemailer/lib/addressparser';
import type { Config } from '../config';
import { mailboxTargetKey } from '../domain/delivery';
import { acceptsRecipient, type Runbook } from '../domain/runbook';
import { searchableHeaders } from '../ingest/headers';
import { newQueueId, objectKeyFor, rfc5322Date } from '../ingest/received';
import type { Logger } from '../log';
import type { Sql } from '../store/db';
import { commitHeldMessage } from '../store/messages';
import type { ObjectStore } from '../store/objects';
import { ringOutage, startSubmission } from '../temporal';
import { withMailbox } from './imap';

// Mail written in a temporary mailbox, from a mail app (Dovecot's submission, through src/mailbox/relay.ts) or the
// web inbox: one path for both. A person sends as their own address only. What they write is stored like held
// mail, body in MinIO, and is
//   - held for the sender's own address: a restore delivers them a copy on their own server (already in Sent here);
//   - held for colleagues in the customer's domains: their temporary mailboxes get it now, their server later;
//   - delivered to everyone else by the submission workflow, through our outbound path (MX routing, STARTTLS).
// We are never an open relay: no signed-in mailbox, no sending.

export class SubmissionRefused extends Error {
  constructor(
    /** The SMTP reply code a mail app gets, e.g. 553. */
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = 'SubmissionRefused';
  }
}

export interface SubmitDeps {
  sql: Sql;
  objects: ObjectStore;
  config: Config;
  client: Client;
  log: Logger;
  runbooks: readonly Runbook[];
}

export interface Submitted {
  messageId: string;
}

export const MAX_SUBMISSION_RECIPIENTS = 100;

/** Refuses with the reason a person can act on; else stores, files in Sent, and queues the deliveries. */
export async function submitFromMailbox(
  deps: SubmitDeps,
  mailbox: string,
  message: { raw: Buffer; envelopeFrom: string; recipients: string[] },
): Promise<Submitted> {
  const address = mailbox.toLowerCase();
  const runbook = await openMailboxRunbook(deps, address);
  checkSender(address, message);
  const raw = withSubmissionHeaders(message.raw, address);
  // Colleagues: the sender's own customer. Another customer's people are outside like anyone (our ingest holds
  // their mail if their servers are down too): their filter and their outage are theirs.
  const local = message.recipients.filter((r) => isOurs(runbook, r));
  for (const r of local)
    if (!acceptsRecipient(runbook, r)) throw new SubmissionRefused(550, `5.1.1 <${r}>: no such mailbox here`);
  const outside = message.recipients.filter((r) => !isOurs(runbook, r));
  await checkSendingLimit(deps, address, outside.length);
  // Filed first: if storing fails after it, the person sees it in Sent and may send again (one extra copy in
  // Sent); the other way round, a failure would have sent mail that Sent never shows.
  await fileInSent(deps, address, raw);
  const id = await store(deps, { address, runbook, raw, local, outside });
  // Stored: from here it is ours to deliver. Temporal down now is no reason to refuse (and have it sent twice);
  // resumeSubmissions starts what has no workflow yet.
  if (outside.length)
    await startSubmission(deps.client, deps.config.temporal.taskQueue, id).catch((err) =>
      deps.log.warn({ err, messageId: id }, 'submission stored; its delivery starts when Temporal answers'),
    );
  await ringColleagues(deps, runbook, local);
  deps.log.info(
    { mailbox: address, messageId: id, local: local.length, outside: outside.length },
    'mail submitted',
  );
  return { messageId: id };
}

async function openMailboxRunbook(deps: SubmitDeps, address: string): Promise<Runbook> {
  const [row] = await deps.sql<{ customer_id: string; open: boolean }[]>`
    select customer_id, sign_in_allowed and deleted_at is null as open from mailbox where address = ${address}`;
  if (!row?.open)
    throw new SubmissionRefused(535, '5.7.8 this temporary mailbox is closed: the outage is over');
  const runbook = deps.runbooks.find((rb) => rb.id === row.customer_id);
  if (!runbook)
    throw new SubmissionRefused(451, `4.3.0 no runbook for ${row.customer_id}: tell your provider`);
  return runbook;
}

/** The envelope sender and every From: address must be the signed-in mailbox. */
function checkSender(address: string, message: { raw: Buffer; envelopeFrom: string; recipients: string[] }) {
  const refuse = () => new SubmissionRefused(553, `5.7.1 you may send only as <${address}>`);
  if (message.envelopeFrom.toLowerCase() !== address) throw refuse();
  const headers = libmime.decodeHeaders(headerBlock(message.raw).toString('utf8'));
  const from = (headers.from ?? []).flatMap((v: string) => flatten(addressparser(v)));
  if (from.length === 0 || from.some((a) => a.toLowerCase() !== address)) throw refuse();
  if (message.recipients.length === 0) throw new SubmissionRefused(554, '5.5.1 no recipients');
  if (message.recipients.length > MAX_SUBMISSION_RECIPIENTS)
    throw new SubmissionRefused(552, `5.5.3 at most ${MAX_SUBMISSION_RECIPIENTS} recipients per message`);
}

type Parsed = { address?: string; group?: Parsed[] };
const flatten = (list: Parsed[]): string[] =>
  list.flatMap((a) => (a.group ? flatten(a.group) : a.address ? [a.address] : []));

function headerBlock(raw: Buffer): Buffer {
  const end = raw.indexOf('\r\n\r\n');
  return end === -1 ? raw : raw.subarray(0, end + 2);
}

/** RFC 6409 8.2 and 8.3: a submission server may add the Date and Message-ID a client left out. */
function withSubmissionHeaders(raw: Buffer, address: string): Buffer {
  const headers = libmime.decodeHeaders(headerBlock(raw).toString('utf8'));
  const added: string[] = [];
  if (!headers.date) added.push(`Date: ${rfc5322Date(new Date())}`);
  if (!headers['message-id'])
    added.push(
      `Message-ID: <${randomBytes(12).toString('hex')}@${address.slice(address.lastIndexOf('@') + 1)}>`,
    );
  return added.length ? Buffer.concat([Buffer.from(`${added.join('\r\n')}\r\n`), raw]) : raw;
}

/**
 * At most MXF_SUBMISSION_RECIPIENTS_PER_HOUR outside recipients per mailbox and hour: a person writing to
 * colleagues and customers stays far below it, a stolen password sending spam does not get far. A temporary
 * refusal (the mail app keeps the message and tries again later).
 */
async function checkSendingLimit(deps: SubmitDeps, address: string, adding: number) {
  if (adding === 0) return;
  const limit = deps.config.mailbox.outsideRecipientsPerHour;
  const [row] = await deps.sql<{ n: number }[]>`
    select count(*)::int as n from submission s join submission_recipient r on r.message_id = s.message_id
    where s.mailbox = ${address} and s.created_at > now() - interval '1 hour'`;
  if ((row?.n ?? 0) + adding > limit)
    throw new SubmissionRefused(
      450,
      `4.7.1 sending limit reached: ${limit} outside recipients an hour from a temporary mailbox; try again later`,
    );
}

const isOurs = (runbook: Runbook, address: string) =>
  runbook.domains.includes(address.slice(address.lastIndexOf('@') + 1).toLowerCase());

/**
 * The body to MinIO, then one transaction: the held message (for the sender and colleagues), its copy in the
 * sender's mailbox recorded (it is in Sent, not to be copied to their inbox), and the outside recipients.
 */
async function store(
  deps: SubmitDeps,
  m: { address: string; runbook: Runbook; raw: Buffer; local: string[]; outside: string[] },
): Promise<string> {
  const { sql, objects, config } = deps;
  const receivedAt = new Date();
  const queueId = newQueueId(receivedAt.getTime());
  const objectKey = objectKeyFor(queueId, receivedAt);
  await objects.putObject(config.s3.bucket, objectKey, m.raw, m.raw.length);
  const recipients = [...new Set([m.address, ...m.local.map((r) => r.toLowerCase())])].map((address) => ({
    address,
    customerId: m.runbook.id,
  }));
  return sql.begin(async (tx) => {
    const id = await commitHeldMessage(tx as unknown as Sql, {
      queueId,
      envelopeFrom: m.address,
      sizeBytes: m.raw.length,
      sha256: createHash('sha256').update(m.raw).digest('hex'),
      objectKey,
      bodyOffset: 0,
      receivedAt,
      clientIp: '127.0.0.1',
      helo: 'submission',
      tls: null,
      ...searchableHeaders(headerBlock(m.raw)),
      recipients,
    });
    // Written by a person we signed in: no spam score to wait for, nothing to quarantine.
    await tx`update held_message set scored_at = now(), spam_verdict = 'clean' where id = ${id}`;
    // Already in Sent: not copied to the sender's inbox too, unless they wrote to themselves.
    if (!m.local.some((r) => r.toLowerCase() === m.address))
      await tx`insert into delivery_ledger (message_id, recipient, target, outcome, smtp_response)
               values (${id}, ${m.address}, ${mailboxTargetKey(m.runbook.id)}, 'copied', 'sent by this mailbox: in Sent')`;
    await tx`insert into submission (message_id, mailbox, customer_id) values (${id}, ${m.address}, ${m.runbook.id})`;
    if (m.outside.length)
      await tx`insert into submission_recipient (message_id, recipient)
               select ${id}, unnest(${m.outside}::text[]) on conflict do nothing`;
    return id;
  });
}

/** Mail apps are told not to keep their own copy (README): the server files the one copy in Sent, as Gmail does. */
async function fileInSent(deps: SubmitDeps, address: string, raw: Buffer) {
  await withMailbox(deps.config, address, (imap) => imap.append('Sent', raw, ['\\Seen']));
}

/** Colleagues' mail is held mail: ring, so that their temporary mailboxes get it now. */
async function ringColleagues(deps: SubmitDeps, runbook: Runbook, local: string[]) {
  if (local.length === 0) return;
  await ringOutage(deps.client, deps.config.temporal.taskQueue, runbook, 1).catch((err) =>
    // The reconciler rings every customer with held mail within a minute anyway.
    deps.log.warn(
      { err, customerId: runbook.id },
      'could not ring the outage for a colleague; the reconciler will',
    ),
  );
}

/**
 * Submissions stored while Temporal did not answer have no delivery workflow: start one for each message with
 * recipients still unanswered (the fixed workflow id makes a second start a no-op). The mailbox service runs it
 * every minute.
 */
export async function resumeSubmissions(
  deps: Pick<SubmitDeps, 'sql' | 'client' | 'config'>,
): Promise<number> {
  const rows = await deps.sql<{ id: string }[]>`
    select distinct message_id::text as id from submission_recipient where outcome is null`;
  let started = 0;
  for (const { id } of rows) {
    try {
      await startSubmission(deps.client, deps.config.temporal.taskQueue, id);
      started++;
    } catch (err) {
      if (!(err instanceof WorkflowExecutionAlreadyStartedError)) throw err;
    }
  }
  return started;
}

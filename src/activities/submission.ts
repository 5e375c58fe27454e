import { ApplicationFailure, Context, heartbeat } from '@temporalio/activity';
import { dkimSign } from 'mailauth';
import MailComposer from 'nodemailer/lib/mail-composer';
import type { Config } from '../config';
import type { Logger } from '../log';
import { type DkimKey, ourDkimKey } from '../mail/dkim-key';
import { withMailbox } from '../mailbox/imap';
import type { Sql } from '../store/db';
import type { ObjectStore } from '../store/objects';
import { readBody } from '../store/objects';
import { HEARTBEAT_EVERY_MS } from './deliver';
import { mailboxDestination, RouteUnusable, routeTo } from './route';
import { type SendOutcome, sendVia, TargetDeferred, transportFor } from './smtp-send';

// Delivery of mail written in a temporary mailbox to outside recipients, domain by domain along each one's MX
// route, DKIM-signed by our forwarding domain, in the sender's own envelope (bounces come back to the sender's
// domain, whose backup MX is us: they land in the temporary mailbox like any mail). Every outcome is kept in
// submission_recipient, so a retried attempt sends only to whom nobody has answered yet.

interface Pending {
  mailbox: string;
  object_key: string;
  body_offset: string;
  size_bytes: string;
  recipients: string[];
}

type Refusal = { recipient: string; reply: string };

const domainOf = (a: string) => a.slice(a.lastIndexOf('@') + 1).toLowerCase();

interface Deps {
  sql: Sql;
  objects: ObjectStore;
  config: Config;
  log: Logger;
}

async function pending({ sql }: Deps, messageId: string): Promise<Pending | undefined> {
  const [row] = await sql<Pending[]>`
      select s.mailbox, m.object_key, m.body_offset, m.size_bytes,
             array_agg(r.recipient order by r.recipient) filter (where r.outcome is null) as recipients
      from submission s join held_message m on m.id = s.message_id
      join submission_recipient r on r.message_id = s.message_id
      where s.message_id = ${messageId} group by s.mailbox, m.object_key, m.body_offset, m.size_bytes`;
  return row?.recipients ? row : undefined;
}

async function record(
  { sql }: Deps,
  messageId: string,
  recipients: string[],
  outcome: string,
  reply: string,
) {
  if (recipients.length === 0) return;
  await sql`update submission_recipient set outcome = ${outcome}, smtp_response = ${reply}, recorded_at = now()
              where message_id = ${messageId} and recipient = any(${recipients}::text[]) and outcome is null`;
}

/** One domain's recipients, host by host along its route; what is still pending after, and why. */
async function sendToDomain(deps: Deps, messageId: string, p: Pending, raw: Buffer, to: string[]) {
  const { config } = deps;
  let outcome: SendOutcome;
  try {
    const hosts = await routeTo(config, mailboxDestination(config, to[0]!));
    const key = ourDkimKey(config);
    const transports = hosts.map((h) => transportFor(config, h, false));
    try {
      const signed = await dkimSigned(raw, key);
      outcome = await sendVia(transports, { from: p.mailbox, to }, signed);
    } finally {
      for (const t of transports) t.close();
    }
  } catch (err) {
    if (err instanceof RouteUnusable && err.permanent) outcome = { kind: 'permanent', response: err.message };
    else if (err instanceof RouteUnusable || err instanceof TargetDeferred)
      return `${to.join(', ')}: ${err.message}`;
    else throw err;
  }
  if (outcome.kind === 'permanent') {
    await record(deps, messageId, to, 'failed', outcome.response);
    return undefined;
  }
  await record(
    deps,
    messageId,
    to.filter((r) => accepted(outcome, r)),
    'delivered',
    outcome.response,
  );
  for (const r of outcome.refused)
    await record(deps, messageId, [original(to, r.recipient)], 'failed', r.reply);
  return outcome.deferred.length
    ? outcome.deferred.map((d) => `${d.recipient}: ${d.reply}`).join('; ')
    : undefined;
}

export function createSubmissionActivities(deps: Deps) {
  const { objects, config } = deps;
  return {
    /** Sends to every recipient nobody has answered for; fails (and is retried) while some are deferred. */
    async deliverSubmission(messageId: string): Promise<string> {
      const p = await pending(deps, messageId);
      if (!p) return 'nothing left to send';
      const raw = await readBody(objects, config.s3.bucket, bodyRef(p));
      const byDomain = new Map<string, string[]>();
      for (const r of p.recipients) byDomain.set(domainOf(r), [...(byDomain.get(domainOf(r)) ?? []), r]);
      const deferred: string[] = [];
      // Also while one server takes minutes to answer: a live attempt is never taken for dead and retried beside.
      const beat = setInterval(() => heartbeat(), HEARTBEAT_EVERY_MS);
      try {
        for (const to of byDomain.values()) {
          if (Context.current().cancellationSignal.aborted) throw new Error('submission delivery cancelled');
          const why = await sendToDomain(deps, messageId, p, raw, to);
          if (why) deferred.push(why);
        }
      } finally {
        clearInterval(beat);
      }
      await bounceRefused(deps, messageId, p.mailbox);
      if (deferred.length)
        throw ApplicationFailure.retryable(`not delivered yet: ${deferred.join('; ')}`, 'SubmissionDeferred');
      return `${p.recipients.length} recipient(s) answered: delivered, or refused with a notice to the sender`;
    },

    /** Five days without an answer: the rest is refused, and the sender told. */
    async giveUpSubmission(messageId: string, lastError: string): Promise<string> {
      const p = await pending(deps, messageId);
      if (p) await record(deps, messageId, p.recipients, 'failed', `gave up after 5 days: ${lastError}`);
      if (p) await bounceRefused(deps, messageId, p.mailbox);
      return `gave up: ${lastError}`;
    },
  };
}

/** Refusals not yet told to the sender go into their inbox as one notice (and are marked told). */
async function bounceRefused({ sql, config }: Deps, messageId: string, mailbox: string) {
  const refused = await sql<Refusal[]>`
      update submission_recipient set smtp_response = smtp_response || ' (sender notified)'
      where message_id = ${messageId} and outcome = 'failed' and smtp_response not like '%(sender notified)'
      returning recipient, smtp_response as reply`;
  if (refused.length === 0) return;
  const [m] = await sql<
    { subject: string | null }[]
  >`select subject from held_message where id = ${messageId}`;
  const notice = await failureNotice(config, mailbox, m?.subject ?? null, refused);
  await withMailbox(config, mailbox, (imap) => imap.append('INBOX', notice, []));
}

const bodyRef = (p: Pending) => ({
  objectKey: p.object_key,
  offset: Number(p.body_offset),
  length: Number(p.size_bytes),
});

const accepted = (o: SendOutcome, r: string) =>
  o.kind === 'sent' && o.accepted.some((a) => a.toLowerCase() === r.toLowerCase());
const original = (to: string[], r: string) => to.find((t) => t.toLowerCase() === r.toLowerCase()) ?? r;

/** Signed by our forwarding domain: the sender's domain does not know our key (README "Temporary mailboxes"). */
async function dkimSigned(raw: Buffer, key: DkimKey): Promise<Buffer> {
  const signature = { signingDomain: key.domain, selector: key.selector, privateKey: key.privateKey };
  // mailauth's typings put the key at the top level; its code reads it from signatureData (and signs nothing else).
  const result = await dkimSign(raw, { ...signature, signatureData: [signature] });
  if (result.errors.length || !result.signatures)
    throw result.errors[0] ?? new Error('DKIM: no signature made');
  return Buffer.concat([Buffer.from(result.signatures), raw]);
}

/** A plain notice, as a person reads it: who did not get the message, and what their server said. */
function failureNotice(
  config: Config,
  mailbox: string,
  subject: string | null,
  refused: Refusal[],
): Promise<Buffer> {
  const text = [
    `Your message${subject ? ` "${subject}"` : ''} could not be delivered to:`,
    '',
    ...refused.map((r) => `  ${r.recipient}: ${r.reply.replace(' (sender notified)', '')}`),
    '',
    'Check the address, or send it again later. Everyone else it was addressed to has received it.',
  ].join('\r\n');
  const mail = new MailComposer({
    from: `Mail Delivery System <${config.notifyFrom}>`,
    to: mailbox,
    subject: `Undelivered: ${subject ?? '(no subject)'}`,
    text,
    headers: { 'Auto-Submitted': 'auto-replied' },
  });
  return mail.compile().build();
}

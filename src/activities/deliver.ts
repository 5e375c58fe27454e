import { domainToASCII } from 'node:url';
import { ApplicationFailure, Context, heartbeat, sleep } from '@temporalio/activity';
import nodemailer, { type Transporter } from 'nodemailer';
import type { Config } from '../config';
import { type DeliveryBatchResult, type DeliveryTarget, targetKey } from '../domain/delivery';
import type { Runbook } from '../domain/runbook';
import type { Sql } from '../store/db';
import { type BodyRef, type ObjectStore, readBody } from '../store/objects';

// Delivery of held mail, in arrival order, in batches, idempotent through the delivery ledger (DESIGN 4):
// a recipient counts as held until a 'delivered' row exists for it, for any target; a 5xx is recorded as
// 'failed' for that target and not tried there again; a 4xx or a network error fails the activity, which
// Temporal retries with backoff, and what was delivered before it stays recorded.

interface PendingMessage {
  id: string;
  object_key: string;
  body_offset: string;
  size_bytes: string;
  envelope_from: string;
  recipients: string[];
}

const nextBatch = (sql: Sql, customerId: string, key: string, limit: number) => sql<PendingMessage[]>`
  select m.id, m.object_key, m.body_offset, m.size_bytes, m.envelope_from,
         array_agg(r.recipient order by r.recipient) as recipients
  from held_message m join held_recipient r on r.message_id = m.id
  where r.customer_id = ${customerId}
    and not exists (select 1 from delivery_ledger d
                    where d.message_id = r.message_id and d.recipient = r.recipient
                      and (d.outcome = 'delivered' or d.target = ${key}))
  group by m.id
  order by m.id
  limit ${limit}`;

async function record(
  sql: Sql,
  messageId: string,
  recipients: string[],
  key: string,
  outcome: string,
  response: string,
) {
  if (recipients.length === 0) return;
  const rows = recipients.map((recipient) => ({
    message_id: messageId,
    recipient,
    target: key,
    outcome,
    smtp_response: response,
  }));
  await sql`insert into delivery_ledger ${sql(rows)} on conflict do nothing`;
}

/**
 * The batch's bodies, read with one ranged GET per segment object instead of one per message: ingest writes
 * small bodies into shared segments, and MinIO spends about a millisecond of CPU per request. Spans past
 * MAX_COALESCED_BYTES (large messages) are read one message at a time, so memory stays bounded.
 */
const MAX_COALESCED_BYTES = 8 * 1024 * 1024;

function bodyReader(objects: ObjectStore, bucket: string, batch: PendingMessage[]) {
  const spans = new Map<string, { start: number; end: number; count: number }>();
  for (const m of batch) {
    const start = Number(m.body_offset);
    const end = start + Number(m.size_bytes);
    const span = spans.get(m.object_key);
    spans.set(
      m.object_key,
      span
        ? { start: Math.min(span.start, start), end: Math.max(span.end, end), count: span.count + 1 }
        : { start, end, count: 1 },
    );
  }
  const segments = new Map<string, Promise<Buffer>>();
  return (m: PendingMessage): Promise<Buffer> => {
    const ref: BodyRef = {
      objectKey: m.object_key,
      offset: Number(m.body_offset),
      length: Number(m.size_bytes),
    };
    const span = spans.get(m.object_key)!;
    if (span.count === 1 || span.end - span.start > MAX_COALESCED_BYTES)
      return readBody(objects, bucket, ref);
    let segment = segments.get(m.object_key);
    if (!segment) {
      segment = readBody(objects, bucket, {
        objectKey: m.object_key,
        offset: span.start,
        length: span.end - span.start,
      });
      segments.set(m.object_key, segment);
    }
    return segment.then((bytes) =>
      bytes.subarray(ref.offset - span.start, ref.offset - span.start + ref.length),
    );
  };
}

const HEARTBEAT_EVERY_MS = 5_000;
const BATCH_TIME_MS = 10 * 60_000;

/** An address as nodemailer reports it back: the domain lower-cased and in ASCII (punycode). */
function recipientKey(address: string): string {
  const at = address.lastIndexOf('@');
  return `${address.slice(0, at)}@${domainToASCII(address.slice(at + 1).toLowerCase()) || address.slice(at + 1).toLowerCase()}`;
}

type SmtpError = Error & { responseCode?: number; code?: string };
const permanent = (err: SmtpError) => (err.responseCode ?? 0) >= 500;

/**
 * One SMTP session per batch, reusing its connection for every message (a new connection per message cost a
 * round trip and the server's greeting each time). One, not parallel sessions: a worker killed between a
 * server's 250 and our ledger write sends that message again, and with one session at most one message is ever
 * in that window. Parallel sessions (20, as Postfix uses) released a backlog about twice as fast, but a kill -9
 * under load then sent up to 5 duplicates (npm run test:faults); exactly once matters more here than speed.
 */
function transportFor(config: Config, host: string, port: number, requireTls: boolean) {
  return nodemailer.createTransport({
    pool: true,
    maxConnections: 1,
    maxMessages: 1_000,
    host,
    port,
    name: config.hostname,
    secure: false,
    requireTLS: requireTls,
    // Opportunistic TLS between MTAs: encrypt when offered, and do not refuse a self-signed certificate.
    tls: { rejectUnauthorized: false },
    connectionTimeout: 30_000,
    // RFC 5321 4.5.3.2: a client waits up to 5 minutes for the greeting and for the reply to the final dot.
    greetingTimeout: 5 * 60_000,
    socketTimeout: 10 * 60_000,
  });
}

export function createDeliveryActivities({
  sql,
  objects,
  config,
}: {
  sql: Sql;
  objects: ObjectStore;
  config: Config;
}) {
  return {
    async deliverBatch(input: {
      runbook: Runbook;
      target: DeliveryTarget;
      limit: number;
      /** Messages per second, for restores to a server that is just coming back. */
      ratePerSecond?: number;
    }): Promise<DeliveryBatchResult> {
      const { runbook, target } = input;
      const key = targetKey(target, runbook);
      const hosts =
        target.kind === 'primary'
          ? runbook.primary.map((p) => ({ host: p.host, port: p.port, requireTls: false }))
          : target.kind === 'redirect'
            ? [{ host: target.host, port: target.port, requireTls: target.requireTls }]
            : [{ host: config.smtpRelay.host, port: config.smtpRelay.port, requireTls: false }];
      const transports = hosts.map((h) => transportFor(config, h.host, h.port, h.requireTls));
      let delivered = 0;
      let failed = 0;
      // Heartbeats also while one message is on its way (a slow server may take minutes to answer), so a short
      // heartbeat timeout finds a dead worker quickly without declaring a slow delivery dead.
      let lastMessageId: string | undefined;
      const beat = setInterval(() => heartbeat({ lastMessageId }), HEARTBEAT_EVERY_MS);
      // Stop well inside the activity's start-to-close timeout, so a retry never runs beside a live attempt.
      const stopAt = Date.now() + BATCH_TIME_MS;
      const cancelled = Context.current().cancellationSignal;
      let deferred = 0;
      let lastDeferral = '';
      const batch = await nextBatch(sql, runbook.id, key, input.limit);
      const bodyOf = bodyReader(objects, config.s3.bucket, batch);
      try {
        for (const message of batch) {
          if (cancelled.aborted) throw ApplicationFailure.retryable('delivery batch cancelled', 'Cancelled');
          if (Date.now() > stopAt) break;
          const raw = await bodyOf(message);
          const envelope =
            target.kind === 'forward'
              ? { from: config.forwardSender, to: target.to }
              : { from: message.envelope_from, to: message.recipients };
          const outcome = await sendVia(transports, envelope, raw);
          if (outcome.kind === 'permanent') {
            await record(sql, message.id, message.recipients, key, 'failed', outcome.response);
            failed += message.recipients.length;
          } else if (target.kind === 'forward') {
            // One copy reached the forward mailbox(es) on behalf of every original recipient.
            await record(sql, message.id, message.recipients, key, 'delivered', outcome.response);
            delivered += message.recipients.length;
          } else {
            // nodemailer reports recipients in its own form (domain lower-cased, IDN in punycode): map them back
            // to the addresses as stored, or the ledger would never match and the message would go out again.
            const stored = new Map(message.recipients.map((r) => [recipientKey(r), r]));
            const asStored = (list: string[]) => list.flatMap((r) => stored.get(recipientKey(r)) ?? []);
            const accepted = asStored(outcome.accepted);
            const refused = asStored(outcome.refused);
            await record(sql, message.id, accepted, key, 'delivered', outcome.response);
            await record(sql, message.id, refused, key, 'failed', outcome.response);
            delivered += accepted.length;
            failed += refused.length;
            // A deferred recipient waits for the next batch; the rest of the backlog goes on meanwhile.
            if (outcome.deferred.length > 0) {
              deferred += outcome.deferred.length;
              lastDeferral = outcome.response;
            }
          }
          lastMessageId = message.id;
          heartbeat({ lastMessageId });
          if (input.ratePerSecond) await sleep(Math.ceil(1000 / input.ratePerSecond));
        }
      } finally {
        clearInterval(beat);
        for (const t of transports) t.close();
      }
      if (deferred > 0 && delivered === 0 && failed === 0) {
        throw ApplicationFailure.retryable(
          `${deferred} recipient(s) deferred: ${lastDeferral}`,
          'SmtpDeferred',
        );
      }
      // Counted up to 1,000 only: the workflow needs "none left" or "more", and a full count scans the backlog.
      const [{ remaining }] = (await sql`
        select count(*)::int as remaining from (${nextBatch(sql, runbook.id, key, 1_000)}) pending`) as unknown as [
        { remaining: number },
      ];
      return { delivered, failed, remaining };
    },
  };
}

type SendOutcome =
  | { kind: 'sent'; accepted: string[]; refused: string[]; deferred: string[]; response: string }
  | { kind: 'permanent'; response: string };

/** Tries each host in preference order; a connection failure moves on, an SMTP answer is final. */
async function sendVia(
  transports: Transporter[],
  envelope: { from: string; to: string[] },
  raw: Buffer,
): Promise<SendOutcome> {
  let lastError: SmtpError | undefined;
  for (const transport of transports) {
    try {
      const info = await transport.sendMail({ envelope, raw });
      const rejected = (info.rejectedErrors ?? []) as SmtpError[];
      const refused = rejected
        .filter(permanent)
        .map((e) => (e as SmtpError & { recipient?: string }).recipient ?? '');
      const deferred = rejected
        .filter((e) => !permanent(e))
        .map((e) => (e as SmtpError & { recipient?: string }).recipient ?? '');
      return {
        kind: 'sent',
        accepted: (info.accepted as string[]).map(String),
        refused,
        deferred,
        response: info.response ?? '',
      };
    } catch (err) {
      const e = err as SmtpError & { rejectedErrors?: (SmtpError & { recipient?: string })[] };
      // Every recipient refused: nodemailer throws EENVELOPE with the answer for each one.
      if (e.code === 'EENVELOPE' && e.rejectedErrors?.length) {
        const refused = e.rejectedErrors.filter(permanent).map((r) => r.recipient ?? '');
        const deferred = e.rejectedErrors.filter((r) => !permanent(r)).map((r) => r.recipient ?? '');
        return { kind: 'sent', accepted: [], refused, deferred, response: e.message };
      }
      // nodemailer's own refusal of the message (over the server's SIZE, say) will not change on a retry.
      if (permanent(e) || (e.code === 'EMESSAGE' && !e.responseCode))
        return { kind: 'permanent', response: e.message };
      lastError = e;
      if (e.responseCode) break; // a 4xx from a server that answered: retry later, not elsewhere
    }
  }
  throw ApplicationFailure.retryable(`delivery deferred: ${lastError?.message ?? 'no host'}`, 'SmtpDeferred');
}

import { ApplicationFailure, Context, heartbeat, sleep } from '@temporalio/activity';
import type { Config } from '../config';
import {
  DELIVERY_DEFERRED,
  type DeliveryBatchOutcome,
  type DeliveryBatchResult,
  type DeliveryError,
  type DeliveryStopped,
  type DeliveryTarget,
  REFUSED_LISTED,
  targetKey,
} from '../domain/delivery';
import type { Runbook } from '../domain/runbook';
import { type SpamGate, type SpamSymbol, spamGateFor, spamHeaders, spamPolicySchema } from '../domain/spam';
import type { Sql } from '../store/db';
import { countHeldMessages, deliverable, heldRecipient, quarantinedMessage } from '../store/held';
import type { ObjectStore } from '../store/objects';
import { BatchBodies, type StoredBody } from './body-reader';
import { fillMailboxes } from './mailbox-fill';
import { Outbound } from './outbound';
import { RouteUnusable } from './route';
import {
  deliveryErrorOf,
  type RecipientReply,
  recipientKey,
  type SendOutcome,
  sendVia,
  TargetDeferred,
} from './smtp-send';

// Delivery of held mail, in arrival order, in batches, idempotent through the delivery ledger (DESIGN 4). What a
// batch sends is what src/store/held.ts calls held for the target; a 5xx is recorded as failed for that target
// and not tried there again. A 4xx or a network error stops the batch with what it did so far in the failure's
// details; the workflow shows the error and schedules the next try, so the activity itself does not retry it.

export interface PendingMessage extends StoredBody {
  id: string;
  envelope_from: string;
  recipients: string[];
  quarantined: boolean;
  spam_score: number | null;
  spam_symbols: Record<string, SpamSymbol> | null;
  client_ip: string;
  helo: string;
}

export const nextBatch = (sql: Sql, customerId: string, key: string, gate: SpamGate, limit: number) => sql<
  PendingMessage[]
>`
  select m.id, m.object_key, m.body_offset, m.size_bytes, m.envelope_from,
         array_agg(r.recipient order by r.recipient) as recipients,
         ${quarantinedMessage(sql)} as quarantined, m.spam_score, m.spam_symbols, host(m.client_ip) as client_ip, m.helo
  from held_message m join held_recipient r on r.message_id = m.id
  where r.customer_id = ${customerId} and ${heldRecipient(sql, { targetKey: key })} and ${deliverable(sql, gate)}
  group by m.id
  order by m.id
  limit ${limit}`;

export async function record(
  sql: Sql,
  messageId: string,
  replies: RecipientReply[],
  key: string,
  outcome: string,
) {
  if (replies.length === 0) return;
  const rows = replies.map(({ recipient, reply }) => ({
    message_id: messageId,
    recipient,
    target: key,
    outcome,
    smtp_response: reply,
  }));
  // The server has already answered: a ledger write that fails now would send the message again with the next
  // batch. A database that is restarting (kill -9, failover) is waited for, by the clock, instead of given up on.
  const giveUpAt = Date.now() + LEDGER_PATIENCE_MS;
  for (;;) {
    try {
      await sql`insert into delivery_ledger ${sql(rows)} on conflict do nothing`;
      return;
    } catch (err) {
      if (Date.now() >= giveUpAt) throw err;
      await sleep(LEDGER_RETRY_MS);
    }
  }
}

const LEDGER_RETRY_MS = 500;
const LEDGER_PATIENCE_MS = 2 * 60_000;

export const HEARTBEAT_EVERY_MS = 5_000;
const BATCH_TIME_MS = 10 * 60_000;
/** A paced forward reports back this often, so the status's sent / remaining / finish stay current. */
const PACED_BATCH_TIME_MS = 30_000;

/** What a batch has done so far; reported whether it ends normally or stops on a temporary error. */
export class BatchTally implements DeliveryBatchOutcome {
  delivered = 0;
  failed = 0;
  refused: DeliveryBatchOutcome['refused'] = [];
  deferred: DeliveryBatchOutcome['deferred'] = null;
  pausedUntil: number | null = null;

  /** `counted`: recorded as failed in the ledger (a forward mailbox refusing one copy of a delivered one is not). */
  refuse(messageId: string, replies: RecipientReply[], counted = true) {
    if (counted) this.failed += replies.length;
    const at = new Date().toISOString();
    for (const r of replies)
      if (this.refused.length < REFUSED_LISTED) this.refused.push({ messageId, ...r, at });
  }

  outcome(): DeliveryBatchOutcome {
    const { delivered, failed, refused, deferred } = this;
    return { delivered, failed, refused, deferred };
  }
}

/** Records one message's outcome in the ledger and the tally. */
async function recordOutcome(
  sql: Sql,
  tally: BatchTally,
  m: PendingMessage,
  key: string,
  outcome: SendOutcome,
  forwarded: boolean,
) {
  if (outcome.kind === 'permanent') {
    const refused = m.recipients.map((recipient) => ({ recipient, reply: outcome.response }));
    await record(sql, m.id, refused, key, 'failed');
    tally.refuse(m.id, refused);
    return;
  }
  if (forwarded && outcome.accepted.length === 0 && outcome.deferred.length > 0)
    // The forward mailbox deferred the copy (450 4.2.1 "receiving mail too fast"): not a failure, try later.
    throw new TargetDeferred(outcome.deferred[0]!.error);
  if (forwarded && outcome.accepted.length === 0) {
    // Every forward mailbox refused it (550 5.1.1 at RCPT): refused there for every original recipient, so it
    // stays held for the customer's own server.
    const reply = outcome.refused.map((r) => `${r.recipient}: ${r.reply}`).join('; ') || outcome.response;
    return recordOutcome(sql, tally, m, key, { kind: 'permanent', response: reply }, forwarded);
  }
  if (forwarded) {
    // Some forward mailboxes refused and others took it: delivered, and the refusals shown.
    for (const r of outcome.refused) tally.refuse(m.id, [{ recipient: r.recipient, reply: r.reply }], false);
    // One copy reached the forward mailbox(es) on behalf of every original recipient.
    const all = m.recipients.map((recipient) => ({ recipient, reply: outcome.response }));
    await record(sql, m.id, all, key, 'delivered');
    tally.delivered += all.length;
    return;
  }
  // nodemailer reports recipients in its own form (domain lower-cased, IDN in punycode): map them back to the
  // addresses as stored, or the ledger would never match and the message would go out again.
  const stored = new Map(m.recipients.map((r) => [recipientKey(r), r]));
  const asStored = (list: RecipientReply[]) =>
    list.flatMap((r) => {
      const recipient = stored.get(recipientKey(r.recipient));
      return recipient ? [{ recipient, reply: r.reply }] : [];
    });
  const accepted = asStored(outcome.accepted.map((recipient) => ({ recipient, reply: outcome.response })));
  const refused = asStored(outcome.refused);
  await record(sql, m.id, accepted, key, 'delivered');
  await record(sql, m.id, refused, key, 'failed');
  tally.delivered += accepted.length;
  tally.refuse(m.id, refused);
  // A deferred recipient waits for the next batch; the rest of the backlog goes on meanwhile.
  const deferred = outcome.deferred;
  if (deferred.length > 0)
    tally.deferred = {
      recipients: (tally.deferred?.recipients ?? 0) + deferred.length,
      error: deferred[deferred.length - 1]!.error,
    };
}

/** A receiver's "too fast" recorded for its destination; if that fails too, the workflow's own wait applies. */
async function slowedUntil(outbound: Outbound | undefined, err: unknown): Promise<Date | undefined> {
  try {
    return await outbound?.slowDownFor(errorOf(err));
  } catch {
    return undefined;
  }
}

/** What stopped a batch, as the status shows it: the server's reply, the route's problem, or the error. */
function errorOf(err: unknown): DeliveryError {
  if (err instanceof TargetDeferred) return err.error;
  if (err instanceof RouteUnusable)
    return { at: new Date().toISOString(), replyCode: null, message: err.message, permanent: err.permanent };
  // imapflow's errors (temporary mailboxes) say only "Command failed"; the server's words are in responseText.
  const imap = err as { responseText?: string; message?: string };
  if (imap.responseText)
    return {
      at: new Date().toISOString(),
      replyCode: null,
      message: `IMAP: ${imap.message}: ${imap.responseText}`,
    };
  return deliveryErrorOf(err as Error & { responseCode?: number });
}

/**
 * The batch stopped: the workflow gets the error and what was done before it, and decides when to try again (not
 * before `retryAt` when the receiver asked us to slow down).
 */
export function stopped(err: unknown, tally: BatchTally, retryAt?: Date): ApplicationFailure {
  const error = errorOf(err);
  const details: DeliveryStopped = {
    ...tally.outcome(),
    error,
    ...(retryAt ? { retryAt: retryAt.toISOString() } : {}),
  };
  return ApplicationFailure.create({
    type: DELIVERY_DEFERRED,
    message: `delivery deferred: ${error.message}`,
    nonRetryable: true,
    details: [details],
  });
}

/** Runbooks recorded before the spam section have none: they get its defaults. */
export const spamPolicyOf = (runbook: Runbook) => spamPolicySchema.parse(runbook.spam);

/**
 * Quarantined mail reaches only the customer's own servers (the gate keeps it from anywhere else), and then with
 * X-Spam-* headers for their filter; everything else goes byte for byte as we accepted it.
 */
export function tagged(message: PendingMessage, raw: Buffer, threshold: number): Buffer {
  if (!message.quarantined || message.spam_score === null) return raw;
  const headers = spamHeaders({ score: message.spam_score, symbols: message.spam_symbols }, threshold);
  return Buffer.concat([Buffer.from(headers), raw]);
}

export interface DeliverBatchInput {
  runbook: Runbook;
  /** The outage's id: temporary mailboxes are provisioned for it. */
  outageId?: string;
  target: DeliveryTarget;
  limit: number;
  /** Messages per second, for restores to a server that is just coming back. */
  ratePerSecond?: number;
}

export interface DeliveryDeps {
  sql: Sql;
  objects: ObjectStore;
  config: Config;
}

export function createDeliveryActivities(deps: DeliveryDeps) {
  const { sql, objects, config } = deps;

  /** Sends the batch message by message, recording each outcome; throws TargetDeferred when the target stops. */
  async function send(
    input: DeliverBatchInput,
    batch: PendingMessage[],
    tally: BatchTally,
    outbound: Outbound,
  ) {
    const { runbook, target } = input;
    const key = targetKey(target, runbook);
    const policy = spamPolicyOf(runbook);
    const bodies = new BatchBodies(objects, config.s3.bucket, batch);
    // Heartbeats also while one message is on its way (a slow server may take minutes to answer), so a short
    // heartbeat timeout finds a dead worker quickly without declaring a slow delivery dead.
    let lastMessageId: string | undefined;
    const beat = setInterval(() => heartbeat({ lastMessageId }), HEARTBEAT_EVERY_MS);
    // Stop well inside the activity's start-to-close timeout, so a retry never runs beside a live attempt.
    const stopAt = Date.now() + (outbound.paced ? PACED_BATCH_TIME_MS : BATCH_TIME_MS);
    const cancelled = Context.current().cancellationSignal;
    try {
      for (const message of batch) {
        if (cancelled.aborted) throw ApplicationFailure.retryable('delivery batch cancelled', 'Cancelled');
        if (Date.now() > stopAt) break;
        // The copy is made first (sealing takes DNS lookups), so that the slot's time is when it leaves.
        const copy = await outbound.copyOf(
          message,
          tagged(message, await bodies.read(message), policy.quarantineAt),
        );
        if ('unsealable' in copy) {
          await recordOutcome(
            sql,
            tally,
            message,
            key,
            { kind: 'permanent', response: copy.unsealable },
            true,
          );
          continue;
        }
        const paused = await outbound.waitForSlot();
        if (paused) {
          tally.pausedUntil = paused.pausedUntil;
          break;
        }
        const outcome = await sendVia(outbound.transports, copy.envelope, copy.raw);
        await recordOutcome(sql, tally, message, key, outcome, target.kind === 'forward');
        lastMessageId = message.id;
        heartbeat({ lastMessageId });
      }
    } finally {
      clearInterval(beat);
    }
  }

  return {
    async deliverBatch(input: DeliverBatchInput): Promise<DeliveryBatchResult> {
      if (input.target.kind === 'mailboxes') return fillMailboxes(deps, input);
      const key = targetKey(input.target, input.runbook);
      const gate = spamGateFor(input.target, spamPolicyOf(input.runbook));
      const tally = new BatchTally();
      let outbound: Outbound | undefined;
      try {
        const batch = await nextBatch(sql, input.runbook.id, key, gate, input.limit);
        if (batch.length > 0) {
          outbound = await Outbound.open({ sql, config }, input, key);
          await send(input, batch, tally, outbound);
        }
      } catch (err) {
        if (err instanceof ApplicationFailure) throw err;
        throw stopped(err, tally, await slowedUntil(outbound, err));
      } finally {
        outbound?.close();
      }
      if (tally.deferred && tally.delivered === 0 && tally.failed === 0)
        throw stopped(new TargetDeferred(tally.deferred.error), tally);
      const remaining = await countRemaining(sql, input.runbook.id, key, gate, outbound?.paced ?? false);
      const pace = outbound?.ratePerMinute
        ? {
            ratePerMinute: outbound.ratePerMinute,
            pausedUntil: tally.pausedUntil === null ? null : new Date(tally.pausedUntil).toISOString(),
          }
        : undefined;
      return { ...tally.outcome(), remaining, ...(pace ? { pace } : {}) };
    },
  };
}

/**
 * Counted up to 1,000 only: the workflow needs "none left" or "more", and a full count scans the backlog. A paced
 * forward (at most a few per second, 30 s a batch) is counted whole, for the status's estimated finish.
 */
async function countRemaining(sql: Sql, customerId: string, key: string, gate: SpamGate, paced: boolean) {
  if (paced) return countHeldMessages(sql, customerId, key, gate);
  const [{ remaining }] = (await sql`
    select count(*)::int as remaining from (${nextBatch(sql, customerId, key, gate, 1_000)}) pending`) as unknown as [
    { remaining: number },
  ];
  return remaining;
}

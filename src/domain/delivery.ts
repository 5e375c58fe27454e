import { z } from 'zod';
import { rateSchema } from './pace';
import { describePrimary, type Runbook } from './runbook';

/**
 * Outside mailboxes and servers get only scored, unquarantined mail; when the filter has been down for long, an
 * operator may let unscored mail go too (audited with the instruction). The customer's own servers never wait.
 */
function unscoredShape() {
  return { deliverUnscored: z.boolean().optional() };
}

// Where held mail goes when it is released. The destination is chosen at release time (DESIGN invariant 5): a
// message held under "hold" goes wherever the instruction in force says when it is finally delivered.
/**
 * Everything to these mailboxes (say a Gmail account); envelope sender our signed return address, bytes unchanged
 * after our ARC set. One domain per forward: one copy goes in one SMTP transaction to that domain's MX, so a
 * copy is either delivered or not, never half (several domains would be several forwards' worth of bookkeeping).
 * `rate` paces each mailbox (default MXF_FORWARD_RATE, Gmail's 60/min).
 */
export const forwardShape = {
  to: z
    .array(z.email())
    .min(1)
    .max(10)
    .refine((to) => new Set(to.map((a) => a.slice(a.lastIndexOf('@') + 1).toLowerCase())).size === 1, {
      message: 'forward to mailboxes of one domain per instruction (one copy, one SMTP transaction)',
    }),
  rate: rateSchema.optional(),
  ...unscoredShape(),
};
/** Another SMTP server (a site in another geography), original envelope. */
export const redirectShape = {
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(25),
  requireTls: z.boolean().default(false),
  ...unscoredShape(),
};

export const deliveryTargetSchema = z.discriminatedUnion('kind', [
  /** The customer's own MX hosts, original envelope: the ordinary backup-MX job, and the restore. */
  z.object({ kind: z.literal('primary') }),
  z.object({ kind: z.literal('forward'), ...forwardShape }),
  z.object({ kind: z.literal('redirect'), ...redirectShape }),
  /**
   * A temporary mailbox per recipient on our Dovecot (README "Temporary mailboxes"). A working copy, not a
   * delivery: the message stays held for the customer's own servers, and a restore still takes it there.
   */
  z.object({ kind: z.literal('mailboxes') }),
]);
export type DeliveryTarget = z.infer<typeof deliveryTargetSchema>;

const PRIMARY_KEY_PREFIX = 'primary:';
/** The ledger's name for a customer's temporary mailboxes. */
export const mailboxTargetKey = (customerId: string) => `mailbox:${customerId}`;
/** The ledger's name for the customer's own MX hosts (the runbook id is the customer id). */
export const primaryTargetKey = (customerId: string) => `${PRIMARY_KEY_PREFIX}${customerId}`;
/** The same key in SQL, for queries over every customer at once. */
export const PRIMARY_TARGET_KEY_SQL_PREFIX = PRIMARY_KEY_PREFIX;

/** The ledger's name for a target: one row per (message, recipient, target key), so each copy goes once. */
export function targetKey(target: DeliveryTarget, runbook: Pick<Runbook, 'id'>): string {
  switch (target.kind) {
    case 'primary':
      return primaryTargetKey(runbook.id);
    case 'forward':
      return `forward:${[...target.to].sort().join(',')}`;
    case 'redirect':
      return `redirect:${target.host}:${target.port}`;
    case 'mailboxes':
      return mailboxTargetKey(runbook.id);
  }
}

export interface ProbeResult {
  host: string;
  port: number;
  ok: boolean;
  /** Where it failed: the TCP connect, or the SMTP dialogue (banner, EHLO); done when it answered. */
  stage: 'connect' | 'greeting' | 'done';
  latencyMs: number;
  error?: string;
}

/** What went wrong when a target did not take mail: the server's reply, or the network error when none came. */
export interface DeliveryError {
  at: string;
  /** The SMTP reply code when a server answered (4xx, 5xx); null for a network error (refused, timed out, TLS). */
  replyCode: number | null;
  /** The reply as the server sent it ("451 4.7.1 try later"), or the error ("connect ECONNREFUSED 127.0.0.1:25"). */
  message: string;
  /** No retry helps until DNS or the instruction changes: a null MX, a route that loops back to us. */
  permanent?: boolean;
}

/** A recipient a target refused for good (5xx): recorded in the ledger as failed there, never sent there again. */
export interface RefusedRecipient {
  messageId: string;
  recipient: string;
  reply: string;
  at: string;
}

/** What one batch did. Also carried, as the failure's details, by a batch that stopped on a temporary error. */
export interface DeliveryBatchOutcome {
  delivered: number;
  /** Recipients refused permanently (5xx): recorded, never retried. */
  failed: number;
  /** The first few of those, with the reply (a batch lists at most REFUSED_LISTED). */
  refused: RefusedRecipient[];
  /** Recipients the target deferred (4xx) while taking others; they wait for the next batch. */
  deferred: { recipients: number; error: DeliveryError } | null;
}
export const REFUSED_LISTED = 20;

export interface MailboxCounts {
  provisioned: number;
  /** Handed a sign-in (a password and link) by an operator. */
  signInIssued: number;
  signedIn: number;
  /** Refused sign-in since the outage was resolved. */
  closed: number;
}

export interface DeliveryBatchResult extends DeliveryBatchOutcome {
  /** After a batch into temporary mailboxes: how many there are, and how many people have signed in. */
  mailboxes?: MailboxCounts;
  /** Messages of this customer still waiting for this target after the batch, counted up to 1,000 (a paced forward: all). */
  remaining: number;
  /** A paced delivery: the rate in force (after any slow-down), and when it goes on if the batch waits for a slot. */
  pace?: { ratePerMinute: number; pausedUntil: string | null };
}

/** A batch that stopped because the target does not take mail now (4xx, network, our storage): details for the workflow. */
export interface DeliveryStopped extends DeliveryBatchOutcome {
  error: DeliveryError;
  /** The receiver asked us to slow down: nothing goes there before this. */
  retryAt?: string;
}
/** The failure type of a batch stopped on a temporary error; the workflow, not the activity, schedules the next try. */
export const DELIVERY_DEFERRED = 'DeliveryDeferred';

/**
 * How delivery to one target is going, for operators: counts, the last error and since when it fails, and the
 * next attempt. Kept in the outage's status for every target it has used; `inForce` marks the one delivering now.
 */
export interface TargetDelivery {
  key: string;
  description: string;
  inForce: boolean;
  delivered: number;
  failed: number;
  /** Batches tried, and how many of the last ones failed in a row (0 once one goes through). */
  attempts: number;
  failedAttempts: number;
  lastAttemptAt: string | null;
  failingSince: string | null;
  /** Cleared when a batch goes through; a 4xx for some recipients of a batch that went through stays here. */
  lastError: DeliveryError | null;
  nextAttemptAt: string | null;
  /** Recipients refused for good, newest last, at most REFUSED_KEPT. */
  refused: RefusedRecipient[];
  /** A paced delivery (a forward, a restore at the runbook's rate), as of its last batch. */
  pace?: DeliveryPace;
}

export interface DeliveryPace {
  /** The rate in force, after any slow-down a receiver asked for. */
  ratePerMinute: number;
  /** Messages still to send there. */
  remaining: number;
  /** At the rate in force, from the next send. */
  estimatedFinishAt: string;
}
export const REFUSED_KEPT = 50;

/** A target as an operator reads it, in the status, the Web UI and activity summaries. */
export function describeTarget(
  target: DeliveryTarget,
  runbook: Pick<Runbook, 'primary' | 'domains'>,
): string {
  switch (target.kind) {
    case 'forward':
      return `forward to ${target.to.join(', ')}`;
    case 'redirect':
      return `redirect to ${target.host}:${target.port}`;
    case 'primary':
      return `the primary MX (${describePrimary(runbook)})`;
    case 'mailboxes':
      return 'temporary mailboxes (one per recipient)';
  }
}

import { z } from 'zod';
import {
  type DeliveryTarget,
  forwardShape,
  type MailboxCounts,
  type ProbeResult,
  redirectShape,
  type TargetDelivery,
} from './delivery';
import type { Runbook } from './runbook';
import type { SpamCounts } from './spam';

// One outage is one workflow run, identified by the customer: all of a customer's domains share one outage,
// because one phone call decides what happens to all of their mail.
export const outageWorkflowId = (customerId: string) => `outage:${customerId}`;

export const outagePhaseSchema = z.enum([
  'detecting', // mail arrived at the backup MX; probing the primary MX hosts
  'relaying', // the primary answers: no outage, held mail goes straight on to it
  'awaiting-instructions', // outage declared, contacts notified, waiting for what the customer wants
  'holding',
  'forwarding',
  'redirecting',
  'hosting-mailboxes', // each recipient has a temporary mailbox (IMAP, web inbox) filled with their held mail
  'restoring',
  'closed',
]);
export type OutagePhase = z.infer<typeof outagePhaseSchema>;

/** The actions an operator can choose; the API's request body is one of these plus a note and a request id. */
export const instructionActionSchema = z.discriminatedUnion('action', [
  z.object({ action: z.literal('hold') }),
  z.object({ action: z.literal('forward'), ...forwardShape }),
  z.object({ action: z.literal('redirect'), ...redirectShape }),
  z.object({ action: z.literal('mailboxes') }),
  z.object({ action: z.literal('restore') }),
  z.object({ action: z.literal('resolve') }),
]);

/** What the API adds to a request: a retried request (same requestId) is applied once, across continue-as-new. */
export const requestMetaShape = {
  requestId: z.string().min(1).optional(),
  note: z.string().max(2000).optional(),
};
const actorShape = { actor: z.string().min(1, 'say who acts') };

/** What an operator tells an outage to do, on the customer's behalf. Every instruction names its actor. */
export const instructionSchema = z.intersection(
  instructionActionSchema,
  z.object({ ...actorShape, ...requestMetaShape }),
);
export type Instruction = z.output<typeof instructionSchema>;
export type InstructionInput = z.input<typeof instructionSchema>;

export interface InstructionRecord {
  instruction: Instruction;
  at: string;
}

export interface OutageCounts {
  /** Recipients delivered to the primary before any outage was declared (the ordinary backup-MX job). */
  relayed: number;
  forwarded: number;
  redirected: number;
  /** Copies put into temporary mailboxes (one per recipient); still held for the customer's own servers. */
  copiedToMailboxes?: number;
  restored: number;
  failed: number;
}

export interface NotificationRecord {
  step: number;
  at: string;
  results: { channel: string; ok: boolean; detail: string }[];
}

/** A phone call an operator owes the customer's contacts; closed by recording how it went. */
export interface CallTask {
  id: string;
  step: number;
  createdAt: string;
  contacts: { name: string; role: string; phone: string | null }[];
  outcome: CallOutcome | null;
  closedBy: string | null;
  closedAt: string | null;
  note: string | null;
}

export const callOutcomeSchema = z.enum(['reached', 'no-answer', 'voicemail', 'wrong-number']);
export type CallOutcome = z.infer<typeof callOutcomeSchema>;

export const callRecordSchema = z.object({
  taskId: z.string().min(1),
  outcome: callOutcomeSchema,
  ...actorShape,
  ...requestMetaShape,
});
export type CallRecord = z.infer<typeof callRecordSchema>;

/**
 * Declaring an outage by hand: the customer called (a flood at the office) before any probe failed long enough, or
 * no mail is arriving to notice it. Notifications and the default instruction's deadline run from here.
 */
export const declarationSchema = z.object({ ...actorShape, ...requestMetaShape });
export type Declaration = z.infer<typeof declarationSchema>;

/** The workflow's state: what the status query returns, and what continue-as-new carries. Plain JSON only. */
export interface OutageStatus {
  /** See formatOutageId (outage-id.ts). Optional only in state carried from runs older than the ops API. */
  outageId?: string;
  customerId: string;
  startedAt?: string;
  /** Who declared the outage by hand, and why; null when the probes declared it (or nobody yet). */
  declaredBy?: string | null;
  declarationNote?: string | null;
  phase: OutagePhase;
  heldMessages: number;
  doorbellRings: number;
  lastProbe: ProbeResult[];
  primaryHealthy: boolean;
  firstFailureAt: string | null;
  declaredAt: string | null;
  resolvedAt: string | null;
  instruction: Instruction | null;
  history: InstructionRecord[];
  notifications: NotificationRecord[];
  callTasks: CallTask[];
  /** Someone at the customer has been reached: escalation stops (the default instruction still applies). */
  acknowledged: boolean;
  counts: OutageCounts;
  /** Quarantined and unscored mail, and the filter's state; absent in runs recorded before spam scoring. */
  spam?: SpamCounts;
  /** Temporary mailboxes, once the mailboxes instruction provisioned them; per-user state is in the API. */
  mailboxes?: MailboxCounts;
  /** Delivery to each target this outage has used: counts, the last error, the next attempt, refused recipients. */
  deliveries: TargetDelivery[];
  appliedRequestIds: string[];
}

/** The workflow's input. `carried` is the state handed over by continue-as-new. */
export interface OutageInput {
  customerId: string;
  // The runbook as it was when the outage started: a later edit does not change a running outage's plan.
  runbook: Runbook;
  carried?: OutageStatus;
  /** Doorbell rings after which a run continues as new; 5,000 unless set. An input so tests can reach it. */
  ringsPerRun?: number;
}

/** The outage workflow's type, for clients: they import it from here, never the workflow module. */
export type OutageWorkflow = (input: OutageInput) => Promise<OutageStatus>;

/** The doorbell that ingest rings after committing held mail. Counts only: the ledger lives in PostgreSQL. */
export const mailHeldSignalSchema = z.object({ acceptedSinceLastRing: z.number().int().nonnegative() });
export type MailHeld = z.infer<typeof mailHeldSignalSchema>;

/** Where an instruction sends held mail; hold and resolve send it nowhere. */
export function targetOf(instruction: Instruction | null): DeliveryTarget | null {
  switch (instruction?.action) {
    case 'forward':
      return {
        kind: 'forward',
        to: instruction.to,
        rate: instruction.rate,
        deliverUnscored: instruction.deliverUnscored,
      };
    case 'redirect':
      return {
        kind: 'redirect',
        host: instruction.host,
        port: instruction.port,
        requireTls: instruction.requireTls,
        deliverUnscored: instruction.deliverUnscored,
      };
    case 'mailboxes':
      return { kind: 'mailboxes' };
    case 'restore':
      return { kind: 'primary' };
    default:
      return null;
  }
}

const PHASE_OF_ACTION: Record<Instruction['action'], OutagePhase> = {
  hold: 'holding',
  forward: 'forwarding',
  redirect: 'redirecting',
  mailboxes: 'hosting-mailboxes',
  restore: 'restoring',
  resolve: 'closed',
};
export const phaseOf = (instruction: Instruction): OutagePhase => PHASE_OF_ACTION[instruction.action];

/** The runbook's default instruction, as if given by the runbook itself. */
export function defaultInstruction(runbook: Runbook): Instruction {
  const d = runbook.instructions.default;
  const actor = `runbook ${runbook.id} (default after ${d.after})`;
  if (d.action === 'forward') return { action: 'forward', to: [d.to], actor };
  if (d.action === 'redirect')
    return { action: 'redirect', host: d.host, port: d.port, requireTls: false, actor };
  return { action: 'hold', actor };
}

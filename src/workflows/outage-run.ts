import {
  type ActivityOptions,
  allHandlersFinished,
  condition,
  continueAsNew,
  proxyActivities,
  setCurrentDetails,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { targetKey } from '../domain/delivery';
import {
  type Instruction,
  type OutageInput,
  type OutagePhase,
  type OutageStatus,
  type OutageWorkflow,
  phaseOf,
  targetOf,
} from '../domain/outage';
import { formatOutageId } from '../domain/outage-id';
import { describePrimary, durationMs, type Runbook } from '../domain/runbook';
import {
  customerIdKey,
  heldMessagesKey,
  instructionActionKey,
  mxDomainsKey,
  outageIdKey,
  outagePhaseKey,
} from '../domain/search-attributes';
import { type SpamCounts, spamGateFor, spamPolicySchema } from '../domain/spam';

export const SHORT: ActivityOptions = {
  startToCloseTimeout: '1m',
  retry: { initialInterval: '1s', maximumInterval: '30s' },
};
const { countHeldMessages, probePrimary, closeMailboxes } = proxyActivities<Activities>(SHORT);

// Signals per run stay far below Temporal's 10,000 cap because ingest debounces its doorbell; continue-as-new
// well before it anyway, since the server does not suggest it for signal counts. OutageInput.ringsPerRun overrides
// it, so that a test reaches it in a few rings.
const MAX_RINGS_PER_RUN = 5_000;

/**
 * One run of an outage: its status (what the status query returns and continue-as-new carries) and the two
 * things the flow waits on. Handlers only count (a ring, a decision); the flow alone marks what it has seen, so
 * "new mail since I looked" and "the course changed under me" each have one owner.
 */
export class OutageRun {
  readonly s: OutageStatus;
  readonly runbook: Runbook;
  readonly probeEvery: number;
  private ringsThisRun = 0;
  private mailSeen: number;
  private decisions = 0;
  private decisionsSeen = 0;

  constructor(private readonly input: OutageInput) {
    this.runbook = input.runbook;
    this.probeEvery = durationMs(input.runbook.detection.probeInterval);
    this.s = carriedOrNew(input);
    this.mailSeen = this.s.doorbellRings;
  }

  // The phase as it is now: handlers change it while the flow awaits (a getter keeps TypeScript from narrowing it).
  get phase(): OutagePhase {
    return this.s.phase;
  }

  /** The doorbell: ingest committed held mail. */
  ring() {
    this.ringsThisRun++;
    this.s.doorbellRings++;
  }
  markMailSeen() {
    this.mailSeen = this.s.doorbellRings;
  }
  get newMail(): boolean {
    return this.s.doorbellRings > this.mailSeen;
  }

  /** An instruction or a declaration: whatever the flow is doing may no longer be what is wanted. */
  decided() {
    this.decisions++;
  }
  markCourseSeen() {
    this.decisionsSeen = this.decisions;
  }
  get courseChanged(): boolean {
    return this.decisions > this.decisionsSeen;
  }

  /** Search attributes for the Web UI's filters, and the phase a run that continued mid-relay resumes from. */
  async begin() {
    upsertSearchAttributes([
      { key: outageIdKey, value: this.s.outageId! },
      { key: customerIdKey, value: this.s.customerId },
      { key: mxDomainsKey, value: this.runbook.domains },
      { key: outagePhaseKey, value: this.s.phase },
    ]);
    if (this.s.phase === 'relaying') this.setPhase('detecting');
    await this.recount();
  }

  setPhase(phase: OutagePhase) {
    if (this.s.phase === phase) return;
    this.s.phase = phase;
    upsertSearchAttributes([{ key: outagePhaseKey, value: phase }]);
    this.describe();
  }

  apply(instruction: Instruction) {
    const s = this.s;
    s.instruction = instruction;
    s.history.push({ instruction, at: new Date().toISOString() });
    s.declaredAt ??= new Date().toISOString(); // an instruction during detection declares the outage
    this.endDeliveryInForce();
    this.decided();
    upsertSearchAttributes([{ key: instructionActionKey, value: instruction.action }]);
    this.setPhase(phaseOf(instruction));
  }

  /** No target delivers now (a new instruction, or the outage declared): no next attempt to show. */
  endDeliveryInForce() {
    for (const d of this.s.deliveries) Object.assign(d, { inForce: false, nextAttemptAt: null });
  }

  /** The ledger key that "held" is counted for now: the instruction's target, else the customer's own servers. */
  heldTargetKey(): string {
    return targetKey(this.heldTarget(), this.runbook);
  }

  private heldTarget() {
    return targetOf(this.s.instruction) ?? { kind: 'primary' as const };
  }

  async recount() {
    const gate = spamGateFor(this.heldTarget(), spamPolicySchema.parse(this.runbook.spam));
    const count = await countHeldMessages(this.s.customerId, this.heldTargetKey(), gate);
    // A bare number in histories recorded before spam scoring.
    const held = typeof count === 'number' ? count : count.held;
    if (typeof count !== 'number') this.s.spam = count.spam;
    if (held !== this.s.heldMessages) {
      this.s.heldMessages = held;
      upsertSearchAttributes([{ key: heldMessagesKey, value: held }]);
    }
    this.describe();
  }

  async probe() {
    const hosts = describePrimary(this.runbook);
    this.s.lastProbe = await probePrimary.executeWithOptions({ ...SHORT, summary: `Probe ${hosts}` }, [
      this.runbook,
    ]);
    this.s.primaryHealthy = this.s.lastProbe.some((p) => p.ok);
  }

  /** The mailboxes instruction ran at least once (even if every batch failed, mailboxes may exist). */
  hadMailboxes(): boolean {
    return this.s.mailboxes !== undefined || this.s.history.some((h) => h.instruction.action === 'mailboxes');
  }

  /** The outage is over: its temporary mailboxes refuse sign-in, and are deleted after the runbook's retention. */
  async closeMailboxes() {
    this.s.mailboxes = await closeMailboxes.executeWithOptions(
      { ...SHORT, summary: 'Close the temporary mailboxes (sign-in refused; deleted after retention)' },
      [this.runbook],
    );
  }

  /** Continue-as-new between steps once the history grows long, carrying the whole state. */
  async continueIfLong() {
    const ringsPerRun = this.input.ringsPerRun ?? MAX_RINGS_PER_RUN;
    if (this.ringsThisRun < ringsPerRun && !workflowInfo().continueAsNewSuggested) return;
    await condition(allHandlersFinished);
    await continueAsNew<OutageWorkflow>({ ...this.input, carried: this.s });
  }

  /** The Web UI's current details: the phase, what is held, and how delivery goes. */
  describe() {
    const s = this.s;
    const lines = [`**${this.runbook.name}**: ${s.phase}, ${s.heldMessages} message(s) held.`];
    if (s.declaredAt) lines.push(`Outage declared ${s.declaredAt}.`);
    if (s.instruction) lines.push(`Instruction: ${s.instruction.action} (by ${s.instruction.actor}).`);
    const c = s.counts;
    lines.push(
      `Delivered: ${c.relayed} relayed, ${c.forwarded} forwarded, ${c.redirected} redirected, ${c.restored} restored; ${c.failed} failed.`,
    );
    if (s.mailboxes) {
      const m = s.mailboxes;
      lines.push(
        `Temporary mailboxes: ${m.provisioned} (${m.signInIssued} handed a sign-in, ${m.signedIn} signed in${m.closed ? `, ${m.closed} closed` : ''}); ${c.copiedToMailboxes ?? 0} cop(ies) of held mail in them, still held for the primary.`,
      );
    }
    if (s.spam) lines.push(spamLine(s.spam));
    for (const d of s.deliveries.filter((d) => d.inForce)) {
      const state = d.lastError
        ? `**failing** since ${d.failingSince ?? d.lastError.at}: ${d.lastError.message} (${d.failedAttempts} attempt(s)); next attempt ${d.nextAttemptAt ?? 'when mail arrives'}`
        : 'ok';
      lines.push(`Delivery ${d.description}: ${d.delivered} delivered, ${d.failed} refused; ${state}.`);
      if (d.lastError?.permanent)
        lines.push('This will not pass on a retry: change the DNS records or the instruction.');
      if (d.pace)
        lines.push(
          `Pace: ${d.pace.ratePerMinute}/min in force; ${d.pace.remaining} remaining; estimated finish ${d.pace.estimatedFinishAt}${d.nextAttemptAt ? `; next copy at ${d.nextAttemptAt}` : ''}.`,
        );
      for (const r of d.refused.slice(-5)) lines.push(`- refused ${r.recipient}: ${r.reply}`);
    }
    setCurrentDetails(lines.join('\n\n'));
  }
}

/** The state carried by continue-as-new, brought up to date; or a new outage's. */
function carriedOrNew(input: OutageInput): OutageStatus {
  const { firstExecutionRunId, runStartTime } = workflowInfo();
  const s: OutageStatus = input.carried ?? {
    outageId: formatOutageId(input.customerId, firstExecutionRunId),
    customerId: input.customerId,
    startedAt: new Date().toISOString(),
    declaredBy: null,
    declarationNote: null,
    phase: 'detecting',
    heldMessages: 0,
    doorbellRings: 0,
    lastProbe: [],
    primaryHealthy: false,
    firstFailureAt: null,
    declaredAt: null,
    resolvedAt: null,
    instruction: null,
    history: [],
    notifications: [],
    callTasks: [],
    acknowledged: false,
    counts: { relayed: 0, forwarded: 0, redirected: 0, restored: 0, failed: 0 },
    deliveries: [],
    appliedRequestIds: [],
  };
  // State carried from a run older than these fields gets them now; the first run id is the same in every run.
  s.outageId ??= formatOutageId(input.customerId, firstExecutionRunId);
  s.deliveries ??= [];
  // For an older carried state, the earliest moment it knows of (this run's start is later than the outage's).
  s.startedAt ??= [s.firstFailureAt, s.declaredAt, s.history[0]?.at, runStartTime.toISOString()]
    .filter((t): t is string => typeof t === 'string')
    .sort()[0];
  return s;
}

/** Quarantined and unscored mail, and why mail waits for a score. */
function spamLine(spam: SpamCounts): string {
  const waits = spam.unscored > 0 ? `; ${spam.unscored} wait(s) for a spam score` : '';
  const failing = spam.filter?.failingSince
    ? ` (the filter has failed since ${spam.filter.failingSince}: ${spam.filter.lastError})`
    : '';
  return `Spam: ${spam.quarantined} quarantined (${spam.unreviewed} not reviewed)${waits}${failing}.`;
}

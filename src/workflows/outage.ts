import {
  type ActivityOptions,
  ApplicationFailure,
  allHandlersFinished,
  condition,
  continueAsNew,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { createActivities } from '../activities';
import type { DeliveryTarget } from '../domain/delivery';
import { describeIssues } from '../domain/issues';
import {
  callRecordSchema,
  declarationSchema,
  defaultInstruction,
  type Instruction,
  instructionSchema,
  type OutageInput,
  type OutagePhase,
  type OutageStatus,
  outageIdOf,
  phaseOf,
  targetOf,
} from '../domain/outage';
import { durationMs } from '../domain/runbook';
import {
  customerIdKey,
  heldMessagesKey,
  instructionActionKey,
  mxDomainsKey,
  outageIdKey,
  outagePhaseKey,
} from '../domain/search-attributes';
import { declareUpdate, instructUpdate, mailHeldSignal, recordCallUpdate, statusQuery } from './messages';

type Activities = ReturnType<typeof createActivities>;
const SHORT: ActivityOptions = {
  startToCloseTimeout: '1m',
  retry: { initialInterval: '1s', maximumInterval: '30s' },
};
const { countHeldMessages, probePrimary, notifyContacts } = proxyActivities<Activities>(SHORT);
// A few attempts only: a target that stays down is the workflow's matter (wait, probe, maybe change course),
// and a running retry loop would not notice a new instruction.
const DELIVERY: ActivityOptions = {
  startToCloseTimeout: '15m',
  // The activity heartbeats every 5 s, also during a slow send: a killed worker is noticed within 20 s.
  heartbeatTimeout: '20s',
  retry: { initialInterval: '1s', maximumInterval: '10s', maximumAttempts: 3 },
};
const { deliverBatch } = proxyActivities<Activities>(DELIVERY);

const BATCH = 500;
// Signals per run stay far below Temporal's 10,000 cap because ingest debounces its doorbell; continue-as-new
// well before it anyway, since the server does not suggest it for signal counts.
const MAX_RINGS_PER_RUN = 5_000;

/**
 * One customer's outage, from the first held message to the last one delivered:
 * detect (probe the primary MX hosts) -> relay at once if they answer, else declare the outage after confirmAfter
 * -> await instructions (an Update; the runbook's default when its deadline passes) -> hold / forward / redirect,
 * following every new message and any change of instruction -> restore to the primary (automatically when the
 * runbook says so and the primary answers again) -> resolved, with a summary. Held mail is never deleted here.
 */
export async function outageWorkflow(input: OutageInput): Promise<OutageStatus> {
  const { runbook } = input;
  const probeEvery = durationMs(runbook.detection.probeInterval);
  const s: OutageStatus = input.carried ?? {
    outageId: outageIdOf(input.customerId, workflowInfo().firstExecutionRunId),
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
    appliedRequestIds: [],
  };
  // State carried from a run older than these fields gets them now; the first run id is the same in every run.
  s.outageId ??= outageIdOf(input.customerId, workflowInfo().firstExecutionRunId);
  // For an older carried state, the earliest moment it knows of (this run's start is later than the outage's).
  s.startedAt ??= [
    s.firstFailureAt,
    s.declaredAt,
    s.history[0]?.at,
    workflowInfo().runStartTime.toISOString(),
  ]
    .filter((t): t is string => typeof t === 'string')
    .sort()[0];
  let ringsThisRun = 0;
  let pendingRings = 0;
  let instructionChanged = false;

  setHandler(statusQuery, () => s, {
    description: 'Phase, counts, probes and instruction history of this outage',
  });
  setHandler(
    mailHeldSignal,
    () => {
      pendingRings++;
      ringsThisRun++;
      s.doorbellRings++;
    },
    { description: 'Ingest committed held mail for this customer' },
  );
  // A retried API request (same requestId) is answered with the current state and applied once, also after
  // continue-as-new, which resets Temporal's own update-id dedupe.
  const applied = (requestId?: string) => requestId !== undefined && s.appliedRequestIds.includes(requestId);
  function firstTime(requestId?: string): boolean {
    if (applied(requestId)) return false;
    if (requestId) s.appliedRequestIds = [...s.appliedRequestIds, requestId].slice(-100);
    return true;
  }

  setHandler(
    instructUpdate,
    (raw) => {
      const instruction = instructionSchema.parse(raw);
      if (!firstTime(instruction.requestId)) return s;
      apply(instruction);
      return s;
    },
    {
      description: 'Tell the outage what to do with held mail: hold, forward, redirect, restore or resolve',
      validator: (raw) => {
        const parsed = instructionSchema.safeParse(raw);
        if (!parsed.success) throw new Error(`invalid instruction: ${describeIssues(parsed.error)}`);
        if (applied(parsed.data.requestId)) return;
        if (s.phase === 'closed') throw new Error('this outage is resolved; new mail starts a new one');
        if (parsed.data.action === 'resolve' && s.heldMessages > 0) {
          throw new Error(
            `${s.heldMessages} message(s) are still held: restore, forward or redirect them before resolving`,
          );
        }
      },
    },
  );

  setHandler(
    declareUpdate,
    (raw) => {
      const declaration = declarationSchema.parse(raw);
      if (!firstTime(declaration.requestId)) return s;
      s.declaredAt = new Date().toISOString();
      s.declaredBy = declaration.actor;
      s.declarationNote = declaration.note ?? null;
      instructionChanged = true; // a relay batch in flight is the last one
      // Detection and relaying end here; the main flow notices the phase and starts notifying.
      setPhase('awaiting-instructions');
      return s;
    },
    {
      description: "Declare the outage now, on an operator's word, whatever the probes say",
      validator: (raw) => {
        const parsed = declarationSchema.safeParse(raw);
        if (!parsed.success) throw new Error(`invalid declaration: ${describeIssues(parsed.error)}`);
        if (applied(parsed.data.requestId)) return;
        if (s.phase === 'closed')
          throw new Error('this outage is resolved; declare again to start a new one');
        if (s.declaredAt)
          throw new Error(
            `the outage was already declared at ${s.declaredAt}${s.declaredBy ? ` by ${s.declaredBy}` : ''}; it is ${s.phase}`,
          );
      },
    },
  );

  setHandler(
    recordCallUpdate,
    (raw) => {
      const record = callRecordSchema.parse(raw);
      if (!firstTime(record.requestId)) return s;
      const task = s.callTasks.find((t) => t.id === record.taskId)!;
      Object.assign(task, {
        outcome: record.outcome,
        closedBy: record.actor,
        closedAt: new Date().toISOString(),
        note: record.note ?? null,
      });
      if (record.outcome === 'reached') s.acknowledged = true;
      describe();
      return s;
    },
    {
      description: 'Record the outcome of an ops call task: reached, no-answer, voicemail or wrong-number',
      validator: (raw) => {
        const parsed = callRecordSchema.safeParse(raw);
        if (!parsed.success) throw new Error(`invalid call record: ${describeIssues(parsed.error)}`);
        if (applied(parsed.data.requestId)) return;
        const task = s.callTasks.find((t) => t.id === parsed.data.taskId);
        if (!task)
          throw new Error(
            `no call task ${parsed.data.taskId}; open ones: ${openCalls().join(', ') || 'none'}`,
          );
        if (task.outcome)
          throw new Error(`call task ${task.id} was already closed by ${task.closedBy} (${task.outcome})`);
      },
    },
  );

  const openCalls = () => s.callTasks.filter((t) => !t.outcome).map((t) => t.id);

  /** One escalation step: messages go out now; an ops-call step opens a call task for an operator. */
  async function notifyStep(step: number) {
    const { channels } = runbook.notify[step]!;
    if (channels.includes('ops-call')) {
      s.callTasks.push({
        id: `call-${step + 1}`,
        step,
        createdAt: new Date().toISOString(),
        contacts: runbook.contacts.map((c) => ({ name: c.name, role: c.role, phone: c.phone ?? null })),
        outcome: null,
        closedBy: null,
        closedAt: null,
        note: null,
      });
    }
    const results = await notifyContacts.executeWithOptions(
      { ...SHORT, summary: `Notify step ${step + 1}: ${channels.join(', ')}` },
      [
        {
          runbook,
          step,
          channels,
          heldMessages: s.heldMessages,
          declaredAt: s.declaredAt!,
        },
      ],
    );
    s.notifications.push({ step, at: new Date().toISOString(), results });
    describe();
  }

  function apply(instruction: Instruction) {
    s.instruction = instruction;
    s.history.push({ instruction, at: new Date().toISOString() });
    s.declaredAt ??= new Date().toISOString(); // an instruction during detection declares the outage
    instructionChanged = true;
    upsertSearchAttributes([{ key: instructionActionKey, value: instruction.action }]);
    setPhase(phaseOf(instruction));
  }

  // Handlers change the phase while the main flow awaits; read it through a call so TypeScript does not narrow it.
  const phaseNow = (): OutagePhase => s.phase;

  function setPhase(phase: OutagePhase) {
    if (s.phase === phase) return;
    s.phase = phase;
    upsertSearchAttributes([{ key: outagePhaseKey, value: phase }]);
    describe();
  }

  function describe() {
    const lines = [`**${runbook.name}**: ${s.phase}, ${s.heldMessages} message(s) held.`];
    if (s.declaredAt) lines.push(`Outage declared ${s.declaredAt}.`);
    if (s.instruction) lines.push(`Instruction: ${s.instruction.action} (by ${s.instruction.actor}).`);
    const c = s.counts;
    lines.push(
      `Delivered: ${c.relayed} relayed, ${c.forwarded} forwarded, ${c.redirected} redirected, ${c.restored} restored; ${c.failed} failed.`,
    );
    setCurrentDetails(lines.join('\n\n'));
  }

  async function recount() {
    const held = await countHeldMessages(input.customerId);
    if (held !== s.heldMessages) {
      s.heldMessages = held;
      upsertSearchAttributes([{ key: heldMessagesKey, value: held }]);
    }
    describe();
  }

  async function probe() {
    const hosts = runbook.primary.map((p) => `${p.host}:${p.port}`).join(', ');
    s.lastProbe = await probePrimary.executeWithOptions({ ...SHORT, summary: `Probe ${hosts}` }, [runbook]);
    s.primaryHealthy = s.lastProbe.some((p) => p.ok);
  }

  /** Delivers everything held to `target`, batch by batch, until none is left or the instruction changes. */
  async function drain(target: DeliveryTarget, counter: keyof OutageStatus['counts']): Promise<boolean> {
    for (let batch = 1; ; batch++) {
      let result: Awaited<ReturnType<Activities['deliverBatch']>>;
      try {
        const ratePerSecond =
          target.kind === 'primary' && s.declaredAt ? runbook.restore.ratePerSecond : undefined;
        result = await deliverBatch.executeWithOptions(
          { ...DELIVERY, summary: `Deliver up to ${BATCH} to ${describeTarget(target)}` },
          [{ runbook, target, limit: BATCH, ratePerSecond }],
        );
      } catch {
        await recount();
        return false; // the target is not taking mail now; the caller waits and tries again
      }
      s.counts[counter] += result.delivered;
      s.counts.failed += result.failed;
      // Counting what is held scans the backlog: while a large one drains, once every 10 batches (the Web UI's
      // count lags by at most that), and always at the end. Runs recorded before this recount after each batch.
      const done = result.remaining === 0 || instructionChanged;
      if (!patched('recount-every-10-batches') || done || batch % 10 === 0) await recount();
      if (result.remaining === 0 || instructionChanged) return result.remaining === 0;
      await continueIfLong();
    }
  }

  /** Continue-as-new between steps once the history grows long, carrying the whole state. */
  async function continueIfLong() {
    if (ringsThisRun < MAX_RINGS_PER_RUN && !workflowInfo().continueAsNewSuggested) return;
    await condition(allHandlersFinished);
    await continueAsNew<typeof outageWorkflow>({ ...input, carried: s });
  }

  /**
   * Ends the run, unless something came in while we were finishing: held mail, a ring, an instruction. Then the
   * caller goes on. `resolve` closes regardless (mail still held starts a new outage at the next ring).
   */
  async function tryClose(force = false): Promise<OutageStatus | undefined> {
    await condition(allHandlersFinished);
    await recount();
    if (!force && (s.heldMessages > 0 || instructionChanged || pendingRings > 0)) return undefined;
    s.resolvedAt = new Date().toISOString();
    setPhase('closed');
    return s;
  }

  upsertSearchAttributes([
    { key: outageIdKey, value: s.outageId },
    { key: customerIdKey, value: input.customerId },
    { key: mxDomainsKey, value: runbook.domains },
    { key: outagePhaseKey, value: s.phase },
  ]);
  if (s.phase === 'relaying') setPhase('detecting'); // carried from a run that continued as new mid-relay
  await recount();

  // Detect: the primary answers, so this is the ordinary backup-MX job; or it stays silent for confirmAfter.
  // New mail meanwhile only updates the count: the customer's MX is probed on the runbook's interval, no faster.
  let nextProbeAt = 0;
  while (phaseNow() === 'detecting') {
    if (Date.now() >= nextProbeAt) {
      await probe();
      nextProbeAt = Date.now() + probeEvery;
      if (phaseNow() !== 'detecting') break; // an instruction arrived during the probe
      if (s.primaryHealthy) {
        setPhase('relaying');
        instructionChanged = false;
        while (phaseNow() === 'relaying') {
          pendingRings = 0; // a ring from now on is new mail, which tryClose must not miss
          const drained = await drain({ kind: 'primary' }, 'relayed');
          if (phaseNow() !== 'relaying') break; // an instruction arrived during the relay
          if (!drained) {
            // It answered the probe but does not take the mail: count it as failing and keep confirming.
            s.firstFailureAt ??= new Date().toISOString();
            setPhase('detecting');
            break;
          }
          const closed = await tryClose();
          if (closed) return closed;
        }
        continue;
      }
      s.firstFailureAt ??= new Date().toISOString();
      if (Date.now() - Date.parse(s.firstFailureAt) >= durationMs(runbook.detection.confirmAfter)) {
        s.declaredAt ??= new Date().toISOString();
        setPhase('awaiting-instructions');
        break;
      }
    }
    await continueIfLong();
    pendingRings = 0;
    await condition(
      () => instructionChanged || pendingRings > 0 || phaseNow() !== 'detecting',
      Math.max(nextProbeAt - Date.now(), 1),
      { summary: 'Next probe of the primary (confirming the outage)' },
    );
    if (pendingRings > 0) await recount();
  }

  // Notify and await instructions: escalation steps go out on schedule (measured from the declaration) until
  // someone is reached or an instruction comes; the runbook's default applies when its deadline passes.
  if (phaseNow() === 'awaiting-instructions') {
    const declared = Date.parse(s.declaredAt!);
    const deadline = declared + durationMs(runbook.instructions.default.after);
    while (s.instruction === null) {
      await continueIfLong();
      const step = s.notifications.length;
      const nextStepAt =
        step < runbook.notify.length && !s.acknowledged
          ? declared + durationMs(runbook.notify[step]!.after)
          : Number.POSITIVE_INFINITY;
      const wakeAt = Math.min(nextStepAt, deadline);
      if (Date.now() >= nextStepAt) {
        await notifyStep(step);
        continue;
      }
      if (Date.now() >= deadline) {
        apply(defaultInstruction(runbook));
        break;
      }
      const acknowledged = s.acknowledged;
      pendingRings = 0;
      await condition(
        () => s.instruction !== null || s.acknowledged !== acknowledged || pendingRings > 0,
        Math.max(wakeAt - Date.now(), 1),
        {
          summary:
            wakeAt === deadline
              ? `Default instruction (${runbook.instructions.default.action}) due`
              : `Notify step ${step + 1} due`,
        },
      );
      if (pendingRings > 0) await recount();
    }
  }

  // Execute, until restored or resolved. Every pass: deliver what the instruction says, then wait for new mail,
  // a new instruction, or the next probe, which may restore on its own (restore.mode auto).
  for (;;) {
    const instruction = s.instruction!;
    if (instruction.action === 'resolve') return (await tryClose(true))!;
    const target = targetOf(instruction);
    pendingRings = 0;
    instructionChanged = false;
    if (!target) await recount();
    const drained = target ? await drain(target, counterFor(instruction)) : true;
    if (instruction.action === 'restore' && drained && !instructionChanged) {
      const closed = await tryClose();
      if (closed) return closed;
      continue;
    }
    await continueIfLong();
    const woke = await condition(() => instructionChanged || pendingRings > 0, probeEvery, {
      summary: `${s.phase}: waiting for new mail, an instruction, or the next probe`,
    });
    if (woke) continue;
    await probe();
    await recount();
    // The instruction in force now, which a handler may have changed during the probe.
    if (s.primaryHealthy && runbook.restore.mode === 'auto' && s.instruction!.action !== 'restore') {
      apply({
        action: 'restore',
        actor: `runbook ${runbook.id} (restore.mode auto: the primary answers again)`,
      });
    }
  }
}

function describeTarget(target: DeliveryTarget): string {
  if (target.kind === 'forward') return `forward ${target.to.join(', ')}`;
  if (target.kind === 'redirect') return `redirect ${target.host}:${target.port}`;
  return 'the primary';
}

function counterFor(instruction: Instruction): keyof OutageStatus['counts'] {
  switch (instruction.action) {
    case 'forward':
      return 'forwarded';
    case 'redirect':
      return 'redirected';
    case 'restore':
      return 'restored';
    default:
      throw ApplicationFailure.nonRetryable(`no delivery for ${instruction.action}`);
  }
}

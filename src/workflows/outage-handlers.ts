import type { UpdateDefinition } from '@temporalio/common';
import { setHandler } from '@temporalio/workflow';
import type { z } from 'zod';
import { describeIssues } from '../domain/issues';
import {
  type CallRecord,
  callRecordSchema,
  type Declaration,
  declarationSchema,
  type Instruction,
  instructionSchema,
  type OutageStatus,
} from '../domain/outage';
import { declareUpdate, instructUpdate, mailHeldSignal, recordCallUpdate, statusQuery } from './messages';
import type { OutageRun } from './outage-run';

// Every message the outage answers, registered in one place. The three updates share one contract: validated
// synchronously (a refused update leaves no trace in the history), refused once the outage is closed, and applied
// once per requestId, also across continue-as-new, which resets Temporal's own update-id dedupe.

export function registerHandlers(run: OutageRun) {
  const { s } = run;
  setHandler(statusQuery, () => s, {
    description: 'Phase, counts, probes, delivery state and instruction history of this outage',
  });
  setHandler(mailHeldSignal, () => run.ring(), {
    description: 'Ingest committed held mail for this customer',
  });
  idempotentUpdate(run, instructUpdate, instructionSchema, {
    what: 'instruction',
    description: 'Tell the outage what to do with held mail: hold, forward, redirect, restore or resolve',
    validate: (instruction) => refuseEarlyResolve(s, instruction),
    apply: (instruction) => run.apply(instruction),
  });
  idempotentUpdate(run, declareUpdate, declarationSchema, {
    what: 'declaration',
    description: "Declare the outage now, on an operator's word, whatever the probes say",
    validate: () => refuseSecondDeclaration(s),
    apply: (declaration) => declare(run, declaration),
  });
  idempotentUpdate(run, recordCallUpdate, callRecordSchema, {
    what: 'call record',
    description: 'Record the outcome of an ops call task: reached, no-answer, voicemail or wrong-number',
    validate: (record) => refuseUnknownCall(s, record),
    apply: (record) => recordCall(run, record),
  });
}

interface UpdateRules<T> {
  what: string;
  description: string;
  /** Throws the reason an update that parsed is refused now. */
  validate(request: T): void;
  apply(request: T): void;
}

function idempotentUpdate<T extends { requestId?: string }, Input>(
  run: OutageRun,
  definition: UpdateDefinition<OutageStatus, [Input]>,
  schema: z.ZodType<T, Input>,
  rules: UpdateRules<T>,
) {
  const { s } = run;
  const applied = (requestId?: string) => requestId !== undefined && s.appliedRequestIds.includes(requestId);
  setHandler(
    definition,
    (raw) => {
      const request = schema.parse(raw);
      if (applied(request.requestId)) return s; // a retried request is answered with the state, not applied again
      if (request.requestId) s.appliedRequestIds = [...s.appliedRequestIds, request.requestId].slice(-100);
      rules.apply(request);
      return s;
    },
    {
      description: rules.description,
      validator: (raw) => {
        const parsed = schema.safeParse(raw);
        if (!parsed.success) throw new Error(`invalid ${rules.what}: ${describeIssues(parsed.error)}`);
        if (applied(parsed.data.requestId)) return;
        if (s.phase === 'closed')
          throw new Error('this outage is resolved; new mail, or declaring again, starts a new one');
        rules.validate(parsed.data);
      },
    },
  );
}

function refuseEarlyResolve(s: OutageStatus, instruction: Instruction) {
  if (instruction.action === 'resolve' && s.heldMessages > 0)
    throw new Error(
      `${s.heldMessages} message(s) are still held: restore, forward or redirect them before resolving`,
    );
  // Mail waiting for its spam score is held too, though a forward does not count it yet.
  const unscored = s.spam?.unscored ?? 0;
  if (instruction.action === 'resolve' && unscored > 0)
    throw new Error(
      `${unscored} message(s) wait for a spam score: resolve once they are scored and delivered, restore them to the customer's own servers (which take unscored mail), or forward with deliverUnscored`,
    );
}

function refuseSecondDeclaration(s: OutageStatus) {
  if (s.declaredAt)
    throw new Error(
      `the outage was already declared at ${s.declaredAt}${s.declaredBy ? ` by ${s.declaredBy}` : ''}; it is ${s.phase}`,
    );
}

function refuseUnknownCall(s: OutageStatus, record: CallRecord) {
  const task = s.callTasks.find((t) => t.id === record.taskId);
  if (!task) {
    const open = s.callTasks.filter((t) => !t.outcome).map((t) => t.id);
    throw new Error(`no call task ${record.taskId}; open ones: ${open.join(', ') || 'none'}`);
  }
  if (task.outcome)
    throw new Error(`call task ${task.id} was already closed by ${task.closedBy} (${task.outcome})`);
}

/** Detection and relaying end here; the flow notices the phase and starts notifying. */
function declare(run: OutageRun, declaration: Declaration) {
  const { s } = run;
  s.declaredAt = new Date().toISOString();
  s.declaredBy = declaration.actor;
  s.declarationNote = declaration.note ?? null;
  run.endDeliveryInForce();
  run.decided(); // a relay batch in flight is the last one
  run.setPhase('awaiting-instructions');
}

function recordCall(run: OutageRun, record: CallRecord) {
  const task = run.s.callTasks.find((t) => t.id === record.taskId)!;
  Object.assign(task, {
    outcome: record.outcome,
    closedBy: record.actor,
    closedAt: new Date().toISOString(),
    note: record.note ?? null,
  });
  if (record.outcome === 'reached') run.s.acknowledged = true;
  run.describe();
}

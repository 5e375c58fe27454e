import { condition, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { defaultInstruction } from '../domain/outage';
import { durationMs } from '../domain/runbook';
import { type OutageRun, SHORT } from './outage-run';

const { notifyContacts } = proxyActivities<Activities>(SHORT);

/**
 * Notify and await an instruction: escalation steps go out on schedule (measured from the declaration) until
 * someone is reached or an instruction comes; the runbook's default applies when its deadline passes.
 */
export async function notifyAndAwaitInstruction(run: OutageRun) {
  const { s, runbook } = run;
  if (run.phase !== 'awaiting-instructions') return; // an instruction came during detection
  const declared = Date.parse(s.declaredAt!);
  const deadline = declared + durationMs(runbook.instructions.default.after);
  while (s.instruction === null) {
    await run.continueIfLong();
    const step = s.notifications.length;
    const nextStepAt =
      step < runbook.notify.length && !s.acknowledged
        ? declared + durationMs(runbook.notify[step]!.after)
        : Number.POSITIVE_INFINITY;
    const wakeAt = Math.min(nextStepAt, deadline);
    if (Date.now() >= nextStepAt) {
      await notifyStep(run, step);
      continue;
    }
    if (Date.now() >= deadline) {
      run.apply(defaultInstruction(runbook));
      break;
    }
    const acknowledged = s.acknowledged;
    run.markMailSeen();
    await condition(
      () => s.instruction !== null || s.acknowledged !== acknowledged || run.newMail,
      Math.max(wakeAt - Date.now(), 1),
      {
        summary:
          wakeAt === deadline
            ? `Default instruction (${runbook.instructions.default.action}) due`
            : `Notify step ${step + 1} due`,
      },
    );
    if (run.newMail) await run.recount();
  }
}

/** One escalation step: messages go out now; an ops-call step opens a call task for an operator. */
async function notifyStep(run: OutageRun, step: number) {
  const { s, runbook } = run;
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
    [{ runbook, step, channels, heldMessages: s.heldMessages, declaredAt: s.declaredAt! }],
  );
  s.notifications.push({ step, at: new Date().toISOString(), results });
  run.describe();
}

import { ApplicationFailure, allHandlersFinished, condition, patched } from '@temporalio/workflow';
import type { Instruction, OutageCounts, OutageInput, OutageStatus } from '../domain/outage';
import { targetOf } from '../domain/outage';
import { durationMs } from '../domain/runbook';
import { drain, failing } from './outage-delivery';
import { registerHandlers } from './outage-handlers';
import { notifyAndAwaitInstruction } from './outage-notify';
import { OutageRun } from './outage-run';

/**
 * One customer's outage, from the first held message to the last one delivered. Held mail is never deleted here.
 *
 * detect   probe the primary MX hosts; if they answer, relay held mail to them and close: no outage. Else declare
 *          the outage once they stay silent for detection.confirmAfter (or when an operator declares it).
 * notify   escalate to the customer's contacts and await an instruction (the runbook's default at its deadline).
 * execute  hold, forward or redirect, following new mail and every change of instruction; probe the primary.
 * restore  the backlog to the primary (by instruction, or by itself when restore.mode is auto), then close.
 */
export async function outageWorkflow(input: OutageInput): Promise<OutageStatus> {
  const run = new OutageRun(input);
  registerHandlers(run);
  await run.begin();
  const relayed = await detect(run);
  if (relayed) return relayed;
  await notifyAndAwaitInstruction(run);
  return execute(run);
}

/**
 * Detect: the primary answers, so this is the ordinary backup-MX job; or it stays silent for confirmAfter. New
 * mail meanwhile only updates the count: the customer's MX is probed on the runbook's interval, no faster.
 * Returns the closed status when everything was relayed, nothing when an outage is declared or instructed.
 */
async function detect(run: OutageRun): Promise<OutageStatus | undefined> {
  const { s, runbook, probeEvery } = run;
  let nextProbeAt = 0;
  while (run.phase === 'detecting') {
    if (Date.now() >= nextProbeAt) {
      await run.probe();
      nextProbeAt = Date.now() + probeEvery;
      if (run.phase !== 'detecting') break; // an instruction arrived during the probe
      if (s.primaryHealthy) {
        const closed = await relay(run);
        if (closed) return closed;
        continue;
      }
      s.firstFailureAt ??= new Date().toISOString();
      if (Date.now() - Date.parse(s.firstFailureAt) >= durationMs(runbook.detection.confirmAfter)) {
        s.declaredAt ??= new Date().toISOString();
        run.endDeliveryInForce();
        run.setPhase('awaiting-instructions');
        break;
      }
    }
    await run.continueIfLong();
    run.markMailSeen();
    await condition(
      () => run.courseChanged || run.newMail || run.phase !== 'detecting',
      Math.max(nextProbeAt - Date.now(), 1),
      { summary: 'Next probe of the primary (confirming the outage)' },
    );
    if (run.newMail) await run.recount();
  }
  return undefined;
}

/** Relay: held mail straight on to the primary that answered; back to detecting if it does not take it. */
async function relay(run: OutageRun): Promise<OutageStatus | undefined> {
  run.setPhase('relaying');
  run.markCourseSeen();
  while (run.phase === 'relaying') {
    run.markMailSeen(); // a ring from now on is new mail, which close() must not miss
    const drained = await drain(run, { kind: 'primary' }, 'relayed');
    if (run.phase !== 'relaying') break; // declared or instructed during the relay
    if (!drained) {
      // It answered the probe but does not take the mail: count it as failing and keep confirming.
      run.s.firstFailureAt ??= new Date().toISOString();
      run.setPhase('detecting');
      break;
    }
    const closed = await close(run);
    if (closed) return closed;
  }
  return undefined;
}

/**
 * Execute, until restored or resolved. Every pass: deliver what the instruction says, then wait for new mail, a
 * new instruction, or the next probe, which may restore on its own (restore.mode auto).
 */
async function execute(run: OutageRun): Promise<OutageStatus> {
  for (;;) {
    const instruction = run.s.instruction!;
    if (instruction.action === 'resolve') return (await close(run, { force: true }))!;
    if (instruction.action === 'restore') {
      const restored = await restore(run);
      if (restored === 'closed') return run.s;
      if (restored === 'new mail') continue;
    } else if ((await carryOut(run, instruction)) === 'probe-due') {
      await probeForRestore(run);
      continue;
    }
    await run.continueIfLong();
    if (await waitForNews(run)) continue;
    await probeForRestore(run);
  }
}

/** Hold counts what is held; forward and redirect deliver it, and say when a probe is due in between. */
async function carryOut(run: OutageRun, instruction: Instruction): Promise<'probe-due' | undefined> {
  run.markMailSeen();
  run.markCourseSeen();
  const target = targetOf(instruction);
  if (!target) return void (await run.recount());
  return (await drain(run, target, counterFor(instruction))) === 'probe-due' ? 'probe-due' : undefined;
}

/** Restore: the backlog to the primary, at the runbook's rate; closed once nothing is held. */
async function restore(run: OutageRun): Promise<'closed' | 'new mail' | 'wait'> {
  run.markMailSeen();
  run.markCourseSeen();
  const drained = await drain(run, { kind: 'primary' }, 'restored');
  if (!drained || run.courseChanged) return 'wait';
  return (await close(run)) ? 'closed' : 'new mail';
}

/**
 * Waits for the next probe, or sooner for a new instruction or new mail. While the target in force is failing,
 * new mail does not bring the next attempt forward: it comes when the status says it will.
 */
async function waitForNews(run: OutageRun): Promise<boolean> {
  const holdOff = failing(run) && patched('failing-target-waits-for-next-attempt');
  return condition(() => run.courseChanged || (!holdOff && run.newMail), run.probeEvery, {
    summary: holdOff
      ? `${run.s.phase}: delivery failing; next attempt after the next probe`
      : `${run.s.phase}: waiting for new mail, an instruction, or the next probe`,
  });
}

/** The primary answers again: with restore.mode auto, restore without waiting for an operator. */
async function probeForRestore(run: OutageRun) {
  const { s, runbook } = run;
  await run.probe();
  await run.recount();
  // The instruction in force now, which a handler may have changed during the probe.
  if (s.primaryHealthy && runbook.restore.mode === 'auto' && s.instruction!.action !== 'restore') {
    run.apply({
      action: 'restore',
      actor: `runbook ${runbook.id} (restore.mode auto: the primary answers again)`,
    });
  }
}

/**
 * Close: ends the run, unless something came in while we were finishing (held mail, a ring, an instruction);
 * then the caller goes on. `force` (resolve) closes regardless: mail still held starts a new outage at the next ring.
 */
async function close(run: OutageRun, opts: { force?: boolean } = {}): Promise<OutageStatus | undefined> {
  await condition(allHandlersFinished);
  await run.recount();
  if (!opts.force && (run.s.heldMessages > 0 || run.courseChanged || run.newMail)) return undefined;
  run.s.resolvedAt = new Date().toISOString();
  run.setPhase('closed'); // first: an update arriving while the mailboxes close is refused, not lost
  // Runs that never had temporary mailboxes (all those recorded before them) schedule nothing here.
  if (run.hadMailboxes()) await run.closeMailboxes();
  return run.s;
}

const COUNTER: Partial<Record<Instruction['action'], keyof OutageCounts>> = {
  forward: 'forwarded',
  redirect: 'redirected',
  mailboxes: 'copiedToMailboxes',
  restore: 'restored',
};
function counterFor(instruction: Instruction): keyof OutageCounts {
  const counter = COUNTER[instruction.action];
  if (!counter) throw ApplicationFailure.nonRetryable(`no delivery for ${instruction.action}`);
  return counter;
}

import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Component } from '../src/stack/process';
import type { Load } from './faults-load';
import type { Mailbox } from './faults-mailbox';

// kill -9 of each component in turn, under load, with the evidence the verdict needs: that the kill hit a live
// process (its pid, alive right before, and dead of our SIGKILL), when it happened, and when the service was back
// (the first 250 and the first forwarded copy after the restart). The next fault waits for that recovery, so each
// row of the table shows one fault's effect, not the tail of the previous one's.

export const FAULT_KINDS = ['ingest', 'worker', 'minio', 'postgres', 'temporal'] as const;
/** One of FAULT_KINDS here; the cluster suite (scripts/cluster-faults.ts) has kinds of its own. */
export type FaultKind = string;

export interface Fault {
  kind: FaultKind;
  /** The kill of a process that holds delivery sessions: the one cause that may excuse a duplicate copy. */
  excusesDuplicate: boolean;
  /** Its phase: from here until the next fault's phaseFrom (or the end of the load). */
  phaseFrom: number;
  pid?: number;
  /** The pid existed, was not a zombie and had not exited, right before the kill. */
  aliveBeforeKill: boolean;
  /** The signal that ended it ("SIGKILL" when our kill did), or how it exited. */
  endedBy: string;
  killedAt: number;
  /** Restarted and answering again. */
  readyAt: number;
  newPid?: number;
  /** The first 250 that a sender got after readyAt. */
  firstAckAt?: number;
  /** The first copy the forward mailbox accepted after readyAt. */
  firstCopyAt?: number;
  /** What was done, when it was not a kill -9 (a deleted drive). */
  what?: string;
  /** What the run saw of it besides: the other node's 250s while this one was down, a drive's healing. */
  note?: string;
}

/** Said of a kill: it hit a live process. Said of a deleted drive: the drive held data and was then empty. */
export const hitLiveProcess = (f: Fault) =>
  f.aliveBeforeKill && (f.endedBy === 'SIGKILL' || f.endedBy === 'deleted');

export interface InjectOptions {
  settleMs: number;
  downMs: number;
  recoveryTimeoutMs: number;
  forwardTo: string;
}

/** Alive in the kernel's eyes: the pid answers signal 0 and is not a zombie waiting to be reaped. */
function isAlive(c: Component): boolean {
  const { pid, exitCode, signalCode } = c.child;
  if (pid === undefined || exitCode !== null || signalCode !== null) return false;
  try {
    process.kill(pid, 0);
    // /proc/<pid>/stat: "pid (comm) state ..."; comm may hold spaces and parentheses, so read after the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

export async function killAndRestart(
  kind: FaultKind,
  c: Component,
  ready: (() => Promise<void>) | undefined,
  phaseFrom: number,
  downMs: number,
  /** The victim holds delivery sessions (a worker): one duplicate per kill is excused. */
  excusesDuplicate = kind === 'worker',
): Promise<Fault> {
  const pid = c.child.pid;
  const aliveBeforeKill = isAlive(c);
  const killedAt = performance.now();
  try {
    if (pid !== undefined) process.kill(pid, 'SIGKILL');
  } catch {
    // Already gone (ESRCH): aliveBeforeKill says so, and the verdict counts the fault as missed.
  }
  await c.exited;
  const endedBy = c.child.signalCode ?? `exit code ${c.child.exitCode}`;
  await sleep(downMs);
  await c.restart();
  await ready?.();
  return {
    kind,
    excusesDuplicate,
    phaseFrom,
    pid,
    aliveBeforeKill,
    endedBy,
    killedAt,
    readyAt: performance.now(),
    newPid: c.child.pid,
  };
}

/** Waits until senders get 250s again and the forward mailbox receives copies again, or the timeout passes. */
export async function awaitRecovery(fault: Fault, load: Load, mailbox: Mailbox, opts: InjectOptions) {
  const deadline = fault.readyAt + opts.recoveryTimeoutMs;
  while (performance.now() < deadline) {
    fault.firstAckAt ??= load.sent.find((m) => m.outcome === 'acked' && m.endedAt > fault.readyAt)?.endedAt;
    fault.firstCopyAt ??= mailbox.copies.find(
      (c) => c.at > fault.readyAt && c.to.includes(opts.forwardTo),
    )?.at;
    if (fault.firstAckAt !== undefined && fault.firstCopyAt !== undefined) return;
    await sleep(200);
  }
}

export const seconds = (ms: number | undefined) =>
  ms === undefined ? 'never' : `${(ms / 1000).toFixed(1)} s`;

/** One planned fault: it does its harm, brings the service back if that is its part, and says what happened. */
export interface FaultStep {
  kind: FaultKind;
  inject(phaseFrom: number): Promise<Fault>;
}

/**
 * The steps in order, each after a settle under load and each waiting for the service's recovery before the next.
 * A component of `watched` that dies on its own stops the run: every count would be a guess.
 */
export async function runFaults(
  steps: FaultStep[],
  watched: Map<string, Component>,
  load: Load,
  mailbox: Mailbox,
  opts: InjectOptions,
): Promise<Fault[]> {
  const faults: Fault[] = [];
  for (const step of steps) {
    const phaseFrom = performance.now();
    await sleep(opts.settleMs);
    const fault = await step.inject(phaseFrom);
    faults.push(fault);
    await awaitRecovery(fault, load, mailbox, opts);
    console.log(
      `faults: ${fault.kind}: ${fault.what ?? 'kill -9'} (pid ${fault.pid}, ${fault.aliveBeforeKill ? 'alive' : 'NOT ALIVE'} before, ended by ${fault.endedBy}); ` +
        `back ${seconds(fault.readyAt - fault.killedAt)} later${fault.newPid ? ` as pid ${fault.newPid}` : ''}; ` +
        `next 250 after ${seconds(fault.firstAckAt && fault.firstAckAt - fault.readyAt)}, next forwarded copy after ${seconds(fault.firstCopyAt && fault.firstCopyAt - fault.readyAt)}` +
        (fault.note ? `; ${fault.note}` : ''),
    );
    for (const [name, o] of watched)
      if (o.child.exitCode !== null || o.child.signalCode !== null)
        throw new Error(
          `${name} exited on its own (${o.child.exitCode ?? o.child.signalCode}) after the ${fault.kind} fault`,
        );
  }
  return faults;
}

/** `npm run test:faults`: kill -9 of each component of the one-node stack in turn, each restarted. */
export function injectFaults(
  components: Map<FaultKind, Component>,
  ready: Partial<Record<FaultKind, () => Promise<void>>>,
  load: Load,
  mailbox: Mailbox,
  opts: InjectOptions,
): Promise<Fault[]> {
  const steps = FAULT_KINDS.map((kind) => ({
    kind,
    inject: (phaseFrom: number) =>
      killAndRestart(kind, components.get(kind)!, ready[kind], phaseFrom, opts.downMs),
  }));
  return runFaults(steps, components, load, mailbox, opts);
}

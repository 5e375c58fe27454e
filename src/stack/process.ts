import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

// A child process the stack owns: started with its output in a log file (or inherited), stopped with a signal
// and a grace period, then SIGKILL. A pid file lets the next run reclaim a child orphaned by a SIGKILLed parent,
// so a killed `npm run dev` never leaves a postgres holding the data folder's lock.

export interface ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  stop(): Promise<void>;
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Append stdout and stderr here; without it the child writes to our terminal. */
  logFile?: string;
  pidFile?: string;
  uid?: number;
  gid?: number;
  /**
   * The command line the process will have, when a wrapper script execs it: what the pid file records, so that
   * the next run recognises the orphan of a killed one as ours.
   */
  execs?: string[];
  /** postgres wants SIGINT for its "fast" shutdown; everything else takes SIGTERM. */
  stopSignal?: NodeJS.Signals;
  graceMs?: number;
}

export function startProcess(
  name: string,
  command: string,
  args: string[],
  opts: StartOptions = {},
): ManagedProcess {
  if (opts.pidFile) reclaimOrphan(opts.pidFile);
  const out = opts.logFile ? openSync(opts.logFile, 'a') : undefined;
  const child = spawn(command, args, {
    env: opts.env ?? process.env,
    cwd: opts.cwd,
    uid: opts.uid,
    gid: opts.gid,
    // Its own process group: a Ctrl-C in the terminal reaches only the stack's parent, which then stops the
    // children in order (service processes first, storage last) instead of all at once.
    detached: true,
    stdio: ['ignore', out ?? 'inherit', out ?? 'inherit'],
  });
  if (out !== undefined) closeSync(out);
  if (opts.pidFile && child.pid)
    writeFileSync(opts.pidFile, JSON.stringify({ pid: child.pid, argv: opts.execs ?? [command, ...args] }));
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code, signal) => {
      if (opts.pidFile) rmSync(opts.pidFile, { force: true });
      resolve(code ?? (signal ? 128 : null));
    });
    child.once('error', () => resolve(127));
  });
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill(opts.stopSignal ?? 'SIGTERM');
      const done = await Promise.race([
        exited.then(() => true),
        sleep(opts.graceMs ?? 10_000).then(() => false),
      ]);
      if (!done) {
        child.kill('SIGKILL');
        await exited;
      }
    })();
    return stopping;
  };
  return { name, child, exited, stop };
}

function reclaimOrphan(pidFile: string): void {
  let recorded: { pid: number; argv: string[] };
  try {
    recorded = JSON.parse(readFileSync(pidFile, 'utf8'));
  } catch {
    rmSync(pidFile, { force: true });
    return;
  }
  try {
    // Only a process still running our exact command line is ours; a recycled pid belongs to someone else.
    const cmdline = readFileSync(`/proc/${recorded.pid}/cmdline`, 'utf8').split('\0').slice(0, -1);
    if (JSON.stringify(cmdline) === JSON.stringify(recorded.argv)) process.kill(recorded.pid, 'SIGKILL');
  } catch {
    // already gone
  }
  rmSync(pidFile, { force: true });
}

/** Waits until `check` passes; if it never does, stops the process instead of leaving it running. */
export async function startedOrStopped(
  proc: ManagedProcess,
  what: string,
  check: () => Promise<boolean>,
  opts: { timeoutMs?: number; logFile?: string; signal?: AbortSignal } = {},
) {
  try {
    await waitFor(what, check, { ...opts, process: proc });
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return proc;
}

/** Polls `check` until it resolves truthy; fails fast if the process it waits on has exited. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  opts: { timeoutMs?: number; process?: ManagedProcess; logFile?: string; signal?: AbortSignal } = {},
): Promise<void> {
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  let exitCode: number | null | undefined;
  void opts.process?.exited.then((code) => {
    exitCode = code;
  });
  let lastError = '';
  while (Date.now() < deadline) {
    if (exitCode !== undefined) break;
    // Ctrl-C while starting: the storage below may be going away, so waiting on is waiting for nothing.
    if (opts.signal?.aborted) throw new Error(`${what}: stopped while starting`);
    try {
      if (await check()) return;
    } catch (err) {
      lastError = (err as Error).message;
    }
    await sleep(200);
  }
  const why =
    exitCode !== undefined
      ? `it exited with code ${exitCode}`
      : `timed out${lastError ? ` (${lastError})` : ''}`;
  throw new Error(`${what} did not become ready: ${why}${opts.logFile ? `; see ${opts.logFile}` : ''}`);
}

export async function httpOk(url: string): Promise<boolean> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
  await res.body?.cancel();
  return res.ok;
}

export function tcpOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: 1_000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

/**
 * Starts several processes at once and records each one that came up in `running`, also when another failed,
 * so the caller's cleanup stops them all; then throws the first failure.
 */
export async function startTogether<T extends ManagedProcess[]>(
  running: ManagedProcess[],
  starts: { [K in keyof T]: Promise<T[K]> },
): Promise<T> {
  const results = await Promise.allSettled(starts);
  for (const r of results) if (r.status === 'fulfilled') running.push(r.value);
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) throw (failed as PromiseRejectedResult).reason;
  return results.map((r) => (r as PromiseFulfilledResult<ManagedProcess>).value) as T;
}

/** A managed process that can be started again in its place (the fault suite kills components and restarts them). */
export interface Component extends ManagedProcess {
  /** Stops it if it still runs, then starts it again with the same options. */
  restart(): Promise<void>;
}

export function restartable(first: ManagedProcess, start: () => Promise<ManagedProcess>): Component {
  let current = first;
  return {
    name: first.name,
    get child() {
      return current.child;
    },
    get exited() {
      return current.exited;
    },
    stop: () => current.stop(),
    async restart() {
      await current.stop();
      current = await start();
    },
  };
}

/** A system account's uid and gid (`id`), for a service we start as root but run as that account. */
export function accountIds(name: string): { uid: number; gid: number } | undefined {
  try {
    const uid = Number(execFileSync('id', ['-u', name]).toString());
    const gid = Number(execFileSync('id', ['-g', name]).toString());
    return { uid, gid };
  } catch {
    return undefined;
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * A free port under 32768, outside the range the kernel hands out for port 0 and outgoing connections; the
 * Temporal server stores its membership ports in a smallint column.
 */
export async function freeLowPort(): Promise<number> {
  // From 20000 up: every default port of ours (and Temporal's) lies below, so a later start does not find one taken.
  for (let tries = 0; tries < 100; tries++) {
    const port = 20_000 + Math.floor(Math.random() * 12_768);
    if (await portFree(port)) return port;
  }
  throw new Error('found no free port under 32768');
}

/** A free port whose next one is free too: rspamd's worker and its controller. */
export function freePortPair(): Promise<number> {
  return freePortRun(2);
}

/** The first of `n` consecutive free ports. */
export async function freePortRun(n: number): Promise<number> {
  for (let tries = 0; ; tries++) {
    const port = await freePort();
    let free = port + n - 1 <= 65535;
    for (let i = 1; free && i < n; i++) free = await portFree(port + i);
    if (free) return port;
    if (tries === 20) throw new Error(`found no ${n} consecutive free ports`);
  }
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

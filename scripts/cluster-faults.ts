import { execFileSync } from 'node:child_process';
import { type Dirent, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Stack } from '../src/stack';
import { type Component, freePort, tcpOpen, waitFor } from '../src/stack/process';
import { type Services, startServices } from '../src/stack/services';
import { CLUSTER_POSTGRES_CONNECTIONS } from '../src/stack/temporal-server';
import { type Fault, type FaultStep, killAndRestart, runFaults } from './faults-inject';
import { type Load, startLoad } from './faults-load';
import type { Mailbox } from './faults-mailbox';
import { FAULTS, faultsStackOptions, judgeRun, withFaultsStack } from './faults-stack';

// `npm run test:cluster`: the production topology on one machine (the real Temporal server on PostgreSQL, MinIO
// on four erasure-coded drives, two ingest nodes on two ports, two workers on one task queue) under SMTP load
// through both nodes, with faults across nodes:
//   1. kill -9 one ingest node: the other keeps accepting, and senders cut off move to it, as MTAs do;
//   2. kill -9 the worker that has a delivery session open (mid-release): the other worker finishes the release;
//   3. kill -9 the Temporal server and start it again;
//   4. delete one MinIO drive's data: reads go on from parity, and MinIO heals the drive.
// Then the same verdict as `npm run test:faults` (faults-verdict.ts): every acknowledged message held intact and
// delivered, at most one duplicate per killed delivery session; and this suite's own checks on the two nodes and
// the drive.

/** How long the killed ingest node stays down: long enough to see the other node carry the load alone. */
const NODE_DOWN_MS = Number(process.env.CLUSTER_NODE_DOWN_MS ?? 6_000);
const HEAL_TIMEOUT_MS = Number(process.env.CLUSTER_HEAL_TIMEOUT_MS ?? 180_000);
const DRIVES = 4;

interface Nodes {
  ports: number[];
  services: Services;
}

/** Problems this suite finds beside the verdict's: they fail the run too. */
const clusterProblems: string[] = [];

function ingestNodeStep(nodes: Nodes, load: Load): FaultStep {
  const [killedPort, otherPort] = nodes.ports as [number, number];
  const ready = () =>
    waitFor('the ingest node', () => tcpOpen('127.0.0.1', killedPort), { timeoutMs: 30_000 }).then(() => {});
  return {
    kind: 'ingest node',
    async inject(phaseFrom) {
      const fault = await killAndRestart(
        'ingest node',
        nodes.services.ingest[0]!,
        ready,
        phaseFrom,
        NODE_DOWN_MS,
      );
      // A transaction that was answered just before the kill may end a moment after it on our clock.
      const down = load.sent.filter((m) => m.endedAt > fault.killedAt + 1_000 && m.endedAt < fault.readyAt);
      const otherAcks = down.filter((m) => m.port === otherPort && m.outcome === 'acked').length;
      const killedAcks = down.filter((m) => m.port === killedPort && m.outcome === 'acked').length;
      fault.note = `while it was down, the other node answered 250 to ${otherAcks} message(s) and the killed one to ${killedAcks}`;
      if (otherAcks === 0) clusterProblems.push('the other ingest node accepted nothing while one was down');
      // Its SMTP processes must have died with it: a survivor would still answer on the killed node's port.
      if (killedAcks > 0)
        clusterProblems.push(`the killed ingest node's port answered 250 ${killedAcks} times`);
      return fault;
    },
  };
}

/** The pids with a connection open to the stand-in Gmail: the workers delivering right now. */
function deliveringPids(mailboxPort: number): number[] {
  const out = execFileSync('ss', ['-Htnp', 'state', 'established', `( dport = :${mailboxPort} )`]).toString();
  return [...out.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
}

function workerStep(nodes: Nodes, mailbox: Mailbox): FaultStep {
  return {
    kind: 'worker (mid-release)',
    async inject(phaseFrom) {
      let victim: Component | undefined;
      const deadline = performance.now() + FAULTS.recoveryTimeoutMs;
      while (!victim && performance.now() < deadline) {
        const pids = deliveringPids(mailbox.port);
        victim = nodes.services.workers.find((w) => w.child.pid !== undefined && pids.includes(w.child.pid));
        if (!victim) await sleep(20);
      }
      if (!victim) throw new Error('no worker had a delivery session open to kill');
      const fault = await killAndRestart(
        'worker (mid-release)',
        victim,
        undefined,
        phaseFrom,
        FAULTS.downMs,
        true,
      );
      fault.note = `${victim.name} was killed with its delivery session open; the other worker went on`;
      return fault;
    },
  };
}

function temporalStep(stack: Stack): FaultStep {
  return {
    kind: 'temporal server',
    inject: (phaseFrom) =>
      killAndRestart('temporal server', stack.temporal, undefined, phaseFrom, FAULTS.downMs),
  };
}

/**
 * MinIO keeps an object as a folder with an xl.meta on each drive; counted here per drive, outside MinIO's own
 * .minio.sys. Folders come and go under load (temporary writes, renames), so one that vanishes mid-walk is skipped.
 */
function objectsOn(drive: string): number {
  let count = 0;
  const walk = (dir: string) => {
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries)
      if (e.isDirectory() && e.name !== '.minio.sys') walk(join(dir, e.name));
      else if (e.isFile() && e.name === 'xl.meta') count++;
  };
  walk(drive);
  return count;
}

/** When drive 2, wiped, first held as many objects as drive 1 again: MinIO's healing seen from outside. */
let healedAt: number | undefined;

async function watchHealing(minioDir: string, from: number): Promise<void> {
  while (performance.now() - from < HEAL_TIMEOUT_MS) {
    await sleep(1_000);
    const [one, two] = [objectsOn(join(minioDir, 'drive1')), objectsOn(join(minioDir, 'drive2'))];
    if (two > 0 && two >= one) {
      healedAt = performance.now();
      return;
    }
  }
}

function driveStep(minioDir: string): FaultStep {
  const drive = join(minioDir, 'drive2');
  return {
    kind: 'minio drive',
    async inject(phaseFrom) {
      const before = objectsOn(drive);
      const killedAt = performance.now();
      for (const entry of readdirSync(drive)) rmSync(join(drive, entry), { recursive: true, force: true });
      // Writes go on under load while we delete, so a few new objects may already be there: the drive counts as
      // wiped when what is left is a sliver of what it held.
      const left = objectsOn(drive);
      const emptied = left <= Math.max(10, before * 0.05);
      void watchHealing(minioDir, killedAt);
      return {
        kind: 'minio drive',
        excusesDuplicate: false,
        phaseFrom,
        aliveBeforeKill: before > 0,
        endedBy: emptied ? 'deleted' : 'not deleted',
        killedAt,
        readyAt: performance.now(),
        what: `deleted everything on drive 2 of ${DRIVES} (${before} objects; ${left} there right after)`,
      };
    },
  };
}

/** After the run: the wiped drive holds every object again, healed by MinIO from the other three. */
async function awaitHealed(minioDir: string, faults: Fault[]): Promise<void> {
  const start = performance.now();
  const count = () => Array.from({ length: DRIVES }, (_, i) => objectsOn(join(minioDir, `drive${i + 1}`)));
  let counts = count();
  while (counts[1]! < counts[0]! && performance.now() - start < HEAL_TIMEOUT_MS) {
    await sleep(2_000);
    counts = count();
  }
  const healed = counts[1]! >= counts[0]!;
  const drive = faults.find((f) => f.kind === 'minio drive');
  const caughtUp =
    drive && healedAt !== undefined
      ? `, first caught up with drive 1 ${((healedAt - drive.killedAt) / 1000).toFixed(0)} s after the deletion`
      : '';
  const line = `objects per drive after the run: ${counts.join(', ')}; drive 2 ${healed ? 'healed' : 'NOT healed'}${caughtUp}`;
  if (drive) drive.note = line;
  console.log(`cluster: ${line}`);
  if (!healed) clusterProblems.push(`MinIO did not heal the wiped drive within ${HEAL_TIMEOUT_MS / 1000} s`);
}

/** Both nodes took mail, and the killed one took mail again once it was back. */
function checkBothNodes(load: Load, faults: Fault[], ports: number[]): void {
  const acked = load.sent.filter((m) => m.outcome === 'acked');
  const back = faults.find((f) => f.kind === 'ingest node')?.readyAt ?? 0;
  const perNode = ports.map((port) => ({
    port,
    all: acked.filter((m) => m.port === port).length,
    afterRestart: acked.filter((m) => m.port === port && m.startedAt > back).length,
  }));
  console.log(
    `cluster: 250s per node: ${perNode.map((n) => `port ${n.port}: ${n.all} (${n.afterRestart} after the killed node was back)`).join('; ')}`,
  );
  for (const n of perNode)
    if (n.afterRestart === 0)
      clusterProblems.push(`the node on port ${n.port} took no mail after the restart`);
}

async function startNodes(stack: Stack, firstPort: number): Promise<Nodes> {
  const [secondPort, metricsA, metricsB, workerA, workerB] = await Promise.all(
    Array.from({ length: 5 }, freePort),
  );
  const ports = [firstPort, secondPort!];
  const services = startServices(stack, {
    ingest: [
      { smtpPort: firstPort, metricsPort: metricsA! },
      { smtpPort: secondPort!, metricsPort: metricsB! },
    ],
    workers: [{ metricsPort: workerA! }, { metricsPort: workerB! }],
  });
  for (const [i, port] of ports.entries())
    await waitFor(`ingest node ${i + 1}`, () => tcpOpen('127.0.0.1', port), {
      timeoutMs: 60_000,
      process: services.ingest[i],
    });
  return { ports, services };
}

async function main(): Promise<number> {
  let smtpPort = 0;
  const options = async (tmp: string, relayPort: number) => {
    const o = await faultsStackOptions(tmp, relayPort, {
      temporal: { kind: 'server' },
      minio: { drives: DRIVES },
      postgres: { maxConnections: CLUSTER_POSTGRES_CONNECTIONS },
    });
    smtpPort = o.smtpPort;
    // Two processes per node (the default here is one, measured best on 2 shared cores): the node killed below
    // must take its processes with it, or a survivor would go on answering on its port.
    o.env.MXF_INGEST_PROCESSES = '2';
    return o;
  };
  return withFaultsStack('mxf-cluster-', options, async (stack, mailbox) => {
    const nodes = await startNodes(stack, smtpPort);
    const minioDir = join(stack.logs, '..', 'minio');
    const watched = new Map<string, Component>(
      [stack.temporal, stack.minio, stack.postgres!, ...nodes.services.all].map((c) => [c.name, c]),
    );
    const load = startLoad(nodes.ports, FAULTS.senders);
    const steps = [
      ingestNodeStep(nodes, load),
      workerStep(nodes, mailbox),
      temporalStep(stack),
      driveStep(minioDir),
    ];
    const faults = await runFaults(steps, watched, load, mailbox, {
      settleMs: FAULTS.settleMs,
      downMs: FAULTS.downMs,
      recoveryTimeoutMs: FAULTS.recoveryTimeoutMs,
      forwardTo: FAULTS.forwardTo,
    });
    const verdict = await judgeRun(stack.config, mailbox, load, faults);
    checkBothNodes(load, faults, nodes.ports);
    await awaitHealed(minioDir, faults);
    for (const f of faults) if (f.note) console.log(`${f.kind}: ${f.note}`);
    for (const p of clusterProblems) console.error(`cluster: FAIL: ${p}`);
    return verdict || (clusterProblems.length ? 1 : 0);
  });
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`cluster: ${(err as Error).stack ?? err}`);
    process.exit(1);
  },
);

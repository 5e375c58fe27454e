import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client, Connection } from '@temporalio/client';
import { createToken } from '../src/api/auth';
import type { Config } from '../src/config';
import { mailboxEnv, type Stack, startStack } from '../src/stack';
import { httpOk, type ManagedProcess, startProcess, tcpOpen, waitFor } from '../src/stack/process';
import { createSql, type Sql } from '../src/store/db';
import { freePort } from '../test/helpers/ports';
import { startPostfixBackupMx } from './postfix';

// The benchmark's world on this machine: our whole service as separate processes (PostgreSQL with fsync, MinIO,
// Temporal, ingest, worker, API), a private Postfix configured as a backup MX beside it, and Postfix's smtp-sink
// standing in for every destination (the customer's server, Gmail). Nothing of the machine's own Postfix changes.

/** One customer per measurement, so one's backlog never drains into another's. */
export const CUSTOMERS = ['ingest', 'release', 'scale'] as const;
export const domainOf = (customer: string) => `${customer}.bench.example`;

export interface BenchStack {
  config: Config;
  sql: Sql;
  client: Client;
  procs: Record<'postgres' | 'minio' | 'temporal' | 'ingest' | 'worker' | 'api', ManagedProcess>;
  smtpPort: number;
  metricsPort: number;
  /** MXF_INGEST_PROCESSES of our ingest node (BENCH_INGEST_PROCESSES, else every core). */
  ingestProcesses: number;
  /**
   * A second ingest node on the same storage, as one process (MXF_INGEST_PROCESSES=1), idle while the other is
   * measured: the ingest table shows in the same run whether the processes beat one.
   */
  single: { proc: ManagedProcess; smtpPort: number; metricsPort: number };
  postfixPort: number;
  postfixConf: string;
  postfixQueue: string;
  sinkPort: number;
  /** GET or POST on the ops API as an admin; throws on an error status. */
  api<T = unknown>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T>;
  stop(): Promise<void>;
}

/**
 * One runbook per measurement; their primaries never answer (a loopback port nothing listens on: probes stay on
 * this machine), so everything arriving is held.
 */
function writeRunbooks(dir: string, primaryPort: number): string {
  mkdirSync(dir);
  for (const id of CUSTOMERS)
    writeFileSync(
      join(dir, `${id}.yaml`),
      [
        `id: ${id}`,
        `name: Bench ${id}`,
        `domains: [${domainOf(id)}]`,
        'recipients: any',
        `primary: [{ host: 127.0.0.1, port: ${primaryPort} }]`,
        'contacts: [{ name: Ops, role: on call, email: ops@ops.bench.example }]',
        'detection: { probeInterval: 1m, confirmAfter: 10m }',
        'notify: [{ after: 0m, channels: [email] }]',
        'instructions: { default: { after: 72h, action: hold } }',
        'restore: { mode: approval, ratePerSecond: 100 }',
        // smtp-source's bare messages may score high on missing headers; the bench measures moving mail, and
        // scoring is measured on its own, so nothing it sends is quarantined.
        'spam: { quarantineAt: 1000, dmarcReject: score-only }',
      ].join('\n'),
    );
  return dir;
}

const PORTS = [
  'postgres',
  'minio',
  'console',
  'temporal',
  'smtp',
  'metrics',
  'smtpSingle',
  'metricsSingle',
  'api',
  'postfix',
  'sink',
  'primary',
] as const;
type Ports = Record<(typeof PORTS)[number], number>;

const INGEST_PROCESSES = Number(process.env.BENCH_INGEST_PROCESSES ?? availableParallelism());

/** Ours, as separate processes on durable settings (no fsync=off): durable accept against durable accept. */
async function startOurs(
  tmp: string,
  ports: Ports,
): Promise<{ stack: Stack; procs: BenchStack['procs']; single: ManagedProcess }> {
  const stack = await startStack({
    dir: tmp,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      MXF_RUNBOOKS: writeRunbooks(join(tmp, 'runbooks'), ports.primary),
      MXF_SMTP_PORT: String(ports.smtp),
      MXF_INGEST_METRICS_PORT: String(ports.metrics),
      MXF_API_PORT: String(ports.api),
      MXF_SMTP_RELAY: `127.0.0.1:${ports.sink}`,
      MXF_MONITOR: 'off',
      MXF_LOG_LEVEL: 'warn',
      MXF_HOSTNAME: 'mx.failover.bench',
      // The ingest node on every core (BENCH_INGEST_PROCESSES to change it); a one-process node runs beside it.
      MXF_INGEST_PROCESSES: String(INGEST_PROCESSES),
      // smtp-source's connections all come from 127.0.0.1 and stand for many senders; Postfix exempts its own
      // networks from its per-client connection limits (smtpd_client_event_limit_exceptions), so ours is lifted too.
      MXF_SMTP_MAX_PER_IP: '10000',
      ...(await mailboxEnv()),
    },
    postgres: { port: ports.postgres, database: 'bench' },
    temporal: { port: ports.temporal },
    minio: { port: ports.minio, consolePort: ports.console },
  });
  // BENCH_CPU_PROFILE=<folder> writes V8 CPU profiles of our processes there, for finding hot spots.
  const nodeArgs = process.env.BENCH_CPU_PROFILE
    ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROFILE}`]
    : [];
  try {
    const ingest = stack.startService('ingest', 'ingest/main.ts', { nodeArgs });
    const worker = stack.startService('worker', 'worker.ts', { nodeArgs });
    const api = stack.startService('api', 'api/main.ts', { nodeArgs });
    await waitFor('the ingest', () => tcpOpen('127.0.0.1', ports.smtp), {
      process: ingest,
      logFile: join(stack.logs, 'ingest.log'),
    });
    await waitFor('the API', () => httpOk(`http://127.0.0.1:${ports.api}/healthz`), {
      process: api,
      logFile: join(stack.logs, 'api.log'),
    });
    const single = await startSingleIngest(stack, ports, nodeArgs);
    const { postgres, minio, temporal } = stack;
    return { stack, procs: { postgres: postgres!, minio, temporal, ingest, worker, api }, single };
  } catch (err) {
    await stack.stop();
    throw err;
  }
}

/** The one-process ingest node beside the measured one: the stack's environment, its own ports. */
async function startSingleIngest(stack: Stack, ports: Ports, nodeArgs: string[]): Promise<ManagedProcess> {
  const logFile = join(stack.logs, 'ingest-1.log');
  const entry = join(__dirname, '..', 'src', 'ingest', 'main.ts');
  const single = startProcess('ingest-1', process.execPath, [...nodeArgs, '--import', 'tsx', entry], {
    env: {
      ...stack.env,
      MXF_SMTP_PORT: String(ports.smtpSingle),
      MXF_INGEST_METRICS_PORT: String(ports.metricsSingle),
      MXF_INGEST_PROCESSES: '1',
    },
    logFile,
    graceMs: stack.config.shutdownGraceMs,
  });
  try {
    await waitFor('the one-process ingest', () => tcpOpen('127.0.0.1', ports.smtpSingle), {
      process: single,
      logFile,
    });
  } catch (err) {
    await single.stop();
    throw err;
  }
  return single;
}

/** A private Postfix as the backup MX to compare with, and smtp-sink as every destination. */
async function startTheirs(
  dir: string,
  logs: string,
  ports: { postfix: number; sink: number },
  running: ManagedProcess[],
): Promise<void> {
  running.push(
    await startPostfixBackupMx({ dir, port: ports.postfix, domain: CUSTOMERS.map(domainOf).join(', ') }),
  );
  const sinkArgs = [
    ...(process.getuid?.() === 0 ? ['-u', 'postfix'] : []),
    `127.0.0.1:${ports.sink}`,
    '1000',
  ];
  const sink = startProcess('smtp-sink', '/usr/sbin/smtp-sink', sinkArgs, {
    logFile: join(logs, 'sink.log'),
  });
  running.push(sink);
  await waitFor('smtp-sink', () => tcpOpen('127.0.0.1', ports.sink), { process: sink });
}

/** GET or POST on the ops API as an admin; throws on an error status. */
function apiClient(base: string, token: string): BenchStack['api'] {
  return async <T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${token}`,
        ...(body ? { 'content-type': 'application/json' } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text.slice(0, 300)}`);
    return JSON.parse(text) as T;
  };
}

export async function startBenchStack(): Promise<BenchStack> {
  const tmp = mkdtempSync(join(tmpdir(), 'mxf-bench-'));
  // Postfix, smtp-sink and the one-process ingest: stopped before our stack.
  const beside: ManagedProcess[] = [];
  let ours: Stack | undefined;
  let close = async () => {};
  const stop = async () => {
    await close();
    for (const p of [...beside].reverse()) await p.stop();
    await ours?.stop();
    rmSync(tmp, { recursive: true, force: true });
  };
  try {
    const free = await Promise.all(PORTS.map(freePort));
    const ports = Object.fromEntries(PORTS.map((name, i) => [name, free[i]!])) as Ports;
    const started = await startOurs(tmp, ports);
    ours = started.stack;
    beside.push(started.single);
    const { config, logs } = ours;
    const sql = createSql(config, { max: 4 });
    const connection = await Connection.connect({ address: config.temporal.address });
    close = async () => {
      await connection.close();
      await sql.end({ timeout: 1 });
    };
    const token = await createToken(sql, 'bench', 'admin', { actor: 'bench', replace: true });
    const postfixDir = join(tmp, 'postfix');
    await startTheirs(postfixDir, logs, ports, beside);
    return {
      config,
      sql,
      client: new Client({ connection, namespace: 'default' }),
      procs: started.procs,
      smtpPort: ports.smtp,
      metricsPort: ports.metrics,
      ingestProcesses: INGEST_PROCESSES,
      single: { proc: started.single, smtpPort: ports.smtpSingle, metricsPort: ports.metricsSingle },
      postfixPort: ports.postfix,
      postfixConf: join(postfixDir, 'conf'),
      postfixQueue: join(postfixDir, 'queue'),
      sinkPort: ports.sink,
      api: apiClient(`http://127.0.0.1:${ports.api}`, token),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * Postfix's smtp-source against a port; resolves to the seconds it took. `reuse` (the default): each session sends
 * message after message on one connection (-d); false: one new connection per message.
 */
export function smtpSource(
  port: number,
  opts: { messages: number; sessions: number; size: number; to: string; reuse?: boolean },
): Promise<number> {
  const args = ['-s', String(opts.sessions), '-l', String(opts.size), '-m', String(opts.messages)];
  if (opts.reuse !== false) args.push('-d');
  args.push('-M', 'source.bench.test', '-f', 'sender@source.example', '-t', opts.to, `127.0.0.1:${port}`);
  const started = performance.now();
  return new Promise((resolve, reject) =>
    execFile('/usr/sbin/smtp-source', args, { timeout: 1_800_000 }, (err, _out, stderr) =>
      err
        ? reject(new Error(`smtp-source failed: ${stderr || err.message}`))
        : resolve((performance.now() - started) / 1000),
    ),
  );
}

/** Files under a Postfix queue folder; qmgr moves them while we look, so a vanished one just does not count. */
export const countFiles = (dir: string): number =>
  readdirSync(dir).reduce((n, name) => {
    try {
      const path = join(dir, name);
      return n + (statSync(path).isDirectory() ? countFiles(path) : 1);
    } catch {
      return n;
    }
  }, 0);

/** Proportional set size of a process and its descendants, in MiB: shared pages counted once across them. */
export function pssMiB(pid: number): number {
  const children = (p: number): number[] => {
    try {
      const kids = readFileSync(`/proc/${p}/task/${p}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number);
      return kids.flatMap((k) => [k, ...children(k)]);
    } catch {
      return [];
    }
  };
  let kib = 0;
  for (const p of [pid, ...children(pid)]) {
    try {
      kib += Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${p}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
    } catch {
      // gone meanwhile
    }
  }
  return kib / 1024;
}

/** Samples the PSS of each process every 250 ms while `fn` runs; resolves to fn's result and each peak. */
export async function withPeakMemory<T>(
  procs: Record<string, ManagedProcess>,
  fn: () => Promise<T>,
): Promise<{ result: T; peakMiB: Record<string, number> }> {
  const peakMiB: Record<string, number> = {};
  const sample = () => {
    for (const [name, p] of Object.entries(procs))
      peakMiB[name] = Math.max(peakMiB[name] ?? 0, pssMiB(p.child.pid!));
  };
  sample();
  const timer = setInterval(sample, 250);
  try {
    return { result: await fn(), peakMiB };
  } finally {
    clearInterval(timer);
    sample();
  }
}

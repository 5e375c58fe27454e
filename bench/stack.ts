import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Client, Connection } from '@temporalio/client';
import { createToken } from '../src/api/auth';
import { type Config, parseConfig } from '../src/config';
import { startMinio } from '../src/stack/minio';
import { ensureDatabase, startPrivatePostgres } from '../src/stack/postgres';
import {
  httpOk,
  type ManagedProcess,
  startProcess,
  startTogether,
  tcpOpen,
  waitFor,
} from '../src/stack/process';
import { startTemporalDevServer } from '../src/stack/temporal';
import { createSql, type Sql } from '../src/store/db';
import { migrate } from '../src/store/migrate';
import { createObjectStore, ensureBucket } from '../src/store/objects';
import { ensureSearchAttributes } from '../src/temporal';
import { freePort } from '../test/helpers/ports';
import { startPostfixBackupMx } from './postfix';

// The benchmark's world on this machine: our whole service as separate processes (PostgreSQL with fsync, MinIO,
// Temporal, ingest, worker, API), a private Postfix configured as a backup MX beside it, and Postfix's smtp-sink
// standing in for every destination (the customer's server, Gmail). Nothing of the machine's own Postfix changes.

const ROOT = join(__dirname, '..');
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
  postfixPort: number;
  postfixConf: string;
  postfixQueue: string;
  sinkPort: number;
  /** GET or POST on the ops API as an admin; throws on an error status. */
  api<T = unknown>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T>;
  stop(): Promise<void>;
}

export async function startBenchStack(): Promise<BenchStack> {
  const tmp = mkdtempSync(join(tmpdir(), 'mxf-bench-'));
  const logs = join(tmp, 'logs');
  mkdirSync(logs);
  const running: ManagedProcess[] = [];
  const stop = async () => {
    for (const p of [...running].reverse()) await p.stop();
    rmSync(tmp, { recursive: true, force: true });
  };
  try {
    const ports = await Promise.all(Array.from({ length: 10 }, freePort));
    const [
      pgPort,
      minioPort,
      consolePort,
      temporalPort,
      smtpPort,
      metricsPort,
      apiPort,
      postfixPort,
      sinkPort,
    ] = ports as [number, number, number, number, number, number, number, number, number];
    // Durable settings on purpose (no fsync=off): durable accept against durable accept.
    const pg = await startPrivatePostgres({
      dir: join(tmp, 'pg'),
      port: pgPort,
      logFile: join(logs, 'pg.log'),
    });
    running.push(pg);
    await ensureDatabase(pg.url('postgres'), 'bench');
    const runbooks = join(tmp, 'runbooks');
    mkdirSync(runbooks);
    for (const id of CUSTOMERS)
      writeFileSync(
        join(runbooks, `${id}.yaml`),
        [
          `id: ${id}`,
          `name: Bench ${id}`,
          `domains: [${domainOf(id)}]`,
          'recipients: any',
          'primary: [{ host: 192.0.2.1, port: 25 }]', // TEST-NET-1: never answers
          'contacts: [{ name: Ops, role: on call, email: ops@ops.bench.example }]',
          'detection: { probeInterval: 1m, confirmAfter: 10m }',
          'notify: [{ after: 0m, channels: [email] }]',
          'instructions: { default: { after: 72h, action: hold } }',
          'restore: { mode: approval, ratePerSecond: 100 }',
        ].join('\n'),
      );
    const env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      DATABASE_URL: pg.url('bench'),
      MXF_RUNBOOKS: runbooks,
      MXF_SMTP_PORT: String(smtpPort),
      MXF_INGEST_METRICS_PORT: String(metricsPort),
      MXF_API_PORT: String(apiPort),
      MXF_S3_ENDPOINT: `http://127.0.0.1:${minioPort}`,
      TEMPORAL_ADDRESS: `127.0.0.1:${temporalPort}`,
      MXF_SMTP_RELAY: `127.0.0.1:${sinkPort}`,
      MXF_MONITOR: 'off',
      MXF_LOG_LEVEL: 'warn',
      MXF_HOSTNAME: 'mx.failover.bench',
    };
    const config = parseConfig(env);
    const sql = createSql(config, { max: 4 });
    await migrate(sql);
    const [temporal, minio] = await startTogether<[ManagedProcess, ManagedProcess]>(running, [
      startTemporalDevServer({
        port: temporalPort,
        namespace: 'default',
        logFile: join(logs, 'temporal.log'),
      }),
      startMinio({
        dir: join(tmp, 'minio'),
        port: minioPort,
        consolePort,
        accessKey: config.s3.accessKey,
        secretKey: config.s3.secretKey,
        logFile: join(logs, 'minio.log'),
      }),
    ]);
    await ensureBucket(createObjectStore(config), config);
    const connection = await Connection.connect({ address: config.temporal.address });
    await ensureSearchAttributes(connection, 'default');
    const client = new Client({ connection, namespace: 'default' });
    // BENCH_CPU_PROFILE=<folder> writes V8 CPU profiles of our processes there, for finding hot spots.
    const profile = process.env.BENCH_CPU_PROFILE
      ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROFILE}`]
      : [];
    const node = (name: string, file: string) => {
      const p = startProcess(
        name,
        process.execPath,
        [...profile, '--import', 'tsx', join(ROOT, 'src', file)],
        {
          env,
          logFile: join(logs, `${name}.log`),
        },
      );
      running.push(p);
      return p;
    };
    const [ingest, worker, api] = [
      node('ingest', 'ingest/main.ts'),
      node('worker', 'worker.ts'),
      node('api', 'api/main.ts'),
    ];
    await waitFor('the ingest', () => tcpOpen('127.0.0.1', smtpPort), {
      process: ingest,
      logFile: join(logs, 'ingest.log'),
    });
    await waitFor('the API', () => httpOk(`http://127.0.0.1:${apiPort}/healthz`), {
      process: api,
      logFile: join(logs, 'api.log'),
    });
    const token = await createToken(sql, 'bench', 'admin', { actor: 'bench', replace: true });
    const postfixDir = join(tmp, 'postfix');
    running.push(
      await startPostfixBackupMx({
        dir: postfixDir,
        port: postfixPort,
        domain: CUSTOMERS.map(domainOf).join(', '),
      }),
    );
    const sinkArgs = [
      ...(process.getuid?.() === 0 ? ['-u', 'postfix'] : []),
      `127.0.0.1:${sinkPort}`,
      '1000',
    ];
    const sink = startProcess('smtp-sink', '/usr/sbin/smtp-sink', sinkArgs, {
      logFile: join(logs, 'sink.log'),
    });
    running.push(sink);
    await waitFor('smtp-sink', () => tcpOpen('127.0.0.1', sinkPort), { process: sink });
    const base = `http://127.0.0.1:${apiPort}`;
    return {
      config,
      sql,
      client,
      procs: { postgres: pg, minio, temporal, ingest, worker, api },
      smtpPort,
      metricsPort,
      postfixPort,
      postfixConf: join(postfixDir, 'conf'),
      postfixQueue: join(postfixDir, 'queue'),
      sinkPort,
      async api<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
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
      },
      async stop() {
        await connection.close();
        await sql.end({ timeout: 1 });
        await stop();
      },
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Postfix's smtp-source against a port; resolves to the seconds it took. */
export function smtpSource(
  port: number,
  opts: { messages: number; sessions: number; size: number; to: string },
): Promise<number> {
  const args = ['-s', String(opts.sessions), '-l', String(opts.size), '-m', String(opts.messages), '-d'];
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

import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseConfig } from '../src/config';
import { startMinio } from '../src/stack/minio';
import { ensureDatabase, startPrivatePostgres } from '../src/stack/postgres';
import { type ManagedProcess, startProcess, startTogether, tcpOpen, waitFor } from '../src/stack/process';
import { startTemporalDevServer } from '../src/stack/temporal';
import { createSql } from '../src/store/db';
import { migrate } from '../src/store/migrate';
import { createObjectStore, ensureBucket } from '../src/store/objects';
import { freePort } from '../test/helpers/ports';
import { cpuSeconds } from './cpu';
import { postfixAvailable, startPostfixBackupMx } from './postfix';

// `npm run bench:ingest`: Postfix's smtp-source drives our SMTP ingest (body in MinIO and rows committed in
// PostgreSQL before each 250, both fsyncing) and a private Postfix configured as a backup MX for the same domain
// (queue file fsynced before each 250), on this machine, in the same run, alternating rounds. Prints messages/s
// for both, the ratio, and our p50/p99 time to 250 from the ingest's own histogram.

const MESSAGES = Number(process.env.BENCH_MESSAGES ?? 3000);
const SESSIONS = Number(process.env.BENCH_SESSIONS ?? 20);
const SIZE = Number(process.env.BENCH_SIZE ?? 4096);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 2);
const DOMAIN = 'bench.example';
const ROOT = join(__dirname, '..');

function smtpSource(port: number, messages: number, reuse: boolean): Promise<number> {
  const args = [
    '-s',
    String(SESSIONS),
    '-l',
    String(SIZE),
    '-m',
    String(messages),
    '-M',
    'source.bench.test',
  ];
  if (reuse) args.push('-d');
  args.push('-f', 'sender@source.example', '-t', `rcpt@${DOMAIN}`, `127.0.0.1:${port}`);
  const started = performance.now();
  return new Promise((resolve, reject) =>
    execFile('/usr/sbin/smtp-source', args, { timeout: 600_000 }, (err, _out, stderr) =>
      err
        ? reject(new Error(`smtp-source failed: ${stderr || err.message}`))
        : resolve((performance.now() - started) / 1000),
    ),
  );
}

/** Files under a Postfix queue folder; qmgr moves them while we look, so a vanished one just does not count. */
const countFiles = (dir: string): number =>
  readdirSync(dir).reduce((n, name) => {
    try {
      const path = join(dir, name);
      return n + (statSync(path).isDirectory() ? countFiles(path) : 1);
    } catch {
      return n;
    }
  }, 0);

/** Quantile from a Prometheus histogram's cumulative buckets, interpolated as histogram_quantile() does. */
function quantile(buckets: [number, number][], q: number): number {
  const total = buckets[buckets.length - 1]![1];
  const rank = q * total;
  let [prevLe, prevCount] = [0, 0];
  for (const [le, count] of buckets) {
    if (count >= rank) return prevLe + ((le - prevLe) * (rank - prevCount)) / Math.max(count - prevCount, 1);
    [prevLe, prevCount] = [le, count];
  }
  return Number.POSITIVE_INFINITY;
}

async function histogram(metricsPort: number): Promise<[number, number][]> {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  return [...text.matchAll(/^mxf_smtp_time_to_250_seconds_bucket\{le="([^"]+)"\} (\d+)$/gm)]
    .filter((m) => m[1] !== '+Inf')
    .map((m) => [Number(m[1]), Number(m[2])] as [number, number]);
}

async function main() {
  const missing = postfixAvailable();
  if (missing) {
    console.error(`bench: ${missing}`);
    process.exit(2);
  }
  const tmp = mkdtempSync(join(tmpdir(), 'mxf-bench-'));
  const running: ManagedProcess[] = [];
  const stopAll = async () => {
    for (const p of running.reverse()) await p.stop();
    rmSync(tmp, { recursive: true, force: true });
  };
  process.on('SIGINT', () => void stopAll().then(() => process.exit(130)));
  try {
    const [pgPort, minioPort, consolePort, temporalPort, smtpPort, metricsPort, postfixPort] =
      await Promise.all(Array.from({ length: 7 }, freePort));
    const logs = join(tmp, 'logs');
    mkdirSync(logs);
    // Durable settings on purpose (no fsync=off): the comparison is durable accept against durable accept.
    const pg = await startPrivatePostgres({
      dir: join(tmp, 'pg'),
      port: pgPort!,
      logFile: join(logs, 'pg.log'),
    });
    running.push(pg);
    await ensureDatabase(pg.url('postgres'), 'bench');
    const runbooks = join(tmp, 'runbooks');
    mkdirSync(runbooks);
    writeFileSync(
      join(runbooks, 'bench.yaml'),
      [
        'id: bench',
        'name: Benchmark Customer',
        `domains: [${DOMAIN}]`,
        'recipients: any',
        'primary: [{ host: mail.bench.example, port: 25 }]',
        'contacts: [{ name: Ops, role: on call, email: ops@ops.example }]',
        'detection: { probeInterval: 1m, confirmAfter: 5m }',
        'notify: [{ after: 0m, channels: [email] }]',
        'instructions: { default: { after: 72h, action: hold } }',
        'restore: { mode: auto, ratePerSecond: 100 }',
      ].join('\n'),
    );
    const env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      DATABASE_URL: pg.url('bench'),
      MXF_RUNBOOKS: runbooks,
      MXF_SMTP_PORT: String(smtpPort),
      MXF_INGEST_METRICS_PORT: String(metricsPort),
      MXF_S3_ENDPOINT: `http://127.0.0.1:${minioPort}`,
      TEMPORAL_ADDRESS: `127.0.0.1:${temporalPort}`,
      MXF_LOG_LEVEL: 'warn',
      MXF_HOSTNAME: 'mx.failover.bench',
    };
    const config = parseConfig(env);
    const sql = createSql(config, { max: 1 });
    await migrate(sql);
    const [temporal, minio] = await startTogether<[ManagedProcess, ManagedProcess]>(running, [
      startTemporalDevServer({
        port: temporalPort!,
        namespace: 'default',
        logFile: join(logs, 'temporal.log'),
      }),
      startMinio({
        dir: join(tmp, 'minio'),
        port: minioPort!,
        consolePort: consolePort!,
        accessKey: config.s3.accessKey,
        secretKey: config.s3.secretKey,
        logFile: join(logs, 'minio.log'),
      }),
    ]);
    await ensureBucket(createObjectStore(config), config);
    // BENCH_CPU_PROFILE=<folder> writes a V8 CPU profile of the ingest process there, for finding hot spots.
    const profile = process.env.BENCH_CPU_PROFILE
      ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROFILE}`]
      : [];
    const ingest = startProcess(
      'ingest',
      process.execPath,
      [...profile, '--import', 'tsx', join(ROOT, 'src/ingest/main.ts')],
      {
        env,
        logFile: join(logs, 'ingest.log'),
      },
    );
    running.push(ingest);
    await waitFor('ingest', () => tcpOpen('127.0.0.1', smtpPort!), {
      process: ingest,
      logFile: join(logs, 'ingest.log'),
    });
    const postfixDir = join(tmp, 'postfix');
    const postfix = await startPostfixBackupMx({ dir: postfixDir, port: postfixPort!, domain: DOMAIN });
    running.push(postfix);

    const components: [string, ManagedProcess][] = [
      ['ingest', ingest],
      ['minio', minio],
      ['postgres', pg],
      ['temporal', temporal],
    ];
    const held = async () => Number((await sql`select count(*)::int as n from held_message`)[0]!.n);
    // Accepted mail ends up deferred (defer_transports); count it once qmgr has moved everything there.
    const queued = async () => {
      const q = (name: string) => countFiles(join(postfixDir, 'queue', name));
      await waitFor('Postfix queue to settle', async () => q('incoming') + q('active') === 0, {
        timeoutMs: 60_000,
      });
      return q('deferred');
    };
    console.log(
      `bench: ${MESSAGES} messages of ${SIZE} bytes over ${SESSIONS} sessions, ${ROUNDS} rounds per mode`,
    );
    // Warm-up: V8's and Go's JIT/allocators and connection pools settle; the first hundreds are much slower.
    const WARMUP = Number(process.env.BENCH_WARMUP ?? 1000);
    await smtpSource(smtpPort!, WARMUP, true);
    await smtpSource(postfixPort!, WARMUP, true);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const table: string[] = [];
    for (const [mode, reuse] of [
      ['a new connection per message', false],
      ['connections reused (smtp-source -d)', true],
    ] as const) {
      const before = await histogram(metricsPort!);
      const rates = { ours: [] as number[], postfix: [] as number[] };
      for (let round = 1; round <= ROUNDS; round++) {
        const heldBefore = await held();
        const cpuBefore = components.map(([, p]) => cpuSeconds(p.child.pid!));
        const oursSeconds = await smtpSource(smtpPort!, MESSAGES, reuse);
        const cpu = components.map(
          ([name, p], i) => `${name} ${(cpuSeconds(p.child.pid!) - cpuBefore[i]!).toFixed(1)}s`,
        );
        const accepted = (await held()) - heldBefore;
        const queuedBefore = await queued();
        const postfixSeconds = await smtpSource(postfixPort!, MESSAGES, reuse);
        const postfixAccepted = (await queued()) - queuedBefore;
        if (accepted !== MESSAGES) throw new Error(`ours held ${accepted} of ${MESSAGES} messages`);
        if (postfixAccepted < MESSAGES * 0.99)
          throw new Error(`Postfix queued ${postfixAccepted} of ${MESSAGES}`);
        rates.ours.push(MESSAGES / oursSeconds);
        rates.postfix.push(MESSAGES / postfixSeconds);
        console.log(
          `${mode}, round ${round}: ours ${(MESSAGES / oursSeconds).toFixed(0)} msg/s (CPU ${cpu.join(', ')}), Postfix ${(MESSAGES / postfixSeconds).toFixed(0)} msg/s`,
        );
      }
      const after = await histogram(metricsPort!);
      const measured = after.map(([le, n], i) => [le, n - before[i]![1]] as [number, number]);
      const [ours, theirs] = [median(rates.ours), median(rates.postfix)];
      const ms = (q: number) => (quantile(measured, q) * 1000).toFixed(1);
      table.push(
        `| ${mode} | ${ours.toFixed(0)} | ${theirs.toFixed(0)} | ${(ours / theirs).toFixed(2)} | ${ms(0.5)} | ${ms(0.99)} |`,
      );
    }
    console.log('');
    console.log(
      '| 4 KB messages, 20 sessions | ours msg/s | Postfix msg/s | ours/Postfix | our p50 to 250 (ms) | our p99 to 250 (ms) |',
    );
    console.log('|---|---|---|---|---|---|');
    for (const row of table) console.log(row);
    console.log(
      'ours: body in MinIO and rows committed in PostgreSQL before the 250; Postfix 3.7: queue file fsynced.',
    );
    console.log(
      'time to 250: from the start of DATA, from the ingest histogram mxf_smtp_time_to_250_seconds.',
    );
    await sql.end();
  } finally {
    await stopAll();
  }
}

main().catch((err) => {
  console.error(`bench: ${(err as Error).message}`);
  process.exit(1);
});

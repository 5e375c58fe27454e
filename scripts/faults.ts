import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type Config, parseConfig } from '../src/config';
import { startMinio } from '../src/stack/minio';
import { ensureDatabase, startPrivatePostgres } from '../src/stack/postgres';
import { type ManagedProcess, startProcess, tcpOpen, waitFor } from '../src/stack/process';
import { startTemporalDevServer } from '../src/stack/temporal';
import { createSql, type Sql } from '../src/store/db';
import { migrate } from '../src/store/migrate';
import { createObjectStore, ensureBucket, readBody } from '../src/store/objects';
import { startCatcher } from '../test/helpers/catcher';
import { freePort } from '../test/helpers/ports';
import { transaction } from '../test/helpers/smtp-client';

// `npm run test:faults`: under a steady SMTP load, kill -9 in turn the ingest, the worker, MinIO, PostgreSQL and
// the Temporal server, and restart each. Then check the promise a backup MX makes: every message that got a 250
// is in MinIO and PostgreSQL and is delivered as the outage's instruction says (forward, here), once; nothing
// that got a 4xx is held. Durable settings throughout (PostgreSQL fsyncs; Temporal keeps a SQLite file).

const ROOT = join(__dirname, '..');
const SENDERS = Number(process.env.FAULTS_SENDERS ?? 4);
const SETTLE_MS = Number(process.env.FAULTS_SETTLE_MS ?? 4_000);
const DOWN_MS = Number(process.env.FAULTS_DOWN_MS ?? 2_000);
const FORWARD_TO = 'held.copy@gmail.example';

type Restartable = {
  proc: ManagedProcess;
  restart: () => Promise<ManagedProcess>;
  ready: () => Promise<void>;
};

async function main(): Promise<number> {
  const tmp = mkdtempSync(join(tmpdir(), 'mxf-faults-'));
  const logs = join(tmp, 'logs');
  mkdirSync(logs);
  const components = new Map<string, Restartable>();
  const stopAll = async () => {
    for (const name of ['ingest', 'worker', 'temporal', 'minio', 'postgres'])
      await components.get(name)?.proc.stop();
  };
  process.on('SIGINT', () => void stopAll().then(() => process.exit(130)));
  const gmail = await startCatcher(); // Gmail, and the relay that notifications leave through
  try {
    const [pgPort, minioPort, consolePort, temporalPort, smtpPort, metricsPort, primaryPort] =
      await Promise.all(Array.from({ length: 7 }, freePort));
    const runbooks = join(tmp, 'runbooks');
    mkdirSync(runbooks);
    writeFileSync(
      join(runbooks, 'faults-co.yaml'),
      [
        'id: faults-co',
        'name: Fault Injection Co',
        'domains: [faults.example]',
        'recipients: any',
        `primary: [{ host: 127.0.0.1, port: ${primaryPort} }]`, // nothing listens: the primary is down
        'contacts: [{ name: Ops, role: on call, email: ops@faults-ops.example }]',
        'detection: { probeInterval: 1s, confirmAfter: 1s }',
        'notify: [{ after: 0s, channels: [email] }]',
        `instructions: { default: { after: 0s, action: forward, to: ${FORWARD_TO} } }`,
        'restore: { mode: approval, ratePerSecond: 100 }',
      ].join('\n'),
    );

    const pgStart = () =>
      startPrivatePostgres({ dir: join(tmp, 'pg'), port: pgPort!, logFile: join(logs, 'postgres.log') });
    const pg = await pgStart();
    await ensureDatabase(pg.url('postgres'), 'faults');
    const env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      DATABASE_URL: pg.url('faults'),
      MXF_RUNBOOKS: runbooks,
      MXF_SMTP_PORT: String(smtpPort),
      MXF_INGEST_METRICS_PORT: String(metricsPort),
      MXF_S3_ENDPOINT: `http://127.0.0.1:${minioPort}`,
      TEMPORAL_ADDRESS: `127.0.0.1:${temporalPort}`,
      MXF_SMTP_RELAY: `127.0.0.1:${gmail.port}`,
      MXF_MONITOR: 'off',
      MXF_DOORBELL_MS: '200',
      MXF_RECONCILE_MS: '3000', // rings again what a killed ingest or a dead Temporal left unrung
      MXF_LOG_LEVEL: 'warn',
      MXF_HOSTNAME: 'mx.failover.faults',
    };
    const config = parseConfig(env);
    const sql = createSql(config, { max: 2, connect_timeout: 2 });
    await migrate(sql);

    const minioStart = () =>
      startMinio({
        dir: join(tmp, 'minio'),
        port: minioPort!,
        consolePort: consolePort!,
        accessKey: config.s3.accessKey,
        secretKey: config.s3.secretKey,
        logFile: join(logs, 'minio.log'),
      });
    const temporalStart = () =>
      startTemporalDevServer({
        port: temporalPort!,
        namespace: 'default',
        dbFile: join(tmp, 'temporal.sqlite'),
        logFile: join(logs, 'temporal.log'),
      });
    const node = (name: string, file: string) => async () =>
      startProcess(name, process.execPath, ['--import', 'tsx', join(ROOT, 'src', file)], {
        env,
        logFile: join(logs, `${name}.log`),
      });
    const noWait = async () => {};
    components.set('postgres', { proc: pg, restart: pgStart, ready: noWait });
    components.set('minio', { proc: await minioStart(), restart: minioStart, ready: noWait });
    await ensureBucket(createObjectStore(config), config);
    components.set('temporal', { proc: await temporalStart(), restart: temporalStart, ready: noWait });
    components.set('worker', {
      proc: await node('worker', 'worker.ts')(),
      restart: node('worker', 'worker.ts'),
      ready: noWait,
    });
    const ingestReady = () =>
      waitFor('the ingest', () => tcpOpen('127.0.0.1', smtpPort!), { timeoutMs: 30_000 }).then(() => {});
    components.set('ingest', {
      proc: await node('ingest', 'ingest/main.ts')(),
      restart: node('ingest', 'ingest/main.ts'),
      ready: ingestReady,
    });
    await ingestReady();

    const load = startLoad(smtpPort!);
    const injected: string[] = [];
    for (const name of ['ingest', 'worker', 'minio', 'postgres', 'temporal']) {
      await sleep(SETTLE_MS);
      const c = components.get(name)!;
      const before = load.counts();
      c.proc.child.kill('SIGKILL');
      await c.proc.exited;
      await sleep(DOWN_MS);
      c.proc = await c.restart();
      await c.ready();
      injected.push(name);
      const after = load.counts();
      console.log(
        `faults: kill -9 ${name}, restarted after ${DOWN_MS} ms; meanwhile ${after.acked - before.acked} acknowledged, ${after.refused4xx - before.refused4xx} got 4xx, ${after.dropped - before.dropped} lost their connection`,
      );
      for (const [other, o] of components)
        if (other !== name && o.proc.child.exitCode !== null)
          throw new Error(
            `${other} exited on its own (code ${o.proc.child.exitCode}) while ${name} was down`,
          );
    }
    await sleep(SETTLE_MS);
    const sent = await load.stop();
    console.log(
      `faults: load stopped: ${sent.attempted} attempted, ${sent.acked} acknowledged (250), ${sent.refused4xx} refused with 4xx, ${sent.dropped} without a final reply`,
    );
    return await verify(sql, config, gmail.caught, sent, injected);
  } finally {
    await stopAll();
    await gmail.close();
    if (!process.env.FAULTS_KEEP) rmSync(tmp, { recursive: true, force: true });
    else console.log(`faults: logs and data kept in ${tmp}`);
  }
}

interface LoadResult {
  attempted: number;
  acked: number;
  refused4xx: number;
  dropped: number;
  ackedIds: Map<string, string>; // Message-ID -> queue id
  refusedIds: Set<string>;
}

/** SENDERS clients sending one message per transaction, back to back, each with its own Message-ID. */
function startLoad(port: number) {
  let running = true;
  let n = 0;
  const r: LoadResult = {
    attempted: 0,
    acked: 0,
    refused4xx: 0,
    dropped: 0,
    ackedIds: new Map(),
    refusedIds: new Set(),
  };
  const sender = async (s: number) => {
    while (running) {
      const id = `fault-${s}-${n++}@load.faults`;
      r.attempted++;
      try {
        // A sender gives up on a silent server, as real ones do (RFC 5321 says minutes; seconds suffice here).
        const t = await Promise.race([
          transaction(port, {
            from: 'load@sender.example',
            to: [`user${n % 50}@faults.example`],
            data: `Message-ID: <${id}>\r\nSubject: ${id}\r\n\r\n${'x'.repeat(2000)}`,
          }),
          sleep(60_000).then(() => {
            throw new Error('no reply within 60 s');
          }),
        ]);
        const end = t.end ?? t.rcpts.find((x) => !x.startsWith('250')) ?? t.mail;
        if (end.startsWith('250')) {
          r.acked++;
          r.ackedIds.set(id, /queued as (\w+)/.exec(end)?.[1] ?? '');
        } else if (end.startsWith('4')) {
          r.refused4xx++;
          r.refusedIds.add(id);
        } else throw new Error(`unexpected reply: ${end}`);
      } catch (err) {
        if (/unexpected reply/.test((err as Error).message)) throw err;
        if (process.env.FAULTS_DEBUG) console.log(`faults: ${id}: ${(err as Error).message}`);
        r.dropped++;
        await sleep(200);
      }
    }
  };
  const done = Promise.all(Array.from({ length: SENDERS }, (_, s) => sender(s)));
  return {
    counts: () => ({ ...r }),
    stop: async () => {
      running = false;
      await done;
      return r;
    },
  };
}

async function verify(
  sql: Sql,
  config: Config,
  caught: { to: string[]; raw: Buffer }[],
  sent: LoadResult,
  injected: string[],
): Promise<number> {
  const idOf = (raw: Buffer) => /^Message-ID: <([^>]+)>/im.exec(raw.toString('latin1'))?.[1];
  const copies = () => {
    const byId = new Map<string, number>();
    for (const m of caught)
      if (m.to.includes(FORWARD_TO)) byId.set(idOf(m.raw)!, (byId.get(idOf(m.raw)!) ?? 0) + 1);
    return byId;
  };
  const deadline = Date.now() + Number(process.env.FAULTS_DELIVERY_TIMEOUT_MS ?? 300_000);
  for (;;) {
    const forwarded = copies();
    const missing = [...sent.ackedIds.keys()].filter((id) => !forwarded.has(id)).length;
    if (missing === 0) break;
    if (Date.now() > deadline) break;
    console.log(`faults: waiting for delivery: ${missing} acknowledged message(s) not forwarded yet`);
    await sleep(5_000);
  }
  const objects = createObjectStore(config);
  const rows = await sql<
    {
      message_id: string;
      queue_id: string;
      object_key: string;
      body_offset: string;
      size_bytes: string;
      sha256: Buffer;
      delivered: boolean;
    }[]
  >`
    select m.message_id, m.queue_id, m.object_key, m.body_offset, m.size_bytes, m.sha256,
           exists (select 1 from delivery_ledger d where d.message_id = m.id and d.outcome = 'delivered') as delivered
    from held_message m`;
  const byMessageId = new Map(rows.map((r) => [r.message_id?.replace(/^<|>$/g, ''), r]));
  const problems: string[] = [];
  let bytesChecked = 0;
  for (const [id, queueId] of sent.ackedIds) {
    const row = byMessageId.get(id);
    if (!row) {
      problems.push(`LOST: ${id} got 250 (queued as ${queueId}) but has no held_message row`);
      continue;
    }
    const body = await readBody(objects, config.s3.bucket, {
      objectKey: row.object_key,
      offset: Number(row.body_offset),
      length: Number(row.size_bytes),
    });
    if (!createHash('sha256').update(body).digest().equals(row.sha256))
      problems.push(`CORRUPT: ${id}: the bytes in MinIO do not match the row's sha256`);
    else bytesChecked++;
    if (!row.delivered) problems.push(`UNDELIVERED: ${id} has no delivered ledger row`);
  }
  for (const id of sent.refusedIds)
    if (byMessageId.has(id)) problems.push(`HALF-STORED: ${id} got a 4xx but is held`);
  const counts = copies();
  const notForwarded = [...sent.ackedIds.keys()].filter((id) => !counts.has(id));
  for (const id of notForwarded) problems.push(`NOT FORWARDED: ${id}`);
  const duplicates = [...counts.entries()].filter(([, n]) => n > 1);
  // The one window every MTA has: the receiving server's 250 arrives and the worker dies before the ledger
  // write. At most one message per worker kill may go twice; more is a bug.
  const allowedDuplicates = injected.filter((n) => n === 'worker').length;
  if (duplicates.length > allowedDuplicates)
    problems.push(`DUPLICATES: ${duplicates.map(([id, n]) => `${id} x${n}`).join(', ')}`);
  const heldButNotAcked = rows.filter(
    (r) => !sent.ackedIds.has(r.message_id?.replace(/^<|>$/g, '') ?? ''),
  ).length;

  console.log('');
  console.log(
    '| faults injected (kill -9, then restart) | messages attempted | acknowledged (250) | refused (4xx) | no final reply | held | verified in MinIO and PostgreSQL | forwarded | duplicates |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|');
  console.log(
    `| ${injected.join(', ')} | ${sent.attempted} | ${sent.acked} | ${sent.refused4xx} | ${sent.dropped} | ${rows.length} | ${bytesChecked} | ${counts.size} | ${duplicates.length} |`,
  );
  console.log(
    `Held without a 250 at the client: ${heldButNotAcked} (committed, then the connection died before the reply: the sender retries, and that copy is a duplicate the SMTP design accepts).`,
  );
  if (problems.length) {
    console.error(`\nfaults: ${problems.length} problem(s):\n${problems.slice(0, 50).join('\n')}`);
    return 1;
  }
  console.log(
    'faults: every acknowledged message is stored intact and was forwarded; nothing refused is held.',
  );
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`faults: ${(err as Error).stack ?? err}`);
    process.exit(1);
  },
);

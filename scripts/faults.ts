import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../src/config';
import { type LaunchedStack, launchStack, type StackOptions } from '../src/stack';
import { type Component, tcpOpen, waitFor } from '../src/stack/process';
import { createSql, type Sql } from '../src/store/db';
import { createObjectStore, readBody } from '../src/store/objects';
import { startCatcher } from '../test/helpers/catcher';
import { freePort } from '../test/helpers/ports';
import { transaction } from '../test/helpers/smtp-client';

// `npm run test:faults`: under a steady SMTP load, kill -9 in turn the ingest, the worker, MinIO, PostgreSQL and
// the Temporal server, and restart each. Then check the promise a backup MX makes: every message that got a 250
// is in MinIO and PostgreSQL and is delivered as the outage's instruction says (forward, here), once; nothing
// that got a 4xx is held. Durable settings throughout (PostgreSQL fsyncs; Temporal keeps a SQLite file).

const SENDERS = Number(process.env.FAULTS_SENDERS ?? 4);
const SETTLE_MS = Number(process.env.FAULTS_SETTLE_MS ?? 4_000);
const DOWN_MS = Number(process.env.FAULTS_DOWN_MS ?? 2_000);
const FORWARD_TO = 'held.copy@gmail.example';

/** One customer whose primary is down (nothing listens on its port) and whose mail is forwarded to Gmail. */
function writeRunbook(dir: string, primaryPort: number): string {
  mkdirSync(dir);
  writeFileSync(
    join(dir, 'faults-co.yaml'),
    [
      'id: faults-co',
      'name: Fault Injection Co',
      'domains: [faults.example]',
      'recipients: any',
      `primary: [{ host: 127.0.0.1, port: ${primaryPort} }]`,
      'contacts: [{ name: Ops, role: on call, email: ops@faults-ops.example }]',
      'detection: { probeInterval: 1s, confirmAfter: 1s }',
      'notify: [{ after: 0s, channels: [email] }]',
      `instructions: { default: { after: 0s, action: forward, to: ${FORWARD_TO} } }`,
      'restore: { mode: approval, ratePerSecond: 100 }',
    ].join('\n'),
  );
  return dir;
}

async function faultsStackOptions(
  tmp: string,
  relayPort: number,
): Promise<StackOptions & { smtpPort: number }> {
  const [pgPort, minioPort, consolePort, temporalPort, smtpPort, metricsPort, primaryPort] =
    await Promise.all(Array.from({ length: 7 }, freePort));
  return {
    dir: tmp,
    env: {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      MXF_RUNBOOKS: writeRunbook(join(tmp, 'runbooks'), primaryPort!),
      MXF_SMTP_PORT: String(smtpPort),
      MXF_INGEST_METRICS_PORT: String(metricsPort),
      MXF_SMTP_RELAY: `127.0.0.1:${relayPort}`,
      MXF_MONITOR: 'off',
      MXF_DOORBELL_MS: '200',
      MXF_RECONCILE_MS: '3000', // rings again what a killed ingest or a dead Temporal left unrung
      MXF_LOG_LEVEL: 'warn',
      MXF_HOSTNAME: 'mx.failover.faults',
    },
    postgres: { port: pgPort!, database: 'faults' },
    temporal: { port: temporalPort!, sqlite: 'faults.sqlite' },
    minio: { port: minioPort!, consolePort: consolePort! },
    smtpPort: smtpPort!,
  };
}

/** kill -9 each component in turn under load, restart it, and check that the others kept running. */
async function injectFaults(
  components: Map<string, Component>,
  ready: Partial<Record<string, () => Promise<void>>>,
  load: ReturnType<typeof startLoad>,
): Promise<string[]> {
  const injected: string[] = [];
  for (const name of ['ingest', 'worker', 'minio', 'postgres', 'temporal']) {
    await sleep(SETTLE_MS);
    const c = components.get(name)!;
    const before = load.counts();
    c.child.kill('SIGKILL');
    await c.exited;
    await sleep(DOWN_MS);
    await c.restart();
    await ready[name]?.();
    injected.push(name);
    const after = load.counts();
    console.log(
      `faults: kill -9 ${name}, restarted after ${DOWN_MS} ms; meanwhile ${after.acked - before.acked} acknowledged, ${after.refused4xx - before.refused4xx} got 4xx, ${after.dropped - before.dropped} lost their connection`,
    );
    for (const [other, o] of components)
      if (other !== name && o.child.exitCode !== null)
        throw new Error(`${other} exited on its own (code ${o.child.exitCode}) while ${name} was down`);
  }
  return injected;
}

async function main(): Promise<number> {
  const tmp = mkdtempSync(join(tmpdir(), 'mxf-faults-'));
  let launched: LaunchedStack | undefined;
  process.on('SIGINT', () => void launched?.stop().then(() => process.exit(130)));
  const gmail = await startCatcher(); // Gmail, and the relay that notifications leave through
  try {
    const { smtpPort, ...options } = await faultsStackOptions(tmp, gmail.port);
    launched = launchStack(options);
    const stack = await launched.started;
    const sql = createSql(stack.config, { max: 2, connect_timeout: 2 });
    const worker = stack.startService('worker', 'worker.ts');
    const ingest = stack.startService('ingest', 'ingest/main.ts');
    const ingestReady = () =>
      waitFor('the ingest', () => tcpOpen('127.0.0.1', smtpPort), { timeoutMs: 30_000 }).then(() => {});
    await ingestReady();
    const components = new Map<string, Component>([
      ['postgres', stack.postgres!],
      ['minio', stack.minio],
      ['temporal', stack.temporal],
      ['worker', worker],
      ['ingest', ingest],
    ]);

    const load = startLoad(smtpPort);
    const injected = await injectFaults(components, { ingest: ingestReady }, load);
    await sleep(SETTLE_MS);
    const sent = await load.stop();
    console.log(
      `faults: load stopped: ${sent.attempted} attempted, ${sent.acked} acknowledged (250), ${sent.refused4xx} refused with 4xx, ${sent.dropped} without a final reply`,
    );
    return await verify(sql, stack.config, gmail.caught, sent, injected);
  } finally {
    await launched?.stop();
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

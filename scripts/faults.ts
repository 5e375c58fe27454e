import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type LaunchedStack, launchStack, mailboxEnv, type StackOptions } from '../src/stack';
import { type Component, tcpOpen, waitFor } from '../src/stack/process';
import { createSql, type Sql } from '../src/store/db';
import { freePort } from '../test/helpers/ports';
import { readCopies, readStored } from './faults-evidence';
import { type FaultKind, injectFaults } from './faults-inject';
import { type SentMessage, startLoad } from './faults-load';
import { type Mailbox, startMailbox } from './faults-mailbox';
import { judge, printTable, report, type VerdictInput } from './faults-verdict';

// `npm run test:faults`: under a steady SMTP load, kill -9 in turn the ingest, the worker, MinIO, PostgreSQL and
// the Temporal server, and restart each. Then judge the promise a backup MX makes from the senders' side: every
// message that got a 250 is held with the sender's bytes and forwarded (the outage's instruction here) with them,
// once; what got a 4xx or no reply is held intact and forwarded once, or not at all; a duplicate needs a cause the
// suite can show. Durable settings throughout (PostgreSQL fsyncs; Temporal keeps a SQLite file).
// faults-load.ts sends, faults-mailbox.ts receives, faults-inject.ts kills, faults-evidence.ts reads back and
// faults-verdict.ts judges.

const SENDERS = Number(process.env.FAULTS_SENDERS ?? 4);
const SETTLE_MS = Number(process.env.FAULTS_SETTLE_MS ?? 4_000);
const DOWN_MS = Number(process.env.FAULTS_DOWN_MS ?? 2_000);
/** How long the service may take to answer 250 and forward again after a restart before the run fails. */
const RECOVERY_TIMEOUT_MS = Number(process.env.FAULTS_RECOVERY_TIMEOUT_MS ?? 90_000);
const DELIVERY_TIMEOUT_MS = Number(process.env.FAULTS_DELIVERY_TIMEOUT_MS ?? 300_000);
const LINGER_MS = Number(process.env.FAULTS_LINGER_MS ?? 3_000);
/** Under this many 250s a run proves little: the floor sits well under what 4 senders get in a run (thousands). */
const MIN_ACKED = Number(process.env.FAULTS_MIN_ACKED ?? 100);
const FORWARD_TO = 'held.copy@gmail.example';
const HOSTNAME = 'mx.failover.faults';

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
      ...(await mailboxEnv()),
      MXF_RUNBOOKS: writeRunbook(join(tmp, 'runbooks'), primaryPort!),
      MXF_SMTP_PORT: String(smtpPort),
      MXF_INGEST_METRICS_PORT: String(metricsPort),
      MXF_SMTP_RELAY: `127.0.0.1:${relayPort}`,
      // The stand-in mailbox takes any pace; Gmail's default (60/min) would make this run take hours.
      MXF_FORWARD_RATE: '100000/s',
      MXF_DOMAIN_RATE: '100000/s',
      MXF_MONITOR: 'off',
      MXF_DOORBELL_MS: '200',
      MXF_RECONCILE_MS: '3000', // rings again what a killed ingest or a dead Temporal left unrung
      MXF_LOG_LEVEL: 'warn',
      MXF_HOSTNAME: HOSTNAME,
    },
    postgres: { port: pgPort!, database: 'faults' },
    temporal: { port: temporalPort!, sqlite: 'faults.sqlite' },
    minio: { port: minioPort!, consolePort: consolePort! },
    smtpPort: smtpPort!,
  };
}

/**
 * Waits until every acknowledged message and every held row has reached the mailbox and the ledger records
 * every held row delivered; then a little longer, so that a late resend is seen as the duplicate it is.
 */
async function awaitDelivery(sql: Sql, mailbox: Mailbox, sent: SentMessage[]): Promise<void> {
  const deadline = Date.now() + DELIVERY_TIMEOUT_MS;
  for (;;) {
    const copied = new Set(readCopies(mailbox.copies, FORWARD_TO, HOSTNAME).map((c) => c.messageId));
    const rows = await sql<{ message_id: string | null; delivered: boolean }[]>`
      select m.message_id,
             exists (select 1 from delivery_ledger d where d.message_id = m.id and d.outcome = 'delivered') as delivered
      from held_message m`;
    const notCopied = new Set([
      ...sent.filter((m) => m.outcome === 'acked').map((m) => m.messageId),
      ...rows.map((r) => r.message_id?.replace(/^<|>$/g, '') ?? ''),
    ]);
    for (const id of copied) if (id) notCopied.delete(id);
    const unrecorded = rows.filter((r) => !r.delivered).length;
    if (notCopied.size === 0 && unrecorded === 0) break;
    if (Date.now() > deadline) {
      console.log(
        `faults: gave up waiting after ${DELIVERY_TIMEOUT_MS / 1000} s; the verdict judges what is there`,
      );
      return;
    }
    console.log(
      `faults: waiting for delivery: ${notCopied.size} message(s) not in the mailbox yet, ${unrecorded} held row(s) not recorded delivered`,
    );
    await sleep(5_000);
  }
  await sleep(LINGER_MS);
}

async function main(): Promise<number> {
  const tmp = mkdtempSync(join(tmpdir(), 'mxf-faults-'));
  let launched: LaunchedStack | undefined;
  process.on('SIGINT', () => void launched?.stop().then(() => process.exit(130)));
  const mailbox = await startMailbox(); // Gmail, and the relay that notifications leave through
  try {
    const { smtpPort, ...options } = await faultsStackOptions(tmp, mailbox.port);
    launched = launchStack(options);
    const stack = await launched.started;
    const sql = createSql(stack.config, { max: 2, connect_timeout: 2 });
    const worker = stack.startService('worker', 'worker.ts');
    const ingest = stack.startService('ingest', 'ingest/main.ts');
    const ingestReady = () =>
      waitFor('the ingest', () => tcpOpen('127.0.0.1', smtpPort), { timeoutMs: 30_000 }).then(() => {});
    await ingestReady();
    const components = new Map<FaultKind, Component>([
      ['postgres', stack.postgres!],
      ['minio', stack.minio],
      ['temporal', stack.temporal],
      ['worker', worker],
      ['ingest', ingest],
    ]);

    const load = startLoad(smtpPort, SENDERS);
    const faults = await injectFaults(components, { ingest: ingestReady }, load, mailbox, {
      settleMs: SETTLE_MS,
      downMs: DOWN_MS,
      recoveryTimeoutMs: RECOVERY_TIMEOUT_MS,
      forwardTo: FORWARD_TO,
    });
    await sleep(SETTLE_MS);
    const sent = await load.stop();
    const count = (o: SentMessage['outcome']) => sent.filter((m) => m.outcome === o).length;
    console.log(
      `faults: load stopped: ${sent.length} attempted, ${count('acked')} acknowledged (250), ${count('refused')} refused with 4xx, ${count('no-reply')} without a final reply`,
    );
    await awaitDelivery(sql, mailbox, sent);
    const input: VerdictInput = {
      sent,
      stored: await readStored(sql, stack.config, HOSTNAME),
      copies: readCopies(mailbox.copies, FORWARD_TO, HOSTNAME),
      sessions: mailbox.sessions,
      faults,
      minAcked: MIN_ACKED,
    };
    const verdict = judge(input);
    printTable(input, verdict);
    return report(verdict);
  } finally {
    await launched?.stop();
    await mailbox.close();
    if (!process.env.FAULTS_KEEP) rmSync(tmp, { recursive: true, force: true });
    else console.log(`faults: logs and data kept in ${tmp}`);
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`faults: ${(err as Error).stack ?? err}`);
    process.exit(1);
  },
);

import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../src/config';
import { type LaunchedStack, launchStack, mailboxEnv, type StackOptions } from '../src/stack';
import { createSql, type Sql } from '../src/store/db';
import { freePort } from '../test/helpers/ports';
import { readCopies, readStored } from './faults-evidence';
import type { Fault } from './faults-inject';
import type { Load, SentMessage } from './faults-load';
import { type Mailbox, startMailbox } from './faults-mailbox';
import { judge, printTable, report, type VerdictInput } from './faults-verdict';

// What the two fault suites share: `npm run test:faults` (one node, each component killed in turn) and
// `npm run test:cluster` (two ingest nodes and two workers on the real Temporal server). The same customer, the
// same load, the same stand-in Gmail, and the same verdict at the end.

export const FAULTS = {
  senders: Number(process.env.FAULTS_SENDERS ?? 4),
  settleMs: Number(process.env.FAULTS_SETTLE_MS ?? 4_000),
  downMs: Number(process.env.FAULTS_DOWN_MS ?? 2_000),
  /** How long the service may take to answer 250 and forward again after a fault before the run fails. */
  recoveryTimeoutMs: Number(process.env.FAULTS_RECOVERY_TIMEOUT_MS ?? 90_000),
  deliveryTimeoutMs: Number(process.env.FAULTS_DELIVERY_TIMEOUT_MS ?? 300_000),
  lingerMs: Number(process.env.FAULTS_LINGER_MS ?? 3_000),
  /** Under this many 250s a run proves little: the floor sits well under what 4 senders get in a run (thousands). */
  minAcked: Number(process.env.FAULTS_MIN_ACKED ?? 100),
  forwardTo: 'held.copy@gmail.example',
  hostname: 'mx.failover.faults',
};

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
      `instructions: { default: { after: 0s, action: forward, to: ${FAULTS.forwardTo} } }`,
      'restore: { mode: approval, ratePerSecond: 100 }',
    ].join('\n'),
  );
  return dir;
}

/** The stack both suites start: durable settings (PostgreSQL fsyncs), the customer above, Gmail at relayPort. */
export async function faultsStackOptions(
  tmp: string,
  relayPort: number,
  more: {
    temporal?: Partial<StackOptions['temporal']>;
    minio?: { drives?: number };
    postgres?: { maxConnections?: number };
  } = {},
): Promise<StackOptions & { smtpPort: number }> {
  const [pgPort, minioPort, consolePort, temporalPort, smtpPort, metricsPort, primaryPort] =
    await Promise.all(Array.from({ length: 7 }, freePort));
  const options: StackOptions = {
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
      MXF_HOSTNAME: FAULTS.hostname,
    },
    postgres: { port: pgPort!, database: 'faults', ...more.postgres },
    temporal: { port: temporalPort!, ...more.temporal },
    minio: { port: minioPort!, consolePort: consolePort!, ...more.minio },
  };
  return { ...options, smtpPort: smtpPort! };
}

/**
 * Waits until every acknowledged message and every held row has reached the mailbox and the ledger records
 * every held row delivered; then a little longer, so that a late resend is seen as the duplicate it is.
 */
async function awaitDelivery(sql: Sql, mailbox: Mailbox, sent: SentMessage[]): Promise<void> {
  const deadline = Date.now() + FAULTS.deliveryTimeoutMs;
  for (;;) {
    const copied = new Set(
      readCopies(mailbox.copies, FAULTS.forwardTo, FAULTS.hostname).map((c) => c.messageId),
    );
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
        `faults: gave up waiting after ${FAULTS.deliveryTimeoutMs / 1000} s; the verdict judges what is there`,
      );
      return;
    }
    console.log(
      `faults: waiting for delivery: ${notCopied.size} message(s) not in the mailbox yet, ${unrecorded} held row(s) not recorded delivered`,
    );
    await sleep(5_000);
  }
  await sleep(FAULTS.lingerMs);
}

/** Stops the load, waits for delivery, then judges every message sent and prints the table; the exit code. */
export async function judgeRun(
  config: Config,
  mailbox: Mailbox,
  load: Load,
  faults: Fault[],
): Promise<number> {
  await sleep(FAULTS.settleMs);
  const sent = await load.stop();
  const count = (o: SentMessage['outcome']) => sent.filter((m) => m.outcome === o).length;
  console.log(
    `faults: load stopped: ${sent.length} attempted, ${count('acked')} acknowledged (250), ${count('refused')} refused with 4xx, ${count('no-reply')} without a final reply`,
  );
  const sql = createSql(config, { max: 2, connect_timeout: 2 });
  try {
    await awaitDelivery(sql, mailbox, sent);
    const input: VerdictInput = {
      sent,
      stored: await readStored(sql, config, FAULTS.hostname),
      copies: readCopies(mailbox.copies, FAULTS.forwardTo, FAULTS.hostname),
      sessions: mailbox.sessions,
      faults,
      minAcked: FAULTS.minAcked,
    };
    const verdict = judge(input);
    printTable(input, verdict);
    return report(verdict);
  } finally {
    await sql.end();
  }
}

function printLogTails(logs: string): void {
  const services = existsSync(logs) ? readdirSync(logs).filter((f) => /^(ingest|worker)/.test(f)) : [];
  for (const file of services) {
    const lines = readFileSync(join(logs, file), 'utf8').trimEnd().split('\n');
    console.log(`faults: the last lines of logs/${file}:\n${lines.slice(-15).join('\n')}`);
  }
}

/** A temporary folder, the stand-in Gmail and a stack, for `run`; everything stopped and removed after it. */
export async function withFaultsStack(
  prefix: string,
  options: (tmp: string, relayPort: number) => Promise<StackOptions>,
  run: (stack: Awaited<LaunchedStack['started']>, mailbox: Mailbox) => Promise<number>,
): Promise<number> {
  const tmp = mkdtempSync(join(tmpdir(), prefix));
  let launched: LaunchedStack | undefined;
  process.on('SIGINT', () => void launched?.stop().then(() => process.exit(130)));
  const mailbox = await startMailbox(); // Gmail, and the relay that notifications leave through
  let passed = false;
  try {
    launched = launchStack(await options(tmp, mailbox.port));
    const code = await run(await launched.started, mailbox);
    passed = code === 0;
    return code;
  } finally {
    await launched?.stop();
    await mailbox.close();
    // A failed run keeps its logs, and shows the service logs' ends: a process that died on its own left its
    // last words there (CI keeps only what we print).
    if (!passed) printLogTails(join(tmp, 'logs'));
    if (passed && !process.env.FAULTS_KEEP) rmSync(tmp, { recursive: true, force: true });
    else console.log(`faults: logs and data kept in ${tmp}`);
  }
}

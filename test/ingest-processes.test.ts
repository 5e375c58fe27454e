import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createSql } from '../src/store/db';
import { eventually } from './helpers/eventually';
import { freePort } from './helpers/ports';
import { alive, commandOf, descendants } from './helpers/procs';
import { RawSmtp, transaction } from './helpers/smtp-client';
import { testConfig, testTmp } from './helpers/stack';

// One ingest node on two processes (MXF_INGEST_PROCESSES=2), started as `npm run ingest` starts it: both take
// connections on the one port, the node's metrics add both up, a process that dies is forked again, SIGTERM lets
// a transaction in DATA finish, and a kill -9 of the node's pid leaves none of its processes behind.

const config = testConfig();
const sql = createSql(config);
after(() => sql.end());

const tag = randomUUID().slice(0, 8);
const domain = `procs-${tag}.example`;
const to = `someone@${domain}`;

/** A customer of this test alone, taking mail for any address at its domain. */
function runbooksFolder(): string {
  const dir = join(testTmp(), `runbooks-procs-${tag}`);
  mkdirSync(dir, { recursive: true });
  const runbook = [
    `id: procs-${tag}`,
    'name: Two processes',
    `domains: [${domain}]`,
    'recipients: any',
    'primary: [{ host: 127.0.0.1, port: 9 }]',
    'contacts: [{ name: Ops, role: on call, email: ops@ops.example }]',
    'detection: { probeInterval: 1m, confirmAfter: 10m }',
    'notify: [{ after: 0m, channels: [email] }]',
    'instructions: { default: { after: 72h, action: hold } }',
    'restore: { mode: approval, ratePerSecond: 100 }',
  ];
  writeFileSync(join(dir, `procs-${tag}.yaml`), `${runbook.join('\n')}\n`);
  return dir;
}

interface LogLine {
  pid: number;
  worker?: number;
  msg: string;
  queueId?: string;
  workerPid?: number;
}

interface Node {
  child: ChildProcess;
  pid: number;
  smtpPort: number;
  metricsPort: number;
  lines: LogLine[];
  exited: Promise<number | null>;
}

/** `node src/ingest/main.ts` with two processes; resolves once the primary says the node listens. */
async function startNode(): Promise<Node> {
  const [smtpPort, metricsPort, nowhere] = await Promise.all([freePort(), freePort(), freePort()]);
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, '../src/ingest/main.ts')], {
    env: {
      ...process.env,
      MXF_RUNBOOKS: runbooksFolder(),
      MXF_SMTP_PORT: String(smtpPort),
      MXF_INGEST_METRICS_PORT: String(metricsPort),
      MXF_INGEST_PROCESSES: '2',
      // "held" is an info line: it names the queue id and, through pid and worker, the process that took it.
      MXF_LOG_LEVEL: 'info',
      MXF_LOG_FORMAT: 'json',
      // Ingest depends only on storage: no doorbell reaches the tests' Temporal and no reconciler rings other
      // tests' customers from here.
      TEMPORAL_ADDRESS: `127.0.0.1:${nowhere}`,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: LogLine[] = [];
  let rest = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    const text = rest + chunk.toString();
    const complete = text.split('\n');
    rest = complete.pop()!;
    for (const line of complete) if (line.startsWith('{')) lines.push(JSON.parse(line));
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const node = { child, pid: child.pid!, smtpPort, metricsPort, lines, exited };
  await eventually(
    'the primary says the node listens',
    async () => lines.some((l) => l.pid === node.pid && l.msg === 'smtp ingest listening'),
    Boolean,
    30_000,
  );
  return node;
}

const send = (port: number, subject: string) =>
  transaction(port, {
    from: 'sender@elsewhere.test',
    to: [to],
    data: `Subject: ${subject}\r\n\r\nHello.\r\n`,
  });

const queueIdOf = (reply: string | undefined) => /queued as ([0-9A-Z]+)/.exec(reply ?? '')?.[1];

async function metric(node: Node, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${node.metricsPort}/metrics`)).text();
  const match = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  assert.ok(match, `${name} in the node's metrics`);
  return Number(match[1]);
}

/** The node's ingest processes: its descendants running our entry (tsx may add an esbuild of its own). */
const ingestProcesses = (node: Node) =>
  descendants(node.pid).filter((pid) => commandOf(pid).includes('src/ingest/main.ts'));

const refused = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });

test('two processes take connections on one port, the node counts both, and a dead one is forked again', async (t) => {
  const node = await startNode();
  t.after(() => void node.child.kill('SIGKILL'));
  const workers = ingestProcesses(node);
  assert.equal(workers.length, 2, `the primary forked two processes: ${workers.map(commandOf).join('; ')}`);

  const queueIds: string[] = [];
  for (let i = 0; i < 20; i++) {
    const reply = await send(node.smtpPort, `message ${i}`);
    assert.match(reply.end ?? '', /^250 /, `message ${i}: ${JSON.stringify(reply)}`);
    queueIds.push(queueIdOf(reply.end)!);
  }
  // Every 250 is matched by its "held" line, written by the process that stored and committed it.
  const held = await eventually(
    'a held line for each 250',
    async () => node.lines.filter((l) => l.msg === 'held' && queueIds.includes(l.queueId!)),
    (lines) => lines.length === queueIds.length,
  );
  const takers = new Set(held.map((l) => l.pid));
  assert.deepEqual([...takers].sort(), [...workers].sort(), 'both processes, and only they, took mail');
  assert.deepEqual(new Set(held.map((l) => l.worker)), new Set([1, 2]), 'log lines name the process');
  const rows = await sql`select queue_id from held_message where queue_id = any(${queueIds})`;
  assert.equal(rows.length, queueIds.length, 'every 250 is a committed row');

  // One Prometheus target: the primary adds up what each process counted.
  assert.equal(await metric(node, 'mxf_smtp_accepted_total'), queueIds.length);
  assert.equal(await metric(node, 'mxf_ingest_processes'), 2);

  const [victim] = workers as [number];
  process.kill(victim, 'SIGKILL');
  const replaced = await eventually(
    'another process in place of the killed one',
    async () => ingestProcesses(node).filter((p) => !workers.includes(p) && alive(p)),
    (pids) => pids.length === 1,
    30_000,
  );
  assert.ok(
    node.lines.some((l) => l.msg.startsWith('an ingest process died') && l.workerPid === victim),
    'the primary logs the death',
  );
  await eventually(
    'the node takes mail on two processes again',
    () => metric(node, 'mxf_ingest_processes'),
    (n) => n === 2,
    30_000,
  );
  for (let i = 0; i < 4; i++) assert.match((await send(node.smtpPort, `after ${i}`)).end ?? '', /^250 /);
  assert.equal(await metric(node, 'mxf_ingest_process_restarts_total'), 1);
  assert.ok(alive(replaced[0]!));
});

test('SIGTERM to the node lets a message in DATA finish with its 250, then every process exits', async (t) => {
  const node = await startNode();
  t.after(() => void node.child.kill('SIGKILL'));
  const workers = ingestProcesses(node);
  const { client } = await RawSmtp.open(node.smtpPort);
  assert.match(await client.send('EHLO sender.test\r\n'), /^250/);
  assert.match(await client.send('MAIL FROM:<late@elsewhere.test>\r\n'), /^250/);
  assert.match(await client.send(`RCPT TO:<${to}>\r\n`), /^250/);
  assert.match(await client.send('DATA\r\n'), /^354/);
  client.write('Subject: in flight\r\n\r\nThe first half, ');

  node.child.kill('SIGTERM');
  // The node stops taking connections, but the session in DATA goes on: its process and the primary live.
  await eventually('new connections refused', () => refused(node.smtpPort), Boolean);
  await sleep(500);
  assert.ok(alive(node.pid) && workers.some(alive), 'the node waits for the session');
  const end = await client.send('and the second half.\r\n.\r\n');
  assert.match(end, /^250 /, 'the message in flight is accepted');
  const rows = await sql`select 1 from held_message where queue_id = ${queueIdOf(end)!}`;
  assert.equal(rows.length, 1, 'and committed');
  client.close();

  assert.equal(await node.exited, 0, 'the primary exits cleanly once its processes have');
  await eventually(
    'no process of the node left',
    async () => workers.filter(alive),
    (left) => left.length === 0,
  );
});

test('kill -9 of the node leaves none of its processes behind', async (t) => {
  const node = await startNode();
  t.after(() => void node.child.kill('SIGKILL'));
  const workers = ingestProcesses(node);
  assert.equal(workers.length, 2);
  assert.ok(workers.every(alive));
  node.child.kill('SIGKILL');
  await node.exited;
  await eventually(
    'every process of the node gone after its primary',
    async () => workers.filter(alive),
    (left) => left.length === 0,
    5_000,
  );
  assert.ok(await refused(node.smtpPort), 'nothing listens on the port');
});

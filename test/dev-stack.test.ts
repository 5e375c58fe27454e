import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import nodemailer from 'nodemailer';
import postgres from 'postgres';
import { outageWorkflowId } from '../src/domain/outage';
import { freePortPair, mailboxEnv } from '../src/stack';
import { statusQuery } from '../src/workflows/messages';
import { eventually } from './helpers/eventually';
import { freePort } from './helpers/ports';
import { alive, commandOf, descendants } from './helpers/procs';
import { testTmp } from './helpers/stack';

// The acceptance test of `npm run dev`: the whole stack on its own ports and data folder, up, healthy, stopped
// with Ctrl-C (SIGINT) leaving no process behind, and started again on the same data.

interface DevStack {
  proc: ChildProcess;
  output: () => string;
}

async function startDev(env: NodeJS.ProcessEnv): Promise<DevStack> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(__dirname, '../src/dev.ts')], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout!.on('data', (d) => (output += d));
  proc.stderr!.on('data', (d) => (output += d));
  const deadline = Date.now() + 180_000;
  while (!output.includes('Ctrl-C stops everything.')) {
    if (proc.exitCode !== null) assert.fail(`npm run dev exited with ${proc.exitCode}:\n${output}`);
    if (Date.now() > deadline) assert.fail(`npm run dev did not come up in time:\n${output}`);
    await sleep(200);
  }
  return { proc, output: () => output };
}

async function stopDev(stack: DevStack): Promise<void> {
  const family = descendants(stack.proc.pid!);
  assert.ok(
    family.length >= 6,
    `expected temporal, minio, postgres, worker, ingest and api; got ${family.map(commandOf)}`,
  );
  const exited = new Promise<number | null>((resolve) => stack.proc.once('exit', (code) => resolve(code)));
  stack.proc.kill('SIGINT');
  const code = await Promise.race([exited, sleep(90_000).then(() => 'timeout' as const)]);
  assert.equal(code, 0, `npm run dev did not stop cleanly:\n${stack.output()}`);
  const left = family.filter(alive);
  assert.deepEqual(left.map(commandOf), [], 'processes left behind after Ctrl-C');
}

function smtpBanner(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('data', (d) => {
      socket.end('QUIT\r\n');
      resolve(d.toString());
    });
    socket.once('error', reject);
  });
}

test('npm run dev: up, healthy, stopped cleanly, and restarted on the same data', async () => {
  // Ten distinct ports plus a pair for rspamd (its controller takes the next): a port freed after one probe can
  // be handed out again by the next, and two components on one port fail to start only now and then.
  const ports: number[] = [];
  while (ports.length < 10) {
    const p = await freePort();
    if (!ports.includes(p)) ports.push(p);
  }
  let rspamdPort = await freePortPair();
  while (ports.includes(rspamdPort) || ports.includes(rspamdPort + 1)) rspamdPort = await freePortPair();
  const [smtp, api, temporal, ui, minio, consolePort, pg, metrics] = ports as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    MXF_DATA_DIR: join(testTmp(), `dev-${randomUUID().slice(0, 8)}`),
    MXF_SMTP_PORT: String(smtp),
    MXF_API_PORT: String(api),
    TEMPORAL_ADDRESS: `127.0.0.1:${temporal}`,
    MXF_TEMPORAL_UI_PORT: String(ui),
    MXF_S3_ENDPOINT: `http://127.0.0.1:${minio}`,
    MXF_S3_CONSOLE_PORT: String(consolePort),
    MXF_PG_PORT: String(pg),
    MXF_INGEST_METRICS_PORT: String(metrics),
    MXF_WORKER_METRICS_PORT: String(ports[8]),
    MXF_RSPAMD_PORT: String(rspamdPort),
    MXF_DNS_PORT: String(ports[9]),
    MXF_LOG_LEVEL: 'warn',
    // Dovecot, the relay, the policy server and the web inbox on free ports; the master secret made under the data folder.
    ...Object.fromEntries(
      Object.entries(await mailboxEnv()).filter(([k]) => k !== 'MXF_DOVECOT_MASTER_SECRET'),
    ),
  };

  let queueId = '';
  const first = await startDev(env);
  try {
    const health = await fetch(`http://127.0.0.1:${api}/healthz`);
    const body = (await health.json()) as { components: Record<string, { status: string }> };
    assert.equal(health.status, 200, JSON.stringify(body));
    assert.deepEqual(
      Object.entries(body.components)
        .map(([name, c]) => `${name}:${c.status}`)
        .sort(),
      ['dovecot:up', 'minio:up', 'postgres:up', 'rspamd:up', 'temporal:up'],
    );
    const inbox = await fetch(`http://127.0.0.1:${env.MXF_WEBMAIL_PORT}/`, { redirect: 'manual' });
    assert.ok(
      inbox.status === 200 || inbox.status === 302 || inbox.status === 303,
      `web inbox: ${inbox.status}`,
    );
    assert.equal((await fetch(`http://127.0.0.1:${ui}/`)).status, 200, 'Temporal Web UI');
    assert.match(await smtpBanner(smtp), /^220 /);
    // The printed admin token works against the API; no token does not.
    const token = /MXF_TOKEN=(mxf_\S+)/.exec(first.output())?.[1];
    assert.ok(token, 'an admin token is printed');
    const customers = await fetch(`http://127.0.0.1:${api}/api/customers`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(customers.status, 200);
    assert.equal((await fetch(`http://127.0.0.1:${api}/api/customers`)).status, 401);
    for (const endpoint of [
      `smtp://127.0.0.1:${smtp}`,
      `http://127.0.0.1:${api}`,
      `http://127.0.0.1:${ui}`,
      `http://127.0.0.1:${env.MXF_WEBMAIL_PORT}`,
    ]) {
      assert.ok(first.output().includes(endpoint), `the endpoint ${endpoint} is printed`);
    }
    // End to end: SMTP in, held in MinIO and PostgreSQL, the doorbell starts the outage workflow, the dev
    // worker runs it and its activity counts the message.
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: smtp,
      secure: false,
      ignoreTLS: true,
    });
    const info = await transport.sendMail({
      envelope: { from: 'clerk@court.example', to: ['reception@harborviewlaw.example'] },
      // A whole message: the dev stack's rspamd scores it, and Harborview's runbook keeps quarantined mail.
      from: 'Court Clerk <clerk@court.example>',
      to: 'reception@harborviewlaw.example',
      subject: 'during the outage',
      text: 'Please hold.',
    });
    queueId = /queued as (\w+)/.exec(info.response)![1]!;
    const ingestMetrics = await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text();
    assert.match(ingestMetrics, /^mxf_smtp_accepted_total 1$/m);
    const connection = await Connection.connect({ address: `127.0.0.1:${temporal}` });
    try {
      const handle = new Client({ connection }).workflow.getHandle(outageWorkflowId('harborview-law'));
      await eventually(
        'the outage workflow counts the message',
        () => handle.query(statusQuery),
        (s) => s.heldMessages === 1,
        30_000,
      );
    } finally {
      await connection.close();
    }
  } finally {
    await stopDev(first);
  }

  const second = await startDev(env);
  try {
    assert.match(second.output(), /database schema is up to date/);
    const sql = postgres(`postgres://postgres@127.0.0.1:${pg}/mxfailover`, { max: 1 });
    const rows = await sql`select queue_id from held_message where queue_id = ${queueId}`;
    await sql.end();
    assert.equal(rows.length, 1, 'held mail survives a restart of npm run dev');
  } finally {
    await stopDev(second);
  }
});

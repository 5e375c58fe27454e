import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePortPair, mailboxEnv } from '../../src/stack';
import { freePort } from './ports';
import { alive, commandOf, descendants } from './procs';
import { testTmp } from './stack';

// `npm run dev` and `npm run cluster` as a user runs them (src/dev.ts, with or without --cluster), on ports and a
// data folder of the test's own: test/dev-stack.test.ts and test/cluster.test.ts.

/**
 * Distinct free ports for every endpoint. SMTP and ingest metrics come as pairs: the cluster's second ingest
 * node takes the next port of each. rspamd's controller takes the port after its own too.
 */
export async function devEnv() {
  const taken: number[] = [];
  const single = async () => {
    for (;;) {
      const p = await freePort();
      if (taken.includes(p)) continue;
      taken.push(p);
      return p;
    }
  };
  const pair = async () => {
    for (;;) {
      const p = await freePortPair();
      if (taken.includes(p) || taken.includes(p + 1)) continue;
      taken.push(p, p + 1);
      return p;
    }
  };
  const ports = {
    smtp: await pair(),
    metrics: await pair(),
    rspamd: await pair(),
    api: await single(),
    temporal: await single(),
    ui: await single(),
    minio: await single(),
    console: await single(),
    pg: await single(),
    workerMetrics: await single(),
    dns: await single(),
  };
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    MXF_DATA_DIR: join(testTmp(), `dev-${randomUUID().slice(0, 8)}`),
    MXF_SMTP_PORT: String(ports.smtp),
    MXF_API_PORT: String(ports.api),
    TEMPORAL_ADDRESS: `127.0.0.1:${ports.temporal}`,
    MXF_TEMPORAL_UI_PORT: String(ports.ui),
    MXF_S3_ENDPOINT: `http://127.0.0.1:${ports.minio}`,
    MXF_S3_CONSOLE_PORT: String(ports.console),
    MXF_PG_PORT: String(ports.pg),
    MXF_INGEST_METRICS_PORT: String(ports.metrics),
    MXF_WORKER_METRICS_PORT: String(ports.workerMetrics),
    MXF_RSPAMD_PORT: String(ports.rspamd),
    MXF_DNS_PORT: String(ports.dns),
    MXF_LOG_LEVEL: 'warn',
    // Dovecot, the relay, the policy server and the web inbox on free ports; the master secret made under the data folder.
    ...Object.fromEntries(
      Object.entries(await mailboxEnv()).filter(([k]) => k !== 'MXF_DOVECOT_MASTER_SECRET'),
    ),
  };
  return { env, ports };
}

export interface DevStack {
  proc: ChildProcess;
  output: () => string;
}

export async function startDev(env: NodeJS.ProcessEnv, args: string[] = []): Promise<DevStack> {
  const proc = spawn(process.execPath, ['--import', 'tsx', join(__dirname, '../../src/dev.ts'), ...args], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  proc.stdout!.on('data', (d) => (output += d));
  proc.stderr!.on('data', (d) => (output += d));
  const deadline = Date.now() + 180_000;
  while (!output.includes('Ctrl-C stops everything.')) {
    if (proc.exitCode !== null)
      assert.fail(`src/dev.ts ${args.join(' ')} exited with ${proc.exitCode}:\n${output}`);
    if (Date.now() > deadline)
      assert.fail(`src/dev.ts ${args.join(' ')} did not come up in time:\n${output}`);
    await sleep(200);
  }
  return { proc, output: () => output };
}

export async function stopDev(stack: DevStack): Promise<void> {
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

export function smtpBanner(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('data', (d) => {
      socket.end('QUIT\r\n');
      resolve(d.toString());
    });
    socket.once('error', reject);
  });
}

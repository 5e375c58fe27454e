import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { temporal as proto } from '@temporalio/proto';
import nodemailer from 'nodemailer';
import postgres from 'postgres';
import { outageWorkflowId } from '../src/domain/outage';
import { statusQuery } from '../src/workflows/messages';
import { type DevStack, devEnv, smtpBanner, startDev, stopDev } from './helpers/dev-stack';
import { eventually } from './helpers/eventually';
import { alive } from './helpers/procs';

// The acceptance test of `npm run cluster`: the production topology on one machine, as a user starts it. The real
// Temporal server on PostgreSQL (not the dev server), MinIO on four drives, two ingest nodes that each take mail,
// two workers polling one task queue, a dead worker started again, and Ctrl-C leaving no process behind.

const pidIn = (file: string) => (JSON.parse(readFileSync(file, 'utf8')) as { pid: number }).pid;

/** Every metrics URL printed answers, ingest nodes with SMTP counters, workers without: no two share a port. */
async function checkMetrics(out: string): Promise<void> {
  const ingest = [...out.matchAll(/its metrics\s+(http\S+)/g)].map((m) => m[1]!);
  const workers = [...out.matchAll(/Worker \(metrics\)\s+(http\S+)/g)].map((m) => m[1]!);
  assert.equal(ingest.length, 2);
  assert.equal(workers.length, 2);
  assert.equal(new Set([...ingest, ...workers]).size, 4, 'four distinct metrics endpoints');
  for (const url of ingest) assert.match(await (await fetch(url)).text(), /^mxf_smtp_accepted_total /m, url);
  for (const url of workers)
    assert.doesNotMatch(await (await fetch(url)).text(), /^mxf_smtp_accepted_total /m, url);
}

/** Two workers poll the one task queue; kill -9 one and the cluster starts it again. */
async function killAWorker(connection: Connection, dir: string, cluster: DevStack): Promise<void> {
  const pollers = async () =>
    new Set(
      (
        await connection.workflowService.describeTaskQueue({
          namespace: 'default',
          taskQueue: { name: 'mx-failover' },
          taskQueueType: proto.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        })
      ).pollers?.map((p) => p.identity),
    ).size;
  assert.ok((await pollers()) >= 2, 'two workers poll the task queue');
  const pidFile = join(dir, 'worker-1.pid');
  const killed = pidIn(pidFile);
  process.kill(killed, 'SIGKILL');
  await eventually(
    'worker-1 started again',
    async () => (existsSync(pidFile) ? pidIn(pidFile) : killed),
    (pid) => pid !== killed && alive(pid),
    30_000,
  );
  assert.match(cluster.output(), /worker-1 exited .*starting it again/);
}

test('npm run cluster: the whole topology up, mail through both nodes, a dead worker replaced, Ctrl-C clean', async () => {
  const { env, ports } = await devEnv();
  const dir = join(env.MXF_DATA_DIR!, 'cluster');
  const cluster = await startDev(env, ['--cluster']);
  const connection = await Connection.connect({ address: `127.0.0.1:${ports.temporal}` });
  try {
    const out = cluster.output();
    for (const port of [ports.smtp, ports.smtp + 1]) {
      assert.ok(out.includes(`smtp://127.0.0.1:${port}`), `ingest node on ${port} is printed`);
      assert.match(await smtpBanner(port), /^220 /);
    }
    assert.match(out, /Temporal server 1\.29\.1 on PostgreSQL/);
    assert.equal((await fetch(`http://127.0.0.1:${ports.ui}/`)).status, 200, 'Temporal Web UI');

    const health = await fetch(`http://127.0.0.1:${ports.api}/healthz`);
    assert.equal(health.status, 200);
    // The real server, not the CLI's dev server: its own binary runs, and its state is in PostgreSQL.
    const server = pidIn(join(dir, 'temporal', 'temporal-server.pid'));
    assert.match(readFileSync(`/proc/${server}/cmdline`, 'utf8'), /\.tools\/bin\/temporal-server\0/);
    const system = await connection.workflowService.getSystemInfo({});
    assert.ok(system.serverVersion?.startsWith('1.29.1'), `server ${system.serverVersion}`);
    await checkMetrics(out);
    for (const d of [1, 2, 3, 4])
      assert.ok(
        existsSync(join(dir, 'minio', `drive${d}`, 'held-mail')),
        `MinIO drive ${d} holds the bucket`,
      );

    // One message through each node; the outage workflow on the real server counts both.
    for (const port of [ports.smtp, ports.smtp + 1]) {
      const transport = nodemailer.createTransport({
        host: '127.0.0.1',
        port,
        secure: false,
        ignoreTLS: true,
      });
      await transport.sendMail({
        envelope: { from: 'clerk@court.example', to: ['reception@harborviewlaw.example'] },
        from: 'Court Clerk <clerk@court.example>',
        to: 'reception@harborviewlaw.example',
        subject: `through the node on ${port}`,
        text: 'Please hold.',
      });
    }
    const client = new Client({ connection });
    const handle = client.workflow.getHandle(outageWorkflowId('harborview-law'));
    await eventually(
      'the outage counts both',
      () => handle.query(statusQuery),
      (s) => s.heldMessages === 2,
      60_000,
    );
    const temporalDb = postgres(`postgres://postgres@127.0.0.1:${ports.pg}/temporal`, { max: 1 });
    const rows = await temporalDb`select count(*)::int as n from executions`.finally(() => temporalDb.end());
    assert.ok(rows[0]!.n >= 1, "the outage's execution is a row in PostgreSQL's temporal database");
    // Advanced visibility on PostgreSQL: our search attributes filter the list, as the Web UI does.
    await eventually(
      'the outage is found by CustomerId',
      async () => {
        const found = [];
        for await (const w of client.workflow.list({ query: `CustomerId = 'harborview-law'` })) found.push(w);
        return found;
      },
      (found) => found.length === 1,
      30_000,
    );

    await killAWorker(connection, dir, cluster);
    assert.ok(readdirSync(dir).includes('ingest-2.pid'), 'the second ingest node has its pid file');
  } finally {
    await connection.close();
    await stopDev(cluster);
  }
});

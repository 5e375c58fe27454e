import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import { temporal as proto } from '@temporalio/proto';
import nodemailer from 'nodemailer';
import { outageWorkflowId } from '../src/domain/outage';
import { statusQuery } from '../src/workflows/messages';
import { devEnv, smtpBanner, startDev, stopDev } from './helpers/dev-stack';
import { eventually } from './helpers/eventually';
import { alive } from './helpers/procs';

// The acceptance test of `npm run cluster`: the production topology on one machine, as a user starts it. The real
// Temporal server on PostgreSQL (not the dev server), MinIO on four drives, two ingest nodes that each take mail,
// two workers polling one task queue, a dead worker started again, and Ctrl-C leaving no process behind.

const pidIn = (file: string) => (JSON.parse(readFileSync(file, 'utf8')) as { pid: number }).pid;

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

    // The real server keeps its state in PostgreSQL: its own two databases beside ours, and no SQLite file.
    const health = await fetch(`http://127.0.0.1:${ports.api}/healthz`);
    assert.equal(health.status, 200);
    assert.ok(!existsSync(join(dir, 'temporal', 'dev.sqlite')));
    const system = await connection.workflowService.getSystemInfo({});
    assert.ok(system.serverVersion?.startsWith('1.29.1'), `server ${system.serverVersion}`);
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

    // Two workers poll the one task queue; kill -9 one and the cluster starts it again.
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
    assert.ok(readdirSync(dir).includes('ingest-2.pid'), 'the second ingest node has its pid file');
  } finally {
    await connection.close();
    await stopDev(cluster);
  }
});

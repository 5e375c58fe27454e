import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { temporal } from '@temporalio/proto';
import { createToken } from './api/auth';
import { type Config, loadConfigOrExit } from './config';
import { formatProblem, loadRunbooks } from './runbooks/load';
import { type LaunchedStack, launchStack, type Stack, type StackOptions } from './stack';
import { formatDnsServer } from './stack/dns';
import { type Component, httpOk, tcpOpen, waitFor } from './stack/process';
import { type ServiceLayout, type Services, startServices } from './stack/services';
import { CLUSTER_POSTGRES_CONNECTIONS } from './stack/temporal-server';
import { createSql } from './store/db';
import { connectTemporal } from './temporal';

// `npm run dev`: the whole service on this machine, on real components, with its state under MXF_DATA_DIR so a
// second run finds the held mail of the first. Ctrl-C stops the service processes first, then storage.
// `npm run cluster` (--cluster): the production topology on one machine, with its state under MXF_DATA_DIR/cluster:
// the real Temporal server on PostgreSQL, MinIO on four erasure-coded drives, two ingest nodes on two ports and two
// workers; a service process that dies is started again, as compose's `restart: unless-stopped` does.

const CLUSTER = process.argv.includes('--cluster');
const say = (line: string) => console.log(`[${CLUSTER ? 'cluster' : 'dev'}] ${line}`);

/** Durable state under MXF_DATA_DIR, pid files for reclaiming orphans, the Web UI, services on our terminal. */
function stackOptions(config: Config): StackOptions {
  const [temporalPort] = config.temporal.address.split(':').slice(-1).map(Number);
  return {
    dir: CLUSTER ? join(config.dataDir, 'cluster') : config.dataDir,
    env: {
      ...process.env,
      MXF_LOG_FORMAT: process.env.MXF_LOG_FORMAT ?? (process.stdout.isTTY ? 'pretty' : 'json'),
      // The example runbooks' MX hosts (*.example) never answer, so active monitoring would declare outages
      // for them at once; in the dev stack it is on only when asked for.
      MXF_MONITOR: process.env.MXF_MONITOR ?? 'off',
    },
    postgres: config.database.managed
      ? {
          port: config.database.privatePort,
          database: 'mxfailover',
          maxConnections: CLUSTER ? CLUSTER_POSTGRES_CONNECTIONS : undefined,
        }
      : { url: config.database.url },
    temporal: {
      port: temporalPort!,
      namespace: config.temporal.namespace,
      uiPort: config.temporal.uiPort,
      ...(CLUSTER ? { kind: 'server' } : { sqlite: 'dev.sqlite' }),
    },
    minio: { port: config.s3.port, consolePort: config.s3.consolePort, drives: CLUSTER ? 4 : undefined },
    // Each is skipped when its variable names one someone else runs (MXF_RSPAMD_URL, MXF_DNS_SERVERS).
    rspamd: { port: config.rspamd.port },
    dns: { port: config.dns.port },
    pidFiles: true,
    servicesToTerminal: true,
  };
}

/** A fresh admin token each run (the previous dev-admin token stops working), for the CLI on this machine. */
async function makeAdminToken(stack: Stack): Promise<string> {
  const sql = createSql(stack.config, { max: 1 });
  try {
    const token = await createToken(sql, 'dev-admin', 'admin', { actor: 'npm run dev', replace: true });
    writeFileSync(join(stack.config.dataDir, 'dev-admin.token'), `${token}\n`, { mode: 0o600 });
    return token;
  } finally {
    await sql.end();
  }
}

/**
 * Two ingest nodes on neighbouring SMTP ports in the cluster (two MX hosts of equal preference) and two workers;
 * one of each in dev. Metrics ports go up in twos, since ingest's and the worker's defaults are neighbours
 * (9465 and 9466): the cluster's second ingest node is on 9467, its second worker on 9468.
 */
function serviceLayout(config: Config): ServiceLayout {
  const nodes = Array.from({ length: CLUSTER ? 2 : 1 }, (_, i) => i);
  return {
    ingest: nodes.map((i) => ({
      smtpPort: config.smtp.port + i,
      metricsPort: config.smtp.metricsPort + 2 * i,
    })),
    workers: nodes.map((i) => ({ metricsPort: config.worker.metricsPort + 2 * i })),
    api: true,
    mailbox: true,
  };
}

/** Up means answering: the API's health check, each SMTP banner, and every worker polling the task queue. */
async function waitForServices(config: Config, layout: ServiceLayout, services: Services): Promise<void> {
  const { client, connection } = await connectTemporal(config.temporal);
  // The server remembers a poller for minutes: count only this run's workers (identity "<pid>@<host>").
  const pollers = async () => {
    const queue = await client.workflowService.describeTaskQueue({
      namespace: config.temporal.namespace,
      taskQueue: { name: config.temporal.taskQueue },
      taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    });
    const ours = new Set(services.workers.map((w) => String(w.child.pid)));
    return new Set(
      (queue.pollers ?? []).map((p) => p.identity?.split('@')[0]).filter((pid) => ours.has(pid!)),
    ).size;
  };
  try {
    await Promise.all([
      waitFor('the ops API', () => httpOk(`http://${config.api.host}:${config.api.port}/healthz`), {
        process: services.api,
      }),
      ...layout.ingest.map((node, i) =>
        waitFor(`SMTP ingest on port ${node.smtpPort}`, () => tcpOpen(config.smtp.host, node.smtpPort), {
          process: services.ingest[i],
        }),
      ),
      waitFor('the web inbox', () => tcpOpen(config.mailbox.web.host, config.mailbox.web.port), {
        process: services.mailbox,
      }),
      waitFor(`${layout.workers.length} worker(s)`, async () => (await pollers()) >= layout.workers.length, {
        timeoutMs: 120_000,
      }),
    ]);
  } finally {
    await connection.close();
  }
}

function printEndpoints(config: Config, layout: ServiceLayout, stack: Stack, adminToken: string): void {
  const [host] = config.temporal.address.split(':');
  say('MX Failover is up:');
  for (const node of layout.ingest) {
    say(`  SMTP ingest (backup MX)  smtp://${config.smtp.host}:${node.smtpPort}`);
    say(`    its metrics            http://${config.api.host}:${node.metricsPort}/metrics`);
  }
  for (const w of layout.workers)
    say(
      `  Worker (metrics)         http://${config.api.host}:${w.metricsPort}/metrics  task queue ${config.temporal.taskQueue}`,
    );
  say(`  Ops API                  http://${config.api.host}:${config.api.port}  (docs at /docs)`);
  const server = CLUSTER
    ? 'Temporal server 1.29.1 on PostgreSQL (databases temporal, temporal_visibility)'
    : 'Temporal CLI dev server';
  say(
    `  Temporal frontend        ${config.temporal.address}  namespace ${config.temporal.namespace}  (${server})`,
  );
  say(`  Temporal Web UI          http://${host}:${config.temporal.uiPort}`);
  const drives = CLUSTER ? '  (4 drives, erasure-coded)' : '';
  say(`  MinIO S3                 ${config.s3.url}  bucket ${config.s3.bucket}${drives}`);
  say(`  MinIO console            http://${config.s3.endPoint}:${config.s3.consolePort}`);
  const managed = config.database.managed ? '  (private cluster)' : '';
  say(`  PostgreSQL               ${stack.config.database.url}${managed}`);
  const m = config.mailbox;
  say(
    `  Temporary mailboxes      IMAP ${m.host}:${m.imapPort}, submission ${m.host}:${m.submissionPort} (STARTTLS; Dovecot, private)`,
  );
  say(`  Web inbox                ${m.web.url}`);
  const rspamd = stack.config.rspamd.url;
  say(
    stack.rspamd
      ? `  rspamd                   ${rspamd}  (private; controller and web UI on http://127.0.0.1:${config.rspamd.port + 1})`
      : `  rspamd                   ${rspamd}`,
  );
  const resolvers = stack.config.dns.servers.map(formatDnsServer).join(', ');
  say(
    stack.dns
      ? `  DNS (sender checks)      ${resolvers}  (private, no records; MXF_DNS_SERVERS=host:port uses a real resolver)`
      : `  DNS (sender checks)      ${resolvers || "the system's resolvers (/etc/resolv.conf)"}`,
  );
  if ((process.env.MXF_MONITOR ?? 'off') === 'off')
    say('Active monitoring is off here; MXF_MONITOR=on npm run dev turns it on.');
  say(
    `Operator CLI, with an admin token made for this run (also in ${join(config.dataDir, 'dev-admin.token')}):`,
  );
  say(`  export MXF_API_URL=http://${config.api.host}:${config.api.port} MXF_TOKEN=${adminToken}`);
  say('  bin/mxf customers');
  say('Ctrl-C stops everything.');
}

/**
 * A process that exits on its own: in dev the stack stops (a crash there is a bug to see at once); in the cluster
 * it is started again, as compose's restart policy does, with a delay that doubles while it keeps dying (1 s up to
 * 30 s, back to 1 s after a minute up), while the other node carries on.
 */
function supervise(p: Component, stopping: () => boolean, stop: (code: number) => Promise<void>): void {
  let delayMs = 1_000;
  let startedAt = Date.now();
  const watch = () =>
    void p.exited.then(async (code) => {
      if (stopping()) return;
      if (!CLUSTER) {
        console.error(`[dev] ${p.name} exited with code ${code}; stopping the stack`);
        return void stop(1);
      }
      if (Date.now() - startedAt > 60_000) delayMs = 1_000;
      for (;;) {
        console.error(
          `[cluster] ${p.name} exited with code ${code}; starting it again in ${delayMs / 1000} s`,
        );
        await sleep(delayMs);
        delayMs = Math.min(delayMs * 2, 30_000);
        if (stopping()) return;
        try {
          await p.restart();
          break;
        } catch (err) {
          console.error(`[cluster] ${p.name} did not start: ${(err as Error).message}`);
        }
      }
      startedAt = Date.now();
      watch();
    });
  watch();
}

async function main() {
  const config = loadConfigOrExit();
  const runbooks = await loadRunbooks(config.runbooksDir);
  if (runbooks.problems.length > 0) {
    for (const p of runbooks.problems) console.error(`mx-failover: runbook error: ${formatProblem(p)}`);
    process.exit(78);
  }
  let launched: LaunchedStack | undefined;
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('stopping: service processes first, then Temporal, MinIO, Dovecot, rspamd and DNS, then PostgreSQL');
    await launched?.stop();
    say('stopped');
    process.exit(code);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => void stop(0));

  try {
    const options = stackOptions(config);
    say(`data folder ${options.dir} (logs in ${join(options.dir, 'logs')})`);
    launched = launchStack(options);
    const stack = await launched.started;
    const { migrations } = stack;
    say(migrations.length ? `migrations applied: ${migrations.join(', ')}` : 'database schema is up to date');
    if (stack.bucketCreated) say(`bucket ${config.s3.bucket} created`);
    const adminToken = await makeAdminToken(stack);
    if (stopping) return;
    const layout = serviceLayout(config);
    const services = startServices(stack, layout);
    // In the cluster, storage and Temporal are supervised too: a dead server is a stack failure in dev only.
    const storage = [
      stack.postgres,
      stack.temporal,
      stack.temporalUi,
      stack.minio,
      stack.dovecot,
      stack.rspamd,
      stack.dns,
    ];
    const supervised = [...services.all, ...(CLUSTER ? storage.filter((c) => c !== undefined) : [])];
    for (const p of supervised) supervise(p, () => stopping, stop);
    await waitForServices(config, layout, services);
    printEndpoints(config, layout, stack, adminToken);
  } catch (err) {
    console.error(`mx-failover dev: ${(err as Error).message}`);
    await stop(1);
  }
}

void main();

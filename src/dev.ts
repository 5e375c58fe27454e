import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { temporal } from '@temporalio/proto';
import { createToken } from './api/auth';
import { type Config, loadConfigOrExit } from './config';
import { formatProblem, loadRunbooks } from './runbooks/load';
import { type LaunchedStack, launchStack, type Stack, type StackOptions } from './stack';
import { formatDnsServer } from './stack/dns';
import { httpOk, type ManagedProcess, tcpOpen, waitFor } from './stack/process';
import { createSql } from './store/db';
import { connectTemporal } from './temporal';

// `npm run dev`: the whole service on this machine, on real components, with its state under MXF_DATA_DIR so a
// second run finds the held mail of the first. Ctrl-C stops the service processes first, then storage.

const say = (line: string) => console.log(`[dev] ${line}`);

/** Durable state under MXF_DATA_DIR, pid files for reclaiming orphans, the Web UI, services on our terminal. */
function stackOptions(config: Config): StackOptions {
  const [temporalPort] = config.temporal.address.split(':').slice(-1).map(Number);
  return {
    dir: config.dataDir,
    env: {
      ...process.env,
      MXF_LOG_FORMAT: process.env.MXF_LOG_FORMAT ?? (process.stdout.isTTY ? 'pretty' : 'json'),
      // The example runbooks' MX hosts (*.example) never answer, so active monitoring would declare outages
      // for them at once; in the dev stack it is on only when asked for.
      MXF_MONITOR: process.env.MXF_MONITOR ?? 'off',
    },
    postgres: config.database.managed
      ? { port: config.database.privatePort, database: 'mxfailover' }
      : { url: config.database.url },
    temporal: {
      port: temporalPort!,
      namespace: config.temporal.namespace,
      uiPort: config.temporal.uiPort,
      sqlite: 'dev.sqlite',
    },
    minio: { port: config.s3.port, consolePort: config.s3.consolePort },
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

/** Up means answering: the API's health check, the SMTP banner, and a worker polling the task queue. */
async function waitForServices(
  config: Config,
  [worker, ingest, api, mailbox]: ManagedProcess[],
): Promise<void> {
  const { client, connection } = await connectTemporal(config.temporal);
  try {
    await Promise.all([
      waitFor('the ops API', () => httpOk(`http://${config.api.host}:${config.api.port}/healthz`), {
        process: api,
      }),
      waitFor('SMTP ingest', () => tcpOpen(config.smtp.host, config.smtp.port), { process: ingest }),
      waitFor('the web inbox', () => tcpOpen(config.mailbox.web.host, config.mailbox.web.port), {
        process: mailbox,
      }),
      waitFor(
        'the worker',
        async () => {
          const queue = await client.workflowService.describeTaskQueue({
            namespace: config.temporal.namespace,
            taskQueue: { name: config.temporal.taskQueue },
            taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
          });
          return (queue.pollers ?? []).length > 0;
        },
        { process: worker, timeoutMs: 120_000 },
      ),
    ]);
  } finally {
    await connection.close();
  }
}

function printEndpoints(config: Config, stack: Stack, adminToken: string): void {
  const [host] = config.temporal.address.split(':');
  say('MX Failover is up:');
  say(`  SMTP ingest (backup MX)  smtp://${config.smtp.host}:${config.smtp.port}`);
  say(`  Ops API                  http://${config.api.host}:${config.api.port}  (docs at /docs)`);
  say(`  Ingest metrics           http://${config.api.host}:${config.smtp.metricsPort}/metrics`);
  say(`  Temporal frontend        ${config.temporal.address}  namespace ${config.temporal.namespace}`);
  say(`  Temporal Web UI          http://${host}:${config.temporal.uiPort}`);
  say(`  MinIO S3                 ${config.s3.url}  bucket ${config.s3.bucket}`);
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
    say(`data folder ${config.dataDir} (logs in ${join(config.dataDir, 'logs')})`);
    launched = launchStack(stackOptions(config));
    const stack = await launched.started;
    const { migrations } = stack;
    say(migrations.length ? `migrations applied: ${migrations.join(', ')}` : 'database schema is up to date');
    if (stack.bucketCreated) say(`bucket ${config.s3.bucket} created`);
    const adminToken = await makeAdminToken(stack);
    if (stopping) return;
    const services = [
      stack.startService('worker', 'worker.ts'),
      stack.startService('ingest', 'ingest/main.ts'),
      stack.startService('api', 'api/main.ts'),
      stack.startService('mailbox', 'mailbox/main.ts'),
    ];
    for (const p of services) {
      void p.exited.then((code) => {
        if (stopping) return;
        console.error(`[dev] ${p.name} exited with code ${code}; stopping the stack`);
        void stop(1);
      });
    }
    await waitForServices(config, services);
    printEndpoints(config, stack, adminToken);
  } catch (err) {
    console.error(`mx-failover dev: ${(err as Error).message}`);
    await stop(1);
  }
}

void main();

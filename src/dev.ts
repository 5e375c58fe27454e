import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { temporal } from '@temporalio/proto';
import { createToken } from './api/auth';
import { type Config, loadConfigOrExit } from './config';
import { formatProblem, loadRunbooks } from './runbooks/load';
import { startMinio } from './stack/minio';
import { ensureDatabase, startPrivatePostgres } from './stack/postgres';
import { httpOk, type ManagedProcess, startProcess, startTogether, tcpOpen, waitFor } from './stack/process';
import { startTemporalDevServer } from './stack/temporal';
import { createSql } from './store/db';
import { migrate } from './store/migrate';
import { createObjectStore, ensureBucket } from './store/objects';
import { connectTemporal } from './temporal';

// `npm run dev`: the whole service on this machine, on real components, with its state under MXF_DATA_DIR so a
// second run finds the held mail of the first. Ctrl-C stops the service processes first, then storage.

const say = (line: string) => console.log(`[dev] ${line}`);

async function startStorage(
  config: Config,
  infra: ManagedProcess[],
): Promise<{ databaseUrl: string; adminToken: string }> {
  const logs = join(config.dataDir, 'logs');
  let databaseUrl = config.database.url;
  if (config.database.managed) {
    const pg = await startPrivatePostgres({
      dir: join(config.dataDir, 'postgres'),
      port: config.database.privatePort,
      logFile: join(logs, 'postgres.log'),
    });
    infra.push(pg);
    await ensureDatabase(pg.url('postgres'), 'mxfailover');
    databaseUrl = pg.url('mxfailover');
  }
  const sql = createSql({ database: { ...config.database, url: databaseUrl } }, { max: 1 });
  let adminToken: string;
  try {
    const applied = await migrate(sql);
    say(applied.length ? `migrations applied: ${applied.join(', ')}` : 'database schema is up to date');
    // A fresh admin token each run (the previous dev-admin token stops working), for the CLI on this machine.
    adminToken = await createToken(sql, 'dev-admin', 'admin', { actor: 'npm run dev', replace: true });
    writeFileSync(join(config.dataDir, 'dev-admin.token'), `${adminToken}\n`, { mode: 0o600 });
  } finally {
    await sql.end();
  }
  const [temporalPort] = config.temporal.address.split(':').slice(-1).map(Number);
  await startTogether(infra, [
    startTemporalDevServer({
      port: temporalPort!,
      namespace: config.temporal.namespace,
      uiPort: config.temporal.uiPort,
      dbFile: join(mkdir(config.dataDir, 'temporal'), 'dev.sqlite'),
      pidFile: join(config.dataDir, 'temporal', 'temporal.pid'),
      logFile: join(logs, 'temporal.log'),
    }),
    startMinio({
      dir: mkdir(config.dataDir, 'minio'),
      port: config.s3.port,
      consolePort: config.s3.consolePort,
      accessKey: config.s3.accessKey,
      secretKey: config.s3.secretKey,
      pidFile: join(config.dataDir, 'minio.pid'),
      logFile: join(logs, 'minio.log'),
    }),
  ]);
  if (await ensureBucket(createObjectStore(config), config)) say(`bucket ${config.s3.bucket} created`);
  return { databaseUrl, adminToken: adminToken! };
}

function mkdir(...parts: string[]): string {
  const dir = join(...parts);
  mkdirSync(dir, { recursive: true });
  return dir;
}

function startServices(config: Config, databaseUrl: string): ManagedProcess[] {
  const env = {
    ...process.env,
    DATABASE_URL: databaseUrl,
    MXF_LOG_FORMAT: process.env.MXF_LOG_FORMAT ?? (process.stdout.isTTY ? 'pretty' : 'json'),
    // The example runbooks' MX hosts (*.example) never answer, so active monitoring would declare outages for
    // them at once; in the dev stack it is on only when asked for.
    MXF_MONITOR: process.env.MXF_MONITOR ?? 'off',
  };
  const entry = (name: string, file: string) =>
    startProcess(name, process.execPath, ['--import', 'tsx', resolve(__dirname, file)], {
      env,
      pidFile: join(config.dataDir, `${name}.pid`),
      graceMs: config.shutdownGraceMs,
    });
  return [entry('worker', 'worker.ts'), entry('ingest', 'ingest/main.ts'), entry('api', 'api/main.ts')];
}

/** Up means answering: the API's health check, the SMTP banner, and a worker polling the task queue. */
async function waitForServices(config: Config, [worker, ingest, api]: ManagedProcess[]): Promise<void> {
  const { client, connection } = await connectTemporal(config.temporal);
  try {
    await Promise.all([
      waitFor('the ops API', () => httpOk(`http://${config.api.host}:${config.api.port}/healthz`), {
        process: api,
      }),
      waitFor('SMTP ingest', () => tcpOpen(config.smtp.host, config.smtp.port), { process: ingest }),
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

async function main() {
  const config = loadConfigOrExit();
  const runbooks = await loadRunbooks(config.runbooksDir);
  if (runbooks.problems.length > 0) {
    for (const p of runbooks.problems) console.error(`mx-failover: runbook error: ${formatProblem(p)}`);
    process.exit(78);
  }
  mkdir(config.dataDir, 'logs');
  const infra: ManagedProcess[] = [];
  let services: ManagedProcess[] = [];
  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('stopping: service processes first, then Temporal and MinIO, then PostgreSQL');
    await Promise.all(services.map((p) => p.stop()));
    const pg = infra.filter((p) => p.name === 'postgres');
    await Promise.all(infra.filter((p) => p.name !== 'postgres').map((p) => p.stop()));
    await Promise.all(pg.map((p) => p.stop()));
    say('stopped');
    process.exit(code);
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => void stop(0));

  try {
    say(`data folder ${config.dataDir} (logs in ${join(config.dataDir, 'logs')})`);
    const { databaseUrl, adminToken } = await startStorage(config, infra);
    if (stopping) return;
    services = startServices(config, databaseUrl);
    for (const p of services) {
      void p.exited.then((code) => {
        if (stopping) return;
        console.error(`[dev] ${p.name} exited with code ${code}; stopping the stack`);
        void stop(1);
      });
    }
    await waitForServices(config, services);
    const [host] = config.temporal.address.split(':');
    say('MX Failover is up:');
    say(`  SMTP ingest (backup MX)  smtp://${config.smtp.host}:${config.smtp.port}`);
    say(`  Ops API                  http://${config.api.host}:${config.api.port}  (docs at /docs)`);
    say(`  Ingest metrics           http://${config.api.host}:${config.smtp.metricsPort}/metrics`);
    say(`  Temporal frontend        ${config.temporal.address}  namespace ${config.temporal.namespace}`);
    say(`  Temporal Web UI          http://${host}:${config.temporal.uiPort}`);
    say(`  MinIO S3                 ${config.s3.url}  bucket ${config.s3.bucket}`);
    say(`  MinIO console            http://${config.s3.endPoint}:${config.s3.consolePort}`);
    say(`  PostgreSQL               ${databaseUrl}${config.database.managed ? '  (private cluster)' : ''}`);
    if ((process.env.MXF_MONITOR ?? 'off') === 'off')
      say('Active monitoring is off here; MXF_MONITOR=on npm run dev turns it on.');
    say(
      `Operator CLI, with an admin token made for this run (also in ${join(config.dataDir, 'dev-admin.token')}):`,
    );
    say(`  export MXF_API_URL=http://${config.api.host}:${config.api.port} MXF_TOKEN=${adminToken}`);
    say('  bin/mxf customers');
    say('Ctrl-C stops everything.');
  } catch (err) {
    console.error(`mx-failover dev: ${(err as Error).message}`);
    await stop(1);
  }
}

void main();

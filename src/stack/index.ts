import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Config, parseConfig } from '../config';
import { createSql } from '../store/db';
import { migrate } from '../store/migrate';
import { createObjectStore, ensureBucket } from '../store/objects';
import { startMinio } from './minio';
import { ensureDatabase, startPrivatePostgres } from './postgres';
import { type Component, restartable, startProcess, startTogether } from './process';
import { startTemporalDevServer } from './temporal';

// The one way to bring up what the service stands on (PostgreSQL, Temporal, MinIO) and the service processes
// on top of it: `npm run dev`, `npm test`, `npm run bench` and `npm run test:faults` differ only in options.

export interface StackOptions {
  /** Each component's data and logs/ live here: a temporary folder, or MXF_DATA_DIR for state that must last. */
  dir: string;
  /** The service's environment; the stack adds the addresses of what it started. */
  env: NodeJS.ProcessEnv;
  postgres: PrivateCluster | ExistingServer;
  temporal: {
    port: number;
    namespace?: string;
    /** Web UI port; headless without it. */
    uiPort?: number;
    /** A SQLite file under <dir>/temporal, for history that survives a restart; in memory without it. */
    sqlite?: string;
    /** More `temporal server start-dev` arguments, such as --dynamic-config-value. */
    extraArgs?: string[];
  };
  minio: { port: number; consolePort: number };
  /** Pid files beside the data, from which the next run reclaims the orphans of a run killed with SIGKILL. */
  pidFiles?: boolean;
  /** Service processes write to our terminal rather than to logs/<name>.log. */
  servicesToTerminal?: boolean;
  /** Aborting stops whatever has started, also halfway through starting. */
  signal?: AbortSignal;
}

/** A cluster of our own (initdb) under <dir>/postgres, holding `database`. */
export interface PrivateCluster {
  port: number;
  database: string;
  /** fsync off: for throw-away test clusters, never for held mail. */
  ephemeral?: boolean;
}

/** A server someone else runs (DATABASE_URL): used as it is, or with a `database` created on it. */
export interface ExistingServer {
  url: string;
  database?: string;
}

export interface Stack {
  /** `options.env` with DATABASE_URL, TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE and MXF_S3_ENDPOINT pointing here. */
  env: NodeJS.ProcessEnv;
  config: Config;
  logs: string;
  /** Migrations this start applied; empty when the schema was up to date. */
  migrations: string[];
  bucketCreated: boolean;
  /** Absent on a server someone else runs. */
  postgres?: Component;
  temporal: Component;
  minio: Component;
  /** Starts src/<entry> under tsx with the stack's environment; stop() stops it before the storage below it. */
  startService(name: string, entry: string, opts?: { nodeArgs?: string[] }): Component;
  /** Services first, then Temporal and MinIO, then PostgreSQL: nothing loses its storage while it still runs. */
  stop(): Promise<void>;
}

export async function startStack(opts: StackOptions): Promise<Stack> {
  const logs = mkdir(opts.dir, 'logs');
  const tiers = { services: [] as Component[], middle: [] as Component[], postgres: [] as Component[] };
  const stop = async () => {
    for (const tier of [tiers.services, tiers.middle, tiers.postgres])
      await Promise.all(tier.map((p) => p.stop()));
  };
  const onAbort = () => void stop();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const checkpoint = () => {
    if (opts.signal?.aborted) throw new Error('stopped while starting');
  };
  try {
    const databaseUrl = await openDatabase(opts, logs, tiers.postgres);
    checkpoint();
    const env = {
      ...opts.env,
      DATABASE_URL: databaseUrl,
      TEMPORAL_ADDRESS: `127.0.0.1:${opts.temporal.port}`,
      TEMPORAL_NAMESPACE: opts.temporal.namespace ?? 'default',
      MXF_S3_ENDPOINT: `http://127.0.0.1:${opts.minio.port}`,
    };
    const config = parseConfig(env);
    const sql = createSql(config, { max: 1 });
    const migrations = await migrate(sql).finally(() => sql.end());
    checkpoint();
    const [temporal, minio] = await startTogether<[Component, Component]>(tiers.middle, [
      startTemporal(opts, config, logs),
      startObjectStore(opts, config, logs),
    ]);
    checkpoint();
    const bucketCreated = await ensureBucket(createObjectStore(config), config);
    return {
      env,
      config,
      logs,
      migrations,
      bucketCreated,
      postgres: tiers.postgres[0],
      temporal,
      minio,
      startService(name, entry, o) {
        const service = startService(opts, { env, config, logs }, name, entry, o?.nodeArgs);
        tiers.services.push(service);
        return service;
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

export interface LaunchedStack {
  started: Promise<Stack>;
  /** Works at any moment: halfway through starting, it stops what has started. */
  stop(): Promise<void>;
}

/** startStack for a process whose signal handlers may fire before the stack is up. */
export function launchStack(opts: StackOptions): LaunchedStack {
  const abort = new AbortController();
  const started = startStack({ ...opts, signal: abort.signal });
  return {
    started,
    async stop() {
      abort.abort();
      const stack = await started.catch(() => undefined);
      await stack?.stop();
    },
  };
}

async function openDatabase(opts: StackOptions, logs: string, running: Component[]): Promise<string> {
  const pg = opts.postgres;
  if ('url' in pg) {
    if (!pg.database) return pg.url;
    await ensureDatabase(pg.url, pg.database);
    const url = new URL(pg.url);
    url.pathname = `/${pg.database}`;
    return url.toString();
  }
  const start = () =>
    startPrivatePostgres({
      dir: join(opts.dir, 'postgres'),
      port: pg.port,
      logFile: join(logs, 'postgres.log'),
      ephemeral: pg.ephemeral,
    });
  const cluster = await start();
  running.push(restartable(cluster, start));
  await ensureDatabase(cluster.url('postgres'), pg.database);
  return cluster.url(pg.database);
}

async function startTemporal(opts: StackOptions, config: Config, logs: string): Promise<Component> {
  const { temporal } = opts;
  const dir = temporal.sqlite || opts.pidFiles ? mkdir(opts.dir, 'temporal') : undefined;
  // Registers the search attributes as part of its readiness check, so a started stack has them.
  const start = () =>
    startTemporalDevServer({
      port: temporal.port,
      namespace: config.temporal.namespace,
      uiPort: temporal.uiPort,
      dbFile: temporal.sqlite && join(dir!, temporal.sqlite),
      pidFile: opts.pidFiles ? join(dir!, 'temporal.pid') : undefined,
      extraArgs: temporal.extraArgs,
      logFile: join(logs, 'temporal.log'),
    });
  return restartable(await start(), start);
}

async function startObjectStore(opts: StackOptions, config: Config, logs: string): Promise<Component> {
  const start = () =>
    startMinio({
      dir: mkdir(opts.dir, 'minio'),
      port: opts.minio.port,
      consolePort: opts.minio.consolePort,
      accessKey: config.s3.accessKey,
      secretKey: config.s3.secretKey,
      pidFile: opts.pidFiles ? join(opts.dir, 'minio.pid') : undefined,
      logFile: join(logs, 'minio.log'),
    });
  return restartable(await start(), start);
}

function startService(
  opts: StackOptions,
  stack: Pick<Stack, 'env' | 'config' | 'logs'>,
  name: string,
  entry: string,
  nodeArgs: string[] = [],
): Component {
  const start = () =>
    startProcess(name, process.execPath, [...nodeArgs, '--import', 'tsx', join(__dirname, '..', entry)], {
      env: stack.env,
      logFile: opts.servicesToTerminal ? undefined : join(stack.logs, `${name}.log`),
      pidFile: opts.pidFiles ? join(opts.dir, `${name}.pid`) : undefined,
      graceMs: stack.config.shutdownGraceMs,
    });
  return restartable(start(), async () => start());
}

function mkdir(...parts: string[]): string {
  const dir = join(...parts);
  mkdirSync(dir, { recursive: true });
  return dir;
}

import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { type Config, parseConfig } from '../config';
import { createSql } from '../store/db';
import { migrate } from '../store/migrate';
import { createObjectStore, ensureBucket } from '../store/objects';
import { type DnsRecord, startDnsServer } from './dns';
import { startMailServer } from './mail-server';
import { startMinio } from './minio';
import { ensureDatabase, startPrivatePostgres } from './postgres';
import { type Component, freePort, freePortPair, restartable, startProcess, startTogether } from './process';

export { freePort, freePortPair } from './process';

import { startRspamd } from './rspamd';
import { startTemporalDevServer } from './temporal';
import {
  setupTemporalSchema,
  startTemporalServer,
  startTemporalUi,
  temporalDatabaseOf,
  temporalServerEnv,
} from './temporal-server';

export type { DnsRecord } from './dns';

// The one way to bring up what the service stands on (PostgreSQL, Temporal, MinIO, rspamd, Dovecot and a DNS server) and
// the service processes on top of it: `npm run dev`, `npm test`, `npm run bench` and `npm run test:faults` differ
// only in options.

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
    /**
     * 'dev' (the default): the CLI's single-process dev server. 'server': the real Temporal server on this stack's
     * PostgreSQL (persistence and visibility), configured by temporal/config/mxfailover.yaml, as compose runs it.
     */
    kind?: 'dev' | 'server';
  };
  /** drives: 4 or more makes MinIO erasure-code every object across them, so a lost drive is healed. */
  minio: { port: number; consolePort: number; drives?: number };
  /**
   * A private rspamd (normal worker on `port`, controller on port+1), unless env.MXF_RSPAMD_URL names one; the
   * services get its URL as MXF_RSPAMD_URL. Left out: on free ports.
   */
  rspamd?: { port: number };
  /**
   * A private DNS server (dnsmasq) holding `records` and nothing else, unless env.MXF_DNS_SERVERS names the
   * resolvers; the services and rspamd get it as MXF_DNS_SERVERS. Left out: on a free port, with no records.
   */
  dns?: { port: number; records?: DnsRecord[] };
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
  /** PostgreSQL's max_connections; its default (100) is too few under a Temporal server and several nodes. */
  maxConnections?: number;
}

/** A server someone else runs (DATABASE_URL): used as it is, or with a `database` created on it. */
export interface ExistingServer {
  url: string;
  database?: string;
}

export interface Stack {
  /**
   * `options.env` with DATABASE_URL, TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, MXF_S3_ENDPOINT, MXF_RSPAMD_URL and
   * MXF_DNS_SERVERS pointing here.
   */
  env: NodeJS.ProcessEnv;
  config: Config;
  logs: string;
  /** Migrations this start applied; empty when the schema was up to date. */
  migrations: string[];
  bucketCreated: boolean;
  /** Absent on a server someone else runs. */
  postgres?: Component;
  temporal: Component;
  /** The Web UI of the real Temporal server (kind 'server' with a uiPort); the dev server serves its own. */
  temporalUi?: Component;
  minio: Component;
  /** Absent when env.MXF_RSPAMD_URL names an rspamd someone else runs. */
  rspamd?: Component;
  /** Absent when env.MXF_DNS_SERVERS names the resolvers. */
  dns?: Component;
  /** Dovecot for temporary mailboxes (IMAP, LMTP, submission). */
  dovecot: Component;
  /**
   * Starts src/<entry> under tsx with the stack's environment (and `env` over it: a second ingest node's port);
   * stop() stops it before the storage below it.
   */
  startService(
    name: string,
    entry: string,
    opts?: { nodeArgs?: string[]; env?: NodeJS.ProcessEnv },
  ): Component;
  /**
   * Services first, then Temporal, MinIO, Dovecot, rspamd and DNS, then PostgreSQL: nothing loses its storage while it
   * still runs.
   */
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
    // Someone else's rspamd or resolvers (the variables set) are used as they are; otherwise ours, started below.
    const rspamdPort = opts.env.MXF_RSPAMD_URL ? undefined : (opts.rspamd?.port ?? (await freePortPair()));
    const dnsPort = opts.env.MXF_DNS_SERVERS ? undefined : (opts.dns?.port ?? (await freePort()));
    const env = {
      ...opts.env,
      DATABASE_URL: databaseUrl,
      TEMPORAL_ADDRESS: `127.0.0.1:${opts.temporal.port}`,
      TEMPORAL_NAMESPACE: opts.temporal.namespace ?? 'default',
      MXF_S3_ENDPOINT: `http://127.0.0.1:${opts.minio.port}`,
      ...(rspamdPort !== undefined && { MXF_RSPAMD_URL: `http://127.0.0.1:${rspamdPort}` }),
      ...(dnsPort !== undefined && { MXF_DNS_SERVERS: `127.0.0.1:${dnsPort}` }),
    };
    const config = parseConfig(env);
    const sql = createSql(config, { max: 1 });
    const migrations = await migrate(sql).finally(() => sql.end());
    checkpoint();
    // DNS first: rspamd is told its address, and resolves through it from its first message on.
    const dns = dnsPort === undefined ? undefined : await startDns(opts, dnsPort, logs);
    if (dns) tiers.middle.push(dns);
    checkpoint();
    const [temporal, minio, dovecot, rspamd] = (await startTogether<Component[]>(tiers.middle, [
      startTemporal(opts, config, logs),
      startObjectStore(opts, config, logs),
      startMailServer(opts.dir, config, logs, opts.pidFiles),
      ...(rspamdPort === undefined ? [] : [startFilter(opts, config, rspamdPort, logs)]),
    ])) as [Component, Component, Component, Component?];
    checkpoint();
    const temporalUi = await startServerUi(opts, config, logs);
    if (temporalUi) tiers.middle.push(temporalUi);
    const bucketCreated = await ensureBucket(createObjectStore(config), config);
    return {
      env,
      config,
      logs,
      migrations,
      bucketCreated,
      postgres: tiers.postgres[0],
      temporal,
      temporalUi,
      minio,
      rspamd,
      dns,
      dovecot,
      startService(name, entry, o) {
        const service = startService(
          opts,
          { env: { ...env, ...o?.env }, config, logs },
          name,
          entry,
          o?.nodeArgs,
        );
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
      maxConnections: pg.maxConnections,
    });
  const cluster = await start();
  running.push(restartable(cluster, start));
  await ensureDatabase(cluster.url('postgres'), pg.database);
  return cluster.url(pg.database);
}

async function startTemporal(opts: StackOptions, config: Config, logs: string): Promise<Component> {
  const { temporal } = opts;
  if (temporal.kind === 'server') return startRealTemporal(opts, config, logs);
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

async function startRealTemporal(opts: StackOptions, config: Config, logs: string): Promise<Component> {
  const db = temporalDatabaseOf(config.database.url);
  await setupTemporalSchema(db);
  const env = await temporalServerEnv(opts.temporal.port, db);
  const start = () =>
    startTemporalServer({
      port: opts.temporal.port,
      namespace: config.temporal.namespace,
      env,
      logFile: join(logs, 'temporal-server.log'),
      pidFile: opts.pidFiles ? join(mkdir(opts.dir, 'temporal'), 'temporal-server.pid') : undefined,
      signal: opts.signal,
    });
  return restartable(await start(), start);
}

/** The real server's Web UI, once the server answers (the UI server checks its address as it starts). */
async function startServerUi(
  opts: StackOptions,
  config: Config,
  logs: string,
): Promise<Component | undefined> {
  const { temporal } = opts;
  if (temporal.kind !== 'server' || !temporal.uiPort) return undefined;
  const start = () =>
    startTemporalUi({
      port: temporal.uiPort!,
      temporalAddress: config.temporal.address,
      namespace: config.temporal.namespace,
      logFile: join(logs, 'temporal-ui.log'),
      pidFile: opts.pidFiles ? join(mkdir(opts.dir, 'temporal'), 'temporal-ui.pid') : undefined,
    });
  return restartable(await start(), start);
}

async function startObjectStore(opts: StackOptions, config: Config, logs: string): Promise<Component> {
  const start = () =>
    startMinio({
      dir: mkdir(opts.dir, 'minio'),
      port: opts.minio.port,
      consolePort: opts.minio.consolePort,
      drives: opts.minio.drives,
      accessKey: config.s3.accessKey,
      secretKey: config.s3.secretKey,
      pidFile: opts.pidFiles ? join(opts.dir, 'minio.pid') : undefined,
      logFile: join(logs, 'minio.log'),
    });
  return restartable(await start(), start);
}

async function startDns(opts: StackOptions, port: number, logs: string): Promise<Component> {
  const start = () =>
    startDnsServer({
      dir: mkdir(opts.dir, 'dns'),
      port,
      records: opts.dns?.records,
      pidFile: opts.pidFiles ? join(opts.dir, 'dns.pid') : undefined,
      logFile: join(logs, 'dns.log'),
    });
  return restartable(await start(), start);
}

async function startFilter(
  opts: StackOptions,
  config: Config,
  port: number,
  logs: string,
): Promise<Component> {
  const start = () =>
    startRspamd({
      dir: mkdir(opts.dir, 'rspamd'),
      port,
      dnsServers: config.dns.servers,
      pidFile: opts.pidFiles ? join(opts.dir, 'rspamd.pid') : undefined,
      logFile: join(logs, 'rspamd.log'),
    });
  return restartable(await start(), start);
}

/**
 * For throw-away stacks (tests, bench, faults) beside a running `npm run dev`: free ports for Dovecot, the
 * submission relay and the web inbox, and a master secret of the run's own (not one kept under ./.data).
 */
export async function mailboxEnv(): Promise<Record<string, string>> {
  const names = [
    'MXF_IMAP_PORT',
    'MXF_LMTP_PORT',
    'MXF_SUBMISSION_PORT',
    'MXF_SUBMISSION_RELAY_PORT',
    'MXF_AUTH_POLICY_PORT',
    'MXF_DOVEADM_PORT',
    'MXF_WEBMAIL_PORT',
  ];
  const ports = await Promise.all(names.map(() => freePort()));
  return {
    ...Object.fromEntries(names.map((n, i) => [n, String(ports[i])])),
    MXF_DOVECOT_MASTER_SECRET: randomBytes(24).toString('hex'),
  };
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

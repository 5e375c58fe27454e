import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { type Connection, isGrpcServiceError } from '@temporalio/client';
import { connectTemporal, ensureNamespace, ensureSearchAttributes } from '../temporal';
import { freeLowPort, httpOk, type ManagedProcess, startedOrStopped, startProcess } from './process';
import { TOOLS_BIN } from './temporal';

// The real Temporal server (go.temporal.io/server, the release the CLI embeds, built by scripts/tools.sh) on
// PostgreSQL for persistence and visibility, configured by temporal/config/mxfailover.yaml: what `npm run cluster`
// and `npm run test:cluster` run, and what docker-compose.yml runs. Unlike the dev server it makes no namespace
// and no schema of its own: temporal/schema.sh sets up the databases, and the readiness check below registers
// the namespace and our search attributes.

const GRPC_INVALID_ARGUMENT = 3;
const GRPC_NOT_FOUND = 5;
const TEMPORAL_DIR = join(__dirname, '../../temporal');

/**
 * PostgreSQL's max_connections under a Temporal server (four services, each with its own pools) and several
 * ingest processes and workers; its default, 100, runs out. docker-compose.yml's postgres gets the same.
 */
export const CLUSTER_POSTGRES_CONNECTIONS = 300;

/** Where the server reaches PostgreSQL: host, port and the account that owns Temporal's two databases. */
export interface TemporalDatabase {
  host: string;
  port: number;
  user: string;
  password: string;
}

export function temporalDatabaseOf(databaseUrl: string): TemporalDatabase {
  const url = new URL(databaseUrl);
  return {
    host: url.hostname,
    port: Number(url.port || 5432),
    user: decodeURIComponent(url.username || 'postgres'),
    password: decodeURIComponent(url.password),
  };
}

/** Makes or upgrades Temporal's databases with the server's own SQL tool: temporal/schema.sh, as compose does. */
export async function setupTemporalSchema(db: TemporalDatabase): Promise<void> {
  await promisify(execFile)('bash', [join(TEMPORAL_DIR, 'schema.sh')], {
    env: {
      ...process.env,
      TEMPORAL_SQL_TOOL: join(TOOLS_BIN, 'temporal-sql-tool'),
      SQL_HOST: db.host,
      SQL_PORT: String(db.port),
      SQL_USER: db.user,
      SQL_PASSWORD: db.password,
    },
  }).catch((err: Error & { stderr?: string }) => {
    throw new Error(
      `Temporal's schema setup (temporal/schema.sh) failed: ${err.stderr?.trim() || err.message}`,
    );
  });
}

const PORT_NAMES = [
  'FRONTEND_HTTP_PORT',
  'FRONTEND_MEMBERSHIP_PORT',
  'MATCHING_GRPC_PORT',
  'MATCHING_MEMBERSHIP_PORT',
  'HISTORY_GRPC_PORT',
  'HISTORY_MEMBERSHIP_PORT',
  'WORKER_GRPC_PORT',
  'WORKER_MEMBERSHIP_PORT',
];

/**
 * The template's environment: the frontend on `port`, the other services' ports free ones chosen once, so that a
 * restart (the fault suites restart the server) comes back on the same ports. Under 32768: Temporal keeps
 * membership ports in a smallint column.
 */
export async function temporalServerEnv(port: number, db: TemporalDatabase): Promise<NodeJS.ProcessEnv> {
  const ports: number[] = [];
  // One after another, so that no two of them draw the same port.
  for (const _ of PORT_NAMES) {
    let drawn = await freeLowPort();
    while (ports.includes(drawn)) drawn = await freeLowPort();
    ports.push(drawn);
  }
  return {
    ...Object.fromEntries(PORT_NAMES.map((name, i) => [name, String(ports[i])])),
    FRONTEND_GRPC_PORT: String(port),
    BIND_ON_IP: '127.0.0.1',
    POSTGRES_SEEDS: db.host,
    DB_PORT: String(db.port),
    POSTGRES_USER: db.user,
    POSTGRES_PWD: db.password,
    TEMPORAL_DYNAMIC_CONFIG: join(TEMPORAL_DIR, 'dynamicconfig.yaml'),
  };
}

export async function startTemporalServer(opts: {
  port: number;
  namespace: string;
  /** From temporalServerEnv: the same for every start of one stack. */
  env: NodeJS.ProcessEnv;
  logFile: string;
  pidFile?: string;
  signal?: AbortSignal;
}): Promise<ManagedProcess> {
  const server = join(TOOLS_BIN, 'temporal-server');
  // The script execs the server, so this pid is the server's (the fault suites kill it); the pid file records the
  // server's command line, as start-server.sh's last line runs it.
  const proc = startProcess('temporal-server', 'bash', [join(TEMPORAL_DIR, 'start-server.sh')], {
    env: { ...process.env, ...opts.env, TEMPORAL_SERVER: server },
    execs: [
      server,
      '--root',
      TEMPORAL_DIR,
      '--config',
      'config',
      '--env',
      'mxfailover',
      '--allow-no-auth',
      'start',
    ],
    logFile: opts.logFile,
    pidFile: opts.pidFile,
    graceMs: 20_000,
  });
  const address = `127.0.0.1:${opts.port}`;
  return startedOrStopped(proc, `Temporal server on ${address}`, () => readyForUs(address, opts.namespace), {
    logFile: opts.logFile,
    timeoutMs: 120_000,
    signal: opts.signal,
  });
}

/**
 * Ready for our services: the namespace registered and usable through the frontend's namespace cache (a fresh
 * registration takes up to its refresh interval to be seen), and our search attributes queryable.
 */
async function readyForUs(address: string, namespace: string): Promise<boolean> {
  const { connection } = await connectTemporal({ address, namespace }, 1_000);
  try {
    await ensureNamespace(connection, namespace);
    await ensureSearchAttributes(connection, namespace);
    return await searchable(connection, namespace);
  } finally {
    await connection.close();
  }
}

async function searchable(connection: Connection, namespace: string): Promise<boolean> {
  try {
    await connection.workflowService.countWorkflowExecutions({
      namespace,
      query: `OutageId = 'ready' AND CustomerId = 'ready' AND OutagePhase = 'ready'`,
    });
    return true;
  } catch (err) {
    // NOT_FOUND: the namespace is not in the frontend's cache yet; INVALID_ARGUMENT: a search attribute isn't.
    if (isGrpcServiceError(err) && [GRPC_NOT_FOUND, GRPC_INVALID_ARGUMENT].includes(err.code)) return false;
    throw err;
  }
}

/** The Web UI server the CLI embeds (ui-server), configured by temporal/ui/mxfailover.yaml. */
export async function startTemporalUi(opts: {
  port: number;
  temporalAddress: string;
  namespace: string;
  logFile: string;
  pidFile?: string;
}): Promise<ManagedProcess> {
  const proc = startProcess(
    'temporal-ui',
    join(TOOLS_BIN, 'temporal-ui-server'),
    ['--root', TEMPORAL_DIR, '--config', 'ui', '--env', 'mxfailover', 'start'],
    {
      env: {
        ...process.env,
        TEMPORAL_ADDRESS: opts.temporalAddress,
        TEMPORAL_UI_PORT: String(opts.port),
        TEMPORAL_DEFAULT_NAMESPACE: opts.namespace,
      },
      logFile: opts.logFile,
      pidFile: opts.pidFile,
    },
  );
  const url = `http://127.0.0.1:${opts.port}/`;
  return startedOrStopped(proc, `Temporal Web UI on ${url}`, () => httpOk(url), { logFile: opts.logFile });
}

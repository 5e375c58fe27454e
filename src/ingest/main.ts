import cluster from 'node:cluster';
import type { Server } from 'node:http';
import { Client, Connection } from '@temporalio/client';
import { type Config, loadConfigOrExit } from '../config';
import { createLogger, type Logger } from '../log';
import { serveMetrics } from '../metrics-server';
import { loadRunbooksOrExit } from '../runbooks/load';
import { createSql } from '../store/db';
import { createObjectStore } from '../store/objects';
import { buildIngest } from './build';
import {
  askPrimaryForRole,
  exitWithPrimary,
  type IngestProcessRole,
  processShare,
  shareMetricsWithPrimary,
  superviseIngestProcesses,
} from './processes';
import { loadTls } from './tls';

// `npm run ingest`: one ingest node. With MXF_INGEST_PROCESSES=1 it is this process alone; with more, this process
// becomes the node's primary and forks that many processes that take the mail (src/ingest/processes.ts).

/** PostgreSQL connections of one ingest node (createSql's default for a process). */
const NODE_DB_CONNECTIONS = 10;

async function main() {
  const config = loadConfigOrExit();
  const log = createLogger(config, 'ingest');
  if (cluster.isWorker) {
    const role = await askPrimaryForRole();
    const processLog = log.child({ worker: role.slot });
    exitWithPrimary(processLog);
    return takeMail(config, processLog, role);
  }
  if (config.smtp.processes > 1) return superviseIngestProcesses(config, log);
  return takeMail(config, log);
}

/** The SMTP listener, its storage and its doorbell: the whole node, or one of its processes (`role`). */
async function takeMail(nodeConfig: Config, log: Logger, role?: IngestProcessRole) {
  const config = role ? processShare(nodeConfig, role) : nodeConfig;
  const runbooks = await loadRunbooksOrExit(config.runbooksDir);
  // A database that hangs must not hold a sender for minutes: fail the statement, answer 451, let them retry.
  const sql = createSql(config, {
    // The node's connections, shared among its processes: more cores must not mean more than max_connections.
    max: Math.ceil(NODE_DB_CONNECTIONS / (role?.processes ?? 1)),
    connection: { statement_timeout: 15_000, idle_in_transaction_session_timeout: 15_000 },
  });
  // Lazy: ingest depends only on storage, so it starts and accepts mail while Temporal is unreachable.
  const client = new Client({
    connection: Connection.lazy({ address: config.temporal.address }),
    namespace: config.temporal.namespace,
  });
  const ingest = buildIngest({
    config,
    runbooks,
    log,
    sql,
    objects: createObjectStore(config),
    tls: role ? role.tls : await loadTls(config, log),
    ring: client,
    reconcile: role ? role.reconciles : true,
    processes: role?.processes,
  });
  let metricsServer: Server | undefined;
  let stopping = false;
  const stop = () => {
    // Once: a Ctrl-C reaches the primary and its processes alike, and the primary then sends SIGTERM as well.
    if (stopping) return;
    stopping = true;
    metricsServer?.close();
    void ingest
      .close()
      .then(() => Promise.allSettled([sql.end({ timeout: 5 }), client.connection.close()]))
      .then(() => process.exit(0));
  };
  // Before listening: a SIGTERM from the primary may come at any moment after the fork.
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
  // Each ingest node is one Prometheus target, on the ops interface next to the API; with several processes the
  // primary serves it, adding up theirs (answering from before the first connection).
  if (role) shareMetricsWithPrimary(ingest.metrics.registry);
  await ingest.listen(config.smtp.port, config.smtp.host);
  if (!role)
    metricsServer = serveMetrics(ingest.metrics.registry, config.smtp.metricsPort, config.api.host, log);
  log.info(
    {
      host: config.smtp.host,
      port: config.smtp.port,
      customers: runbooks.length,
      ...(role ? {} : { metricsPort: config.smtp.metricsPort }),
    },
    role ? 'smtp ingest process listening' : 'smtp ingest listening',
  );
}

main().catch((err) => {
  console.error(`mx-failover ingest: ${(err as Error).message}`);
  process.exit(1);
});

import { Client, Connection } from '@temporalio/client';
import { loadConfigOrExit } from '../config';
import { createLogger } from '../log';
import { serveMetrics } from '../metrics-server';
import { loadRunbooksOrExit } from '../runbooks/load';
import { createSql } from '../store/db';
import { createObjectStore } from '../store/objects';
import { buildIngest } from './build';
import { loadTls } from './tls';

async function main() {
  const config = loadConfigOrExit();
  const log = createLogger(config, 'ingest');
  const runbooks = await loadRunbooksOrExit(config.runbooksDir);
  // A database that hangs must not hold a sender for minutes: fail the statement, answer 451, let them retry.
  const sql = createSql(config, {
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
    tls: await loadTls(config, log),
    ring: client,
    reconcile: true,
  });
  const { metrics } = ingest;
  await ingest.listen(config.smtp.port, config.smtp.host);
  // Each ingest node is its own Prometheus target, on the ops interface next to the API.
  const metricsServer = serveMetrics(metrics.registry, config.smtp.metricsPort, config.api.host, log);
  log.info(
    {
      host: config.smtp.host,
      port: config.smtp.port,
      customers: runbooks.length,
      metricsPort: config.smtp.metricsPort,
    },
    'smtp ingest listening',
  );

  const stop = () => {
    metricsServer.close();
    void ingest
      .close()
      .then(() => Promise.allSettled([sql.end({ timeout: 5 }), client.connection.close()]))
      .then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err) => {
  console.error(`mx-failover ingest: ${(err as Error).message}`);
  process.exit(1);
});

import { Client, Connection } from '@temporalio/client';
import {
  DefaultLogger,
  makeTelemetryFilterString,
  NativeConnection,
  Runtime,
  Worker,
} from '@temporalio/worker';
import { createActivities } from './activities';
import { loadConfigOrExit } from './config';
import { createLogger } from './log';
import { serveMetrics } from './metrics-server';
import { loadRunbooksOrExit } from './runbooks/load';
import { ensureMonitorSchedules, ensureRetentionSchedule } from './schedules';
import { createScorerMetrics } from './scorer/metrics';
import { Scorer } from './scorer/scorer';
import { createSql } from './store/db';
import { createObjectStore } from './store/objects';

// The worker runs the outage and monitor workflows and their activities, and keeps the monitor schedules in line
// with the runbooks. Temporal's own SIGINT/SIGTERM handling drains it.
async function main() {
  const config = loadConfigOrExit();
  const log = createLogger(config, 'worker');
  Runtime.install({
    logger: new DefaultLogger('WARN', (entry) => log.warn(entry.meta ?? {}, entry.message)),
    telemetryOptions: { logging: { forward: {}, filter: makeTelemetryFilterString({ core: 'WARN' }) } },
  });
  const runbooks = await loadRunbooksOrExit(config.runbooksDir);
  const sql = createSql(config);
  const objects = createObjectStore(config);
  const client = new Client({
    connection: Connection.lazy({ address: config.temporal.address }),
    namespace: config.temporal.namespace,
  });
  const connection = await NativeConnection.connect({ address: config.temporal.address });
  const worker = await Worker.create({
    connection,
    namespace: config.temporal.namespace,
    taskQueue: config.temporal.taskQueue,
    workflowsPath: require.resolve('./workflows'),
    activities: createActivities({ sql, objects, config, log, client }),
    // Heartbeats reach the server every 2 s rather than 80% of the 20 s heartbeat timeout: after a Temporal
    // restart a live delivery's next heartbeat lands well inside the timeout, so the server does not start a
    // second attempt of the batch beside it (two sessions sending the same held mail), and a superseded attempt
    // hears so within 2 s.
    maxHeartbeatThrottleInterval: '2s',
  });
  // Spam scoring runs beside the workflows, in every worker process: claims are row locks, so several share it.
  const metrics = createScorerMetrics();
  const scorer = new Scorer({ sql, objects, config, log, client, runbooks, metrics });
  scorer.start();
  const metricsServer = serveMetrics(metrics.registry, config.worker.metricsPort, config.api.host, log);
  await ensureRetentionSchedule(client, config, log);
  if (config.monitor) await ensureMonitorSchedules(client, config, runbooks, log);
  else log.info('active monitoring is off (MXF_MONITOR=off): outages start only when mail arrives');
  log.info({ taskQueue: config.temporal.taskQueue, namespace: config.temporal.namespace }, 'worker started');
  await worker.run();
  await scorer.stop();
  metricsServer.close();
  await connection.close();
  await client.connection.close();
  await sql.end({ timeout: 5 });
  log.info('worker stopped');
}

main().catch((err) => {
  console.error(`mx-failover worker: ${(err as Error).stack ?? err}`);
  process.exit(1);
});

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { WorkflowNotFoundError } from '@temporalio/client';
import pino from 'pino';
import { type OutageWorkflow, outageWorkflowId } from '../src/domain/outage';
import { type Runbook, runbookSchema } from '../src/domain/runbook';
import { ensureMonitorSchedules, monitorScheduleId } from '../src/schedules';
import { createSql } from '../src/store/db';
import { statusQuery } from '../src/workflows/messages';
import { startCatcher } from './helpers/catcher';
import { eventually } from './helpers/eventually';
import { uniqueRunbook } from './helpers/ingest';
import { freePort } from './helpers/ports';
import { testConfig } from './helpers/stack';
import { useTemporalClient, withWorker } from './helpers/temporal';

// Active monitoring: a schedule per runbook probes the primary even when no mail arrives.
const sql = createSql(testConfig());
const temporal = useTemporalClient();
after(() => sql.end());

const monitored = (port: number): Runbook =>
  runbookSchema.parse({
    ...uniqueRunbook('harborview-law'),
    primary: [{ host: '127.0.0.1', port }],
    detection: { probeInterval: '1s', confirmAfter: '2s' },
  });

test('a silent primary is noticed with no mail at all; a healthy one starts nothing; schedules follow the runbooks', async () => {
  const down = monitored(await freePort());
  const healthyServer = await startCatcher();
  const healthy = monitored(healthyServer.port);
  const config = testConfig({ MXF_TASK_QUEUE: `monitor-${randomUUID()}` });
  const { address, namespace, taskQueue } = config.temporal;
  const log = pino({ level: 'silent' });
  try {
    await withWorker({ address, namespace, taskQueue, sql, config }, async () => {
      await ensureMonitorSchedules(temporal.client, config, [down, healthy], log);
      const outage = temporal.client.workflow.getHandle<OutageWorkflow>(outageWorkflowId(down.id));
      const status = await eventually(
        'the monitor declares the outage',
        () => outage.query(statusQuery),
        (s) => s.phase === 'awaiting-instructions',
        30_000,
      );
      assert.equal(status.heldMessages, 0);
      await outage.terminate('test finished');

      await sleep(2_500); // a few ticks of the healthy customer's schedule
      const described = await temporal.client.schedule.getHandle(monitorScheduleId(healthy.id)).describe();
      assert.ok(described.info.recentActions.length >= 1, 'the healthy customer is probed too');
      await assert.rejects(
        temporal.client.workflow.getHandle(outageWorkflowId(healthy.id)).describe(),
        WorkflowNotFoundError,
      );

      // The down customer's runbook is removed: its schedule goes; the other one stays.
      await ensureMonitorSchedules(temporal.client, config, [healthy], log);
      await assert.rejects(temporal.client.schedule.getHandle(monitorScheduleId(down.id)).describe());
      await ensureMonitorSchedules(temporal.client, config, [], log);
      await assert.rejects(temporal.client.schedule.getHandle(monitorScheduleId(healthy.id)).describe());
    });
  } finally {
    await healthyServer.close();
  }
});

import {
  type Client,
  ScheduleAlreadyRunning,
  ScheduleNotFoundError,
  ScheduleOverlapPolicy,
} from '@temporalio/client';
import type { Config } from './config';
import { durationMs, type Runbook } from './domain/runbook';
import type { Logger } from './log';
import type { monitorWorkflow } from './workflows/monitor';

const PREFIX = 'monitor:';
export const monitorScheduleId = (customerId: string) => `${PREFIX}${customerId}`;

/**
 * One Temporal Schedule per runbook runs monitorWorkflow every detection.probeInterval; visible (and pausable)
 * in the Web UI under Schedules. Kept in line with the runbooks at every worker start: created, updated when a
 * runbook changed, deleted when its runbook is gone.
 */
export async function ensureMonitorSchedules(
  client: Client,
  config: Config,
  runbooks: Runbook[],
  log: Logger,
) {
  const wanted = new Map(runbooks.map((rb) => [monitorScheduleId(rb.id), rb]));
  for (const [scheduleId, runbook] of wanted) {
    const action = {
      type: 'startWorkflow' as const,
      workflowType: 'monitorWorkflow',
      args: [{ customerId: runbook.id, runbook }] as Parameters<typeof monitorWorkflow>,
      taskQueue: config.temporal.taskQueue,
      workflowId: scheduleId,
    };
    const spec = { intervals: [{ every: durationMs(runbook.detection.probeInterval) }] };
    try {
      await client.schedule.getHandle(scheduleId).update((previous) => ({ ...previous, spec, action }));
    } catch (err) {
      if (!(err instanceof ScheduleNotFoundError)) throw err;
      await client.schedule.create({
        scheduleId,
        spec,
        action,
        policies: { overlap: ScheduleOverlapPolicy.SKIP },
      });
      log.info({ scheduleId }, 'monitor schedule created');
    }
  }
  for await (const schedule of client.schedule.list()) {
    if (schedule.scheduleId.startsWith(PREFIX) && !wanted.has(schedule.scheduleId)) {
      await client.schedule.getHandle(schedule.scheduleId).delete();
      log.info({ scheduleId: schedule.scheduleId }, 'monitor schedule of a removed runbook deleted');
    }
  }
}

export const RETENTION_SCHEDULE_ID = 'mailbox-retention';

/** One schedule for every customer: the hourly sweep of temporary mailboxes past their retention. */
export async function ensureRetentionSchedule(client: Client, config: Config, log: Logger) {
  const action = {
    type: 'startWorkflow' as const,
    workflowType: 'mailboxRetentionWorkflow',
    args: [],
    taskQueue: config.temporal.taskQueue,
    workflowId: RETENTION_SCHEDULE_ID,
  };
  const spec = { intervals: [{ every: '1h' as const }] };
  try {
    await client.schedule
      .getHandle(RETENTION_SCHEDULE_ID)
      .update((previous) => ({ ...previous, spec, action }));
  } catch (err) {
    if (!(err instanceof ScheduleNotFoundError)) throw err;
    try {
      await client.schedule.create({
        scheduleId: RETENTION_SCHEDULE_ID,
        spec,
        action,
        policies: { overlap: ScheduleOverlapPolicy.SKIP },
      });
      log.info({ scheduleId: RETENTION_SCHEDULE_ID }, 'mailbox retention schedule created');
    } catch (raced) {
      // Two workers starting together both found none; the other one made it, with the same spec and action.
      if (!(raced instanceof ScheduleAlreadyRunning)) throw raced;
    }
  }
}

import { log, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { Runbook } from '../domain/runbook';

const { probePrimary, ringOutage } = proxyActivities<Activities>({
  startToCloseTimeout: '1m',
  retry: { initialInterval: '1s', maximumInterval: '30s', maximumAttempts: 3 },
});

/**
 * Active monitoring: one short run per tick of the customer's schedule (monitor:<customer id>, every
 * detection.probeInterval). When no primary MX host answers, it starts (or joins) the outage workflow, which
 * confirms over confirmAfter as it does when mail arrives. So an outage is noticed even on a quiet Sunday.
 */
export async function monitorWorkflow(input: { customerId: string; runbook: Runbook }): Promise<boolean> {
  const probes = await probePrimary(input.runbook);
  const healthy = probes.some((p) => p.ok);
  if (!healthy) {
    log.info('no primary MX host answers; ringing the outage workflow', { customerId: input.customerId });
    await ringOutage(input.runbook);
  }
  return healthy;
}

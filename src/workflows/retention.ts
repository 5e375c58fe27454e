import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';

const { expireMailboxes } = proxyActivities<Activities>({
  startToCloseTimeout: '30m',
  retry: { initialInterval: '10s', maximumInterval: '5m', maximumAttempts: 5 },
});

/**
 * Hourly (schedule mailbox-retention): temporary mailboxes past their runbook's retention, whose mail is all on the
 * customer's own servers, are emptied and marked deleted. Returns how many.
 */
export async function mailboxRetentionWorkflow(): Promise<number> {
  return expireMailboxes();
}

import { ActivityFailure, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';

// Mail a person wrote in a temporary mailbox, on its way to outside recipients: tried as an MTA tries, for up to
// five days (what senders everywhere allow, RFC 5321 4.5.4.1), every attempt visible in the Web UI. Whoever
// refused it for good, or is still not reached after five days, the sender hears of in their inbox.
const { deliverSubmission } = proxyActivities<Activities>({
  startToCloseTimeout: '10m',
  scheduleToCloseTimeout: '5d',
  heartbeatTimeout: '1m',
  retry: { initialInterval: '1m', backoffCoefficient: 2, maximumInterval: '1h' },
});
const { giveUpSubmission } = proxyActivities<Activities>({
  startToCloseTimeout: '2m',
  retry: { initialInterval: '10s', maximumInterval: '5m' },
});

export async function submissionWorkflow(input: { messageId: string }): Promise<string> {
  try {
    return await deliverSubmission(input.messageId);
  } catch (err) {
    if (!(err instanceof ActivityFailure)) throw err;
    return giveUpSubmission(input.messageId, err.cause?.message ?? err.message);
  }
}

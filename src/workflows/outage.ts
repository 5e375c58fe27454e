import {
  allHandlersFinished,
  condition,
  continueAsNew,
  proxyActivities,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { createActivities } from '../activities';
import type { OutageInput, OutagePhase, OutageStatus } from '../domain/outage';
import { customerIdKey, heldMessagesKey, mxDomainsKey, outagePhaseKey } from '../domain/search-attributes';
import { mailHeldSignal, statusQuery } from './messages';

const { countHeldMessages } = proxyActivities<ReturnType<typeof createActivities>>({
  startToCloseTimeout: '30s',
  retry: { initialInterval: '1s', maximumInterval: '1m' },
});

// Signals per run stay far below Temporal's 10,000 cap because ingest debounces its doorbell; continue-as-new
// well before it anyway, since the server does not suggest it for signal counts.
const MAX_RINGS_PER_RUN = 5_000;

/**
 * The outage of one customer. This is the skeleton that issue 4 grows into detect -> notify -> instructions ->
 * forward / redirect / hold -> restore: today it only keeps the held-mail count and its search attributes current.
 */
export async function outageWorkflow(input: OutageInput): Promise<OutageStatus> {
  const status: OutageStatus = {
    customerId: input.customerId,
    phase: input.carried?.phase ?? 'detecting',
    heldMessages: input.carried?.heldMessages ?? 0,
    doorbellRings: 0,
  };
  let pendingRings = 0;
  setHandler(statusQuery, () => status, { description: 'Phase and held-mail count of this outage' });
  setHandler(
    mailHeldSignal,
    () => {
      pendingRings++;
      status.doorbellRings++;
    },
    { description: 'Ingest committed held mail for this customer' },
  );

  const setPhase = (phase: OutagePhase) => {
    status.phase = phase;
    upsertSearchAttributes([{ key: outagePhaseKey, value: phase }]);
  };
  upsertSearchAttributes([
    { key: customerIdKey, value: input.customerId },
    { key: mxDomainsKey, value: input.runbook.domains },
  ]);
  setPhase(status.phase);

  while (
    status.phase !== 'closed' &&
    status.doorbellRings < MAX_RINGS_PER_RUN &&
    !workflowInfo().continueAsNewSuggested
  ) {
    await condition(() => pendingRings > 0);
    pendingRings = 0;
    const held = await countHeldMessages(input.customerId);
    if (held !== status.heldMessages) {
      status.heldMessages = held;
      upsertSearchAttributes([{ key: heldMessagesKey, value: held }]);
    }
  }
  if (status.phase === 'closed') return status;
  await condition(allHandlersFinished);
  return continueAsNew<typeof outageWorkflow>({
    ...input,
    carried: { phase: status.phase, heldMessages: status.heldMessages },
  });
}

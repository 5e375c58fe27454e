import {
  ActivityFailure,
  type ActivityOptions,
  ApplicationFailure,
  condition,
  patched,
  proxyActivities,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import {
  DELIVERY_DEFERRED,
  type DeliveryBatchOutcome,
  type DeliveryBatchResult,
  type DeliveryError,
  type DeliveryPace,
  type DeliveryStopped,
  type DeliveryTarget,
  describeTarget,
  REFUSED_KEPT,
  type TargetDelivery,
  targetKey,
} from '../domain/delivery';
import type { OutageCounts } from '../domain/outage';
import type { OutageRun } from './outage-run';

// A target that stays down is the workflow's matter (wait, probe, maybe change course): the activity reports a
// 4xx or a network error at once, with what it did before it, and the outage shows it and schedules the next try.
// Its own retries are only for a worker that died (the heartbeat stops) or failed in some other way.
const DELIVERY: ActivityOptions = {
  startToCloseTimeout: '15m',
  // The activity heartbeats every 5 s, also during a slow send: a killed worker is noticed within 20 s.
  heartbeatTimeout: '20s',
  retry: { initialInterval: '1s', maximumInterval: '10s', maximumAttempts: 3 },
};
const { deliverBatch } = proxyActivities<Activities>(DELIVERY);
const BATCH = 500;

/**
 * Delivers everything held to `target`, batch by batch, until none is left (true) or the course changes or the
 * target stops taking mail (false). Each batch's outcome goes into the target's delivery state. A forward or a
 * redirect that has gone on for a probe interval returns 'probe-due': a paced backlog takes hours, and the primary
 * is still probed on the runbook's interval, so that restore.mode auto notices it back.
 */
export async function drain(
  run: OutageRun,
  target: DeliveryTarget,
  counter: keyof OutageCounts,
): Promise<boolean | 'probe-due'> {
  const { runbook, s } = run;
  const startedAt = Date.now();
  const state = deliveryStateOf(run, target);
  // A restore, and a redirect (a server of the customer's, maybe just set up), go at the runbook's rate.
  const ratePerSecond =
    (target.kind === 'primary' && s.declaredAt) || target.kind === 'redirect'
      ? runbook.restore.ratePerSecond
      : undefined;
  for (let batch = 1; ; batch++) {
    let result: Awaited<ReturnType<Activities['deliverBatch']>>;
    try {
      result = await deliverBatch.executeWithOptions(
        { ...DELIVERY, summary: `Deliver up to ${BATCH} to ${state.description}` },
        [{ runbook, target, limit: BATCH, ratePerSecond, ...mailboxesOf(run, target) }],
      );
    } catch (err) {
      await run.recount();
      recordStopped(run, state, counter, stoppedBy(err));
      run.describe();
      return false; // the target is not taking mail now; the caller waits and tries again
    }
    // Counting what is held scans the backlog: while a large one drains, once every 10 batches (the Web UI's
    // count lags by at most that), and always at the end. Runs recorded before this recount after each batch.
    // The count comes first, so that a query never sees a batch's delivered count beside the held count before it.
    const done = result.remaining === 0 || run.courseChanged;
    if (!patched('recount-every-10-batches') || done || batch % 10 === 0) await run.recount();
    recordBatch(run, state, counter, result);
    run.describe();
    if (done) return result.remaining === 0;
    await waitForPace(run, result);
    await run.continueIfLong();
    const probeDue = target.kind !== 'primary' && Date.now() - startedAt >= run.probeEvery;
    if (probeDue && patched('probe-during-long-drain')) return 'probe-due';
  }
}

/** Temporary mailboxes are provisioned for this outage (older histories have no such input). */
const mailboxesOf = (run: OutageRun, target: DeliveryTarget) =>
  target.kind === 'mailboxes' ? { outageId: run.s.outageId } : {};

/**
 * A paced forward whose next slot is far off (its receiver slowed us down, or a low rate): the workflow's timer
 * waits, not the activity, and a new instruction cuts it short.
 */
async function waitForPace(run: OutageRun, result: DeliveryBatchResult) {
  const until = result.pace?.pausedUntil;
  if (!until) return;
  const wait = Date.parse(until) - Date.now();
  if (wait > 0)
    await condition(() => run.courseChanged, wait, {
      summary: `Paced: next copy at ${until} (${result.pace!.ratePerMinute.toFixed(2)}/min)`,
    });
}

/** The target's entry in the status, created on first use; the one delivering now is the one in force. */
function deliveryStateOf(run: OutageRun, target: DeliveryTarget): TargetDelivery {
  const key = targetKey(target, run.runbook);
  let state = run.s.deliveries.find((d) => d.key === key);
  if (!state) {
    state = {
      key,
      description: describeTarget(target, run.runbook),
      inForce: true,
      delivered: 0,
      failed: 0,
      attempts: 0,
      failedAttempts: 0,
      lastAttemptAt: null,
      failingSince: null,
      lastError: null,
      nextAttemptAt: null,
      refused: [],
    };
    run.s.deliveries.push(state);
  }
  for (const d of run.s.deliveries) d.inForce = d === state;
  return state;
}

/** What a failed batch did and why it stopped: our activity's details, or the failure's own words. */
function stoppedBy(err: unknown): DeliveryStopped {
  const cause = err instanceof ActivityFailure ? err.cause : err;
  if (cause instanceof ApplicationFailure && cause.type === DELIVERY_DEFERRED && cause.details?.length)
    return cause.details[0] as DeliveryStopped;
  const message = (cause instanceof Error && cause.message) || String(err);
  const error: DeliveryError = { at: new Date().toISOString(), replyCode: null, message };
  return { delivered: 0, failed: 0, refused: [], deferred: null, error };
}

function count(run: OutageRun, state: TargetDelivery, counter: keyof OutageCounts, o: DeliveryBatchOutcome) {
  run.s.counts[counter] = (run.s.counts[counter] ?? 0) + o.delivered;
  run.s.counts.failed += o.failed;
  state.delivered += o.delivered;
  state.failed += o.failed;
  // Batches recorded before refused recipients were reported have none.
  state.refused = [...state.refused, ...(o.refused ?? [])].slice(-REFUSED_KEPT);
  state.attempts++;
  state.lastAttemptAt = new Date().toISOString();
}

function recordBatch(
  run: OutageRun,
  state: TargetDelivery,
  counter: keyof OutageCounts,
  o: DeliveryBatchResult,
) {
  count(run, state, counter, o);
  if (o.mailboxes) run.s.mailboxes = o.mailboxes;
  Object.assign(state, {
    failedAttempts: 0,
    failingSince: null,
    nextAttemptAt: o.pace?.pausedUntil ?? null,
    // Some recipients deferred while others went through: worth showing, not a failing target.
    lastError: o.deferred?.error ?? null,
  });
  // Counts of 1,000 and more are capped (a restore's); the outage's held count is then the better figure.
  const remaining = o.remaining < 1_000 ? o.remaining : Math.max(o.remaining, run.s.heldMessages);
  if (o.pace) state.pace = paceOf(o.pace.ratePerMinute, remaining, o.pace.pausedUntil);
}

/** Sent / remaining, the rate in force and an estimated finish: what a person plans with. */
function paceOf(ratePerMinute: number, remaining: number, from: string | null): DeliveryPace {
  const start = from ? Date.parse(from) : Date.now();
  return {
    ratePerMinute: Math.round(ratePerMinute * 100) / 100,
    remaining,
    estimatedFinishAt: new Date(start + (remaining / ratePerMinute) * 60_000).toISOString(),
  };
}

/** The next try comes one probe interval later, in step with the probe of the primary. */
function recordStopped(
  run: OutageRun,
  state: TargetDelivery,
  counter: keyof OutageCounts,
  o: DeliveryStopped,
) {
  count(run, state, counter, o);
  state.failedAttempts++;
  state.failingSince ??= o.error.at;
  state.lastError = o.error;
  // A receiver that asked us to slow down is not tried before it said; otherwise with the next probe.
  const next = Math.max(Date.now() + run.probeEvery, o.retryAt ? Date.parse(o.retryAt) : 0);
  state.nextAttemptAt = new Date(next).toISOString();
}

/** The delivery in force is failing: the caller waits for its next attempt rather than for new mail. */
export const failing = (run: OutageRun) => run.s.deliveries.some((d) => d.inForce && d.failedAttempts > 0);

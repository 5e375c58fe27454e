import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { WorkflowHandle } from '@temporalio/client';
import type { MailHeld, OutageInput, OutageWorkflow } from '../src/domain/outage';
import type { Runbook } from '../src/domain/runbook';
import { createSql } from '../src/store/db';
import { commitHeldMessage } from '../src/store/messages';
import { outageStart } from '../src/temporal';
import { declareUpdate, instructUpdate, mailHeldSignal, statusQuery } from '../src/workflows/messages';
import { messageIdsOf, startCatcher } from './helpers/catcher';
import { eventually } from './helpers/eventually';
import { heldMessage } from './helpers/fixtures';
import { holdBacklog } from './helpers/held';
import { freePort } from './helpers/ports';
import { runbookWithPrimaryAt } from './helpers/runbooks';
import { testConfig } from './helpers/stack';
import { useTemporalClient, withQueueWorker } from './helpers/temporal';
import { startWebhookReceiver } from './helpers/webhook';

// Continue-as-new on the doorbell's path: a run continues as new after so many rings (5,000 in production, a few
// here through the workflow's input), at whatever step it is: awaiting instructions, holding, between two batches of
// a large backlog. The new run carries the state and goes on, and a request retried with its requestId after the
// continue-as-new (which resets Temporal's own update dedupe) is answered, not applied again.
const temporal = useTemporalClient();
const sql = createSql(testConfig());
after(() => sql.end());

const RINGS = 3;
const GMAIL = 'office.backup@gmail.example';

/** Starts the outage with its first ring, continuing as new after RINGS rings per run. */
function startOutage(taskQueue: string, runbook: Runbook) {
  const start = outageStart(taskQueue, runbook);
  const input: OutageInput = { ...start.args[0], ringsPerRun: RINGS };
  return temporal.client.workflow.signalWithStart<OutageWorkflow, [MailHeld]>('outageWorkflow', {
    ...start,
    args: [input],
    signal: mailHeldSignal,
    signalArgs: [{ acceptedSinceLastRing: 1 }],
  });
}

type Outage = WorkflowHandle<OutageWorkflow>;

/** The latest run's id and status (all a failed wait needs to show). */
const currentRun = (handle: Outage) =>
  handle.describe().then((d) => ({ runId: d.runId, status: d.status.name }));

/** RINGS rings, each for a message held (as a row only: nothing delivers it), then the next run's id. */
async function ringIntoNewRun(handle: Outage, runbook: Runbook): Promise<string> {
  const { runId } = await handle.describe();
  for (let i = 0; i < RINGS; i++) {
    await commitHeldMessage(sql, heldMessage(runbook.id, [(runbook.recipients as string[])[0]!]));
    await handle.signal(mailHeldSignal, { acceptedSinceLastRing: 1 });
  }
  const next = await eventually(
    `continued as new after ${RINGS} rings`,
    () => currentRun(handle),
    (run) => run.runId !== runId && run.status === 'RUNNING',
  );
  return next.runId;
}

/** The input a run handed to the next one: what continue-as-new carried, from the run's history. */
async function carriedBy(workflowId: string, runId: string): Promise<OutageInput> {
  const history = await temporal.client.workflow.getHandle(workflowId, runId).fetchHistory();
  const event = history.events?.find((e) => e.workflowExecutionContinuedAsNewEventAttributes);
  const payload = event?.workflowExecutionContinuedAsNewEventAttributes?.input?.payloads?.[0]?.data;
  assert.ok(payload, `run ${runId} continued as new`);
  return JSON.parse(Buffer.from(payload).toString());
}

test('rings continue an outage as new while it awaits instructions and while it holds; retried requests apply once', async () => {
  const webhook = await startWebhookReceiver();
  const runbook = runbookWithPrimaryAt(await freePort(), {
    detection: { probeInterval: '1s', confirmAfter: '1h' },
    notify: [
      { after: '0s', channels: ['ops-call', 'webhook'] },
      { after: '1h', channels: ['webhook'] },
    ],
  });
  try {
    await withQueueWorker(sql, { MXF_NOTIFY_WEBHOOK_URL: webhook.url }, async (taskQueue) => {
      const handle = await startOutage(taskQueue, runbook);
      const declaration = { actor: 'ops:alice', note: 'flooded', requestId: 'declare-1' };
      const declared = await handle.executeUpdate(declareUpdate, { args: [declaration] });
      await eventually(
        'the first step',
        () => handle.query(statusQuery),
        (s) => s.notifications.length === 1,
      );

      await ringIntoNewRun(handle, runbook);
      const again = await handle.executeUpdate(declareUpdate, { args: [declaration] });
      assert.equal(again.declaredAt, declared.declaredAt, 'the retried declaration is answered, not refused');
      assert.equal(again.phase, 'awaiting-instructions');
      assert.equal(again.callTasks.length, 1, 'the open call task came along');
      assert.equal(again.notifications.length, 1, 'and the escalation where it was');

      const hold = { action: 'hold' as const, actor: 'ops:bob', requestId: 'hold-1' };
      await handle.executeUpdate(instructUpdate, { args: [hold] });
      await eventually(
        'holding',
        () => handle.query(statusQuery),
        (s) => s.phase === 'holding',
      );
      await ringIntoNewRun(handle, runbook);
      const held = await handle.executeUpdate(instructUpdate, { args: [hold] });
      assert.deepEqual(
        held.history.map((h) => `${h.instruction.action} ${h.instruction.requestId}`),
        ['hold hold-1'],
        'the retried instruction is in the history once',
      );
      const status = await eventually(
        'every message held counted',
        () => handle.query(statusQuery),
        (s) => s.heldMessages === 2 * RINGS,
      );
      assert.equal(status.doorbellRings, 1 + 2 * RINGS, 'the rings of every run, counted on');
      assert.equal(status.phase, 'holding');
      assert.equal(status.declaredBy, 'ops:alice');
      assert.equal(webhook.received.length, 1, 'no new run notified again');
      await handle.terminate('test finished');
    });
  } finally {
    await webhook.close();
  }
});

test('a large backlog continues as new between batches, delivers each message once, and a retried forward applies once', async () => {
  const MESSAGES = 1_000; // two batches of 500
  const runbook = runbookWithPrimaryAt(await freePort(), {
    detection: { probeInterval: '1s', confirmAfter: '1h' },
  });
  const recipient = (runbook.recipients as string[])[0]!;
  const backlog = await holdBacklog(sql, runbook.id, [recipient], MESSAGES);
  let handle: Outage | undefined;
  // Mail keeps coming during the first batch: at its 100th message, the Gmail stand-in waits for RINGS rings.
  const ringing: string[] = [];
  const gmail = await startCatcher({
    async beforeReply(stage, index) {
      if (stage !== 'data' || index !== 100) return;
      for (let i = 0; i < RINGS; i++) {
        ringing.push(...(await holdBacklog(sql, runbook.id, [recipient], 1)).messageIds);
        await handle!.signal(mailHeldSignal, { acceptedSinceLastRing: 1 });
      }
    },
  });
  try {
    await withQueueWorker(sql, { MXF_SMTP_RELAY: `127.0.0.1:${gmail.port}` }, async (taskQueue) => {
      handle = await startOutage(taskQueue, runbook);
      await handle.executeUpdate(declareUpdate, { args: [{ actor: 'ops:alice' }] });
      const { runId: first } = await handle.describe();
      const forward = { action: 'forward' as const, to: [GMAIL], actor: 'ops:alice', requestId: 'forward-1' };
      await handle.executeUpdate(instructUpdate, { args: [forward] });
      await eventually(
        'continued as new',
        () => currentRun(handle!),
        (run) => run.runId !== first,
        60_000,
      );
      const retried = await handle.executeUpdate(instructUpdate, { args: [forward] });
      assert.equal(retried.history.length, 1, 'the retried forward is in the history once');

      const expected = [...backlog.messageIds, ...ringing];
      const status = await eventually(
        'the backlog and the new mail forwarded',
        () => handle!.query(statusQuery),
        (s) => s.counts.forwarded === expected.length,
        60_000,
      );
      assert.equal(status.heldMessages, 0);
      assert.equal(status.history.length, 1);
      const carried = (await carriedBy(handle.workflowId, first)).carried!;
      assert.equal(carried.phase, 'forwarding', 'the first run continued as new while forwarding');
      assert.ok(
        carried.counts.forwarded > 0 && carried.counts.forwarded < MESSAGES,
        `between batches, mid-drain: ${carried.counts.forwarded} of ${MESSAGES} forwarded by the first run`,
      );
      assert.deepEqual(messageIdsOf(gmail.caught), expected, 'each message once, in arrival order');
      await handle.terminate('test finished');
    });
  } finally {
    await gmail.close();
  }
});

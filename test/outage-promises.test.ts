import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Runbook } from '../src/domain/runbook';
import { createSql } from '../src/store/db';
import { ringOutage } from '../src/temporal';
import { declareUpdate, instructUpdate, recordCallUpdate, statusQuery } from '../src/workflows/messages';
import { messageIdsOf, startCatcher } from './helpers/catcher';
import { eventually } from './helpers/eventually';
import { holdBacklog } from './helpers/held';
import { freePort } from './helpers/ports';
import { runbookWithPrimaryAt } from './helpers/runbooks';
import { testConfig } from './helpers/stack';
import { useTemporalClient, withQueueWorker } from './helpers/temporal';
import { startWebhookReceiver } from './helpers/webhook';

// Promises of the README's "Outage workflow" that only a clock can check: the pace of a restore, and when the
// escalation steps go out (and that they stop once someone is reached). Real Temporal, a real worker with the real
// activities, PostgreSQL and MinIO; local SMTP servers for the primary and the relay, an HTTP one for the webhook.
// The bounds leave a loaded 2-core machine room to be slow, but not room for the promise to be broken.
const temporal = useTemporalClient();
const sql = createSql(testConfig());
after(() => sql.end());

/** No probe declares these outages (confirmAfter 1 h): each test declares by hand, at a moment it knows. */
const runbookAt = (primaryPort: number, overrides: Partial<Runbook> = {}) =>
  runbookWithPrimaryAt(primaryPort, { detection: { probeInterval: '1s', confirmAfter: '1h' }, ...overrides });

test('a restore goes at restore.ratePerSecond: 50 messages at 10 a second reach the primary over about 5 s', async (t) => {
  const MESSAGES = 50;
  const primaryPort = await freePort();
  const runbook = runbookAt(primaryPort, { restore: { mode: 'approval', ratePerSecond: 10 } });
  const backlog = await holdBacklog(sql, runbook.id, [(runbook.recipients as string[])[0]!], MESSAGES);
  let primary: Awaited<ReturnType<typeof startCatcher>> | undefined;
  try {
    await withQueueWorker(sql, {}, async (taskQueue) => {
      const handle = await ringOutage(temporal.client, taskQueue, runbook, MESSAGES);
      await handle.executeUpdate(declareUpdate, { args: [{ actor: 'ops:alice' }] });
      // Declared before the primary is up, so no probe finds it and relays the mail unpaced.
      primary = await startCatcher({ port: primaryPort });
      await handle.executeUpdate(instructUpdate, { args: [{ action: 'restore', actor: 'ops:alice' }] });
      const result = await handle.result();
      assert.equal(result.counts.restored, MESSAGES);
    });
    const caught = primary!.caught;
    assert.deepEqual(messageIdsOf(caught), backlog.messageIds, 'each message once, in arrival order');
    // 49 intervals of 100 ms between the first arrival and the last: 4.9 s at the promised pace.
    const spanMs = caught.at(-1)!.at - caught[0]!.at;
    t.diagnostic(`first to last arrival: ${spanMs} ms`);
    assert.ok(
      spanMs >= 4_500 && spanMs <= 6_000,
      `50 messages at 10 a second take 4.5 to 6 s from first to last arrival, not ${spanMs} ms`,
    );
  } finally {
    await primary?.close();
  }
});

test('escalation steps go out at their offsets from the declaration, and a call recorded as reached stops the rest', async (t) => {
  const relay = await startCatcher(); // notification emails leave through it
  const webhook = await startWebhookReceiver();
  const runbook = runbookAt(await freePort(), {
    notify: [
      { after: '0s', channels: ['email', 'ops-call'] },
      { after: '3s', channels: ['webhook'] },
      { after: '6s', channels: ['email', 'webhook'] },
      { after: '9s', channels: ['email', 'webhook'] }, // never: someone is reached before it is due
    ],
  });
  const env = { MXF_SMTP_RELAY: `127.0.0.1:${relay.port}`, MXF_NOTIFY_WEBHOOK_URL: webhook.url };
  try {
    await withQueueWorker(sql, env, async (taskQueue) => {
      const handle = await ringOutage(temporal.client, taskQueue, runbook, 0);
      // Declared a while after the outage started, so offsets counted from its start would show.
      await eventually(
        'a first probe',
        () => handle.query(statusQuery),
        (s) => s.lastProbe.length > 0,
      );
      await sleep(2_000);
      const declared = await handle.executeUpdate(declareUpdate, { args: [{ actor: 'ops:alice' }] });
      const declaredAt = Date.parse(declared.declaredAt!);
      await eventually(
        'three steps out',
        () => handle.query(statusQuery),
        (s) => s.notifications.length === 3,
        20_000,
      );
      const reached = await handle.executeUpdate(recordCallUpdate, {
        args: [{ taskId: 'call-1', outcome: 'reached', actor: 'ops:alice' }],
      });
      assert.equal(reached.acknowledged, true);
      // Past the fourth step's offset, with room for it to have been late.
      await sleep(Math.max(declaredAt + 12_000 - Date.now(), 0));
      const status = await handle.query(statusQuery);
      await handle.terminate('test finished');

      const offsets = (arrivals: number[]) => arrivals.map((at) => at - declaredAt);
      const webhookAt = offsets(webhook.received.map((r) => r.at));
      const emailAt = offsets(relay.caught.map((m) => m.at));
      t.diagnostic(`after the declaration: webhooks at ${webhookAt} ms, emails at ${emailAt} ms`);
      const late = 2_000;
      const onTime = (ms: number[], due: number[]) =>
        ms.length === due.length && ms.every((m, i) => m >= due[i]! - 100 && m <= due[i]! + late);
      assert.deepEqual(
        status.notifications.map((n) => n.step),
        [0, 1, 2],
        'three steps, the fourth stopped by the call that reached someone',
      );
      assert.deepEqual(
        webhook.received.map((r) => r.body.step),
        [1, 2],
      );
      assert.ok(onTime(webhookAt, [3_000, 6_000]), `webhooks due at 3 s and 6 s arrived at ${webhookAt} ms`);
      assert.ok(onTime(emailAt, [0, 6_000]), `emails due at 0 s and 6 s arrived at ${emailAt} ms`);
    });
  } finally {
    await relay.close();
    await webhook.close();
  }
});

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { outageDetail } from '../src/cli/render';
import { outageWorkflowId } from '../src/domain/outage';
import { countHeldMessages } from '../src/store/held';
import { startOpsStack } from './helpers/api';
import { startCatcher } from './helpers/catcher';
import { eventually } from './helpers/eventually';
import { freePort } from './helpers/ports';
import { runbookWithPrimaryAt } from './helpers/runbooks';
import { transaction } from './helpers/smtp-client';
import { recordHistory, useTemporalClient } from './helpers/temporal';

// What an operator sees of delivery: the last error and the next attempt of a target that does not take mail,
// the recipients a target refused for good, and a held count that agrees with what the next delivery sends.
// Real ingest, API, Temporal worker, PostgreSQL and MinIO; local SMTP servers as the relay and the targets.

const temporal = useTemporalClient();
const GMAIL = 'office.backup@gmail.example';
const PROBE_MS = 3_000;

/** Probes on a slower clock, so "within one probe interval" means something. */
const runbookAt = (primaryPort: number) =>
  runbookWithPrimaryAt(primaryPort, {
    detection: { probeInterval: `${PROBE_MS / 1000}s`, confirmAfter: `${PROBE_MS / 1000}s` },
    restore: { mode: 'approval', ratePerSecond: 50 },
  });

async function hold(port: number, to: string[], subject: string) {
  const r = await transaction(port, {
    from: 'clerk@court.example',
    to,
    // Headers a real mail has: without them rspamd scores it as spam, and a forward would rightly leave it.
    data: [
      'From: Court Clerk <clerk@court.example>',
      `To: ${to.join(', ')}`,
      `Date: ${new Date().toUTCString()}`,
      `Message-ID: <${randomUUID()}@court.example>`,
      `Subject: ${subject}`,
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      '',
      `The hearing about ${subject} is moved to Monday.`,
    ].join('\r\n'),
  });
  assert.match(r.end ?? '', /^250/, `the backup MX took "${subject}"`);
}

test('a forward whose relay refuses connections names the error and the next attempt, then delivers once it is up', async () => {
  const relayPort = await freePort(); // nothing listens yet
  const runbook = runbookAt(await freePort());
  const stack = await startOpsStack([runbook], { client: temporal.client, relayPort });
  const { call } = stack.api;
  const [to] = runbook.recipients as string[];
  let relay: Awaited<ReturnType<typeof startCatcher>> | undefined;
  try {
    await stack.run(async () => {
      await hold(stack.ingest.port, [to!], 'first');
      await hold(stack.ingest.port, [to!], 'second');
      await eventually(
        'the outage',
        () => call('GET', `/api/outages/${runbook.id}`),
        (r) => r.status === 200,
      );
      const instructed = await call('POST', `/api/outages/${runbook.id}/instructions`, {
        body: { action: 'forward', to: [GMAIL] },
      });
      assert.equal(instructed.status, 200, instructed.text);
      const since = Date.now();
      const failing = await eventually(
        'the relay error in the outage view',
        () => call('GET', `/api/outages/${runbook.id}`, { as: 'viewer' }),
        (r) => r.json?.deliveries?.[0]?.lastError != null,
        PROBE_MS,
      );
      const seenAfter = Date.now() - since;
      assert.ok(seenAfter < PROBE_MS, `the error shows within one probe interval (${seenAfter} ms)`);
      const d = failing.json.deliveries[0];
      assert.equal(failing.json.phase, 'forwarding');
      assert.equal(d.description, `forward to ${GMAIL}`);
      assert.equal(d.inForce, true);
      assert.match(d.lastError.message, new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${relayPort}`));
      assert.equal(d.lastError.replyCode, null, 'a network error, not a reply');
      assert.ok(d.failedAttempts >= 1 && d.failingSince, 'attempts and since when');
      const next = Date.parse(d.nextAttemptAt);
      assert.ok(
        next > Date.parse(d.lastError.at) && next <= Date.now() + PROBE_MS,
        `next attempt ${d.nextAttemptAt}`,
      );
      assert.equal(failing.json.heldMessages, 2);
      const shown = outageDetail(failing.json);
      assert.match(shown, /forward to office\.backup@gmail\.example\s+yes\s+0\s+0/);
      assert.match(shown, /ECONNREFUSED/, `mxf outages show names the error:\n${shown}`);
      // The Web UI shows the workflow's current details, read through the same built-in metadata query.
      const handle = temporal.client.workflow.getHandle(outageWorkflowId(runbook.id));
      const metadata = await handle.query<{ currentDetails?: string }>('__temporal_workflow_metadata');
      assert.match(metadata.currentDetails ?? '', /\*\*failing\*\* since .*ECONNREFUSED.*next attempt 20/);

      relay = await startCatcher({ port: relayPort });
      const recovered = await eventually(
        'delivery once the relay is up',
        () => call('GET', `/api/outages/${runbook.id}`, { as: 'viewer' }),
        (r) => r.json?.deliveries?.[0]?.delivered === 2,
        4 * PROBE_MS,
      );
      const after = recovered.json.deliveries[0];
      assert.equal(after.lastError, null, 'the error is cleared');
      assert.equal(after.failedAttempts, 0);
      assert.equal(after.nextAttemptAt, null);
      assert.equal(after.failingSince, null);
      assert.equal(recovered.json.counts.forwarded, 2);
      assert.equal(relay.caught.length, 2, 'each message forwarded once');
      assert.ok(relay.caught.every((c) => c.to.join() === GMAIL));
      await recordHistory('outage-forward-relay-down', { workflowId: outageWorkflowId(runbook.id) });
    });
  } finally {
    await relay?.close();
    await stack.close();
  }
});

test('a target that refuses one recipient: the status names it with the reply; held count and the next delivery agree', async () => {
  const [gmail, primaryPort] = [await startCatcher(), await freePort()];
  const runbook = runbookAt(primaryPort);
  const [good, bad] = runbook.recipients as string[];
  const drSite = await startCatcher({ refuse: (rcpt) => (rcpt === bad ? 550 : undefined) });
  const stack = await startOpsStack([runbook], { client: temporal.client, relayPort: gmail.port });
  const { call } = stack.api;
  let primary: Awaited<ReturnType<typeof startCatcher>> | undefined;
  const view = () => call('GET', `/api/outages/${runbook.id}`, { as: 'viewer' });
  try {
    await stack.run(async () => {
      await hold(stack.ingest.port, [good!, bad!], 'to both');
      await hold(stack.ingest.port, [good!], 'to one');
      await eventually('the outage', view, (r) => r.status === 200);
      const redirect = { action: 'redirect', host: '127.0.0.1', port: drSite.port };
      assert.equal(
        (await call('POST', `/api/outages/${runbook.id}/instructions`, { body: redirect })).status,
        200,
      );
      const done = await eventually(
        'the redirect and its recount',
        view,
        // The redirect waits for the spam scores: done once both are scored and nothing is held for it.
        (r) =>
          r.json?.deliveries?.[0]?.delivered >= 2 && r.json.heldMessages === 0 && r.json.spam?.unscored === 0,
        10_000,
      );
      const d = done.json.deliveries[0];
      assert.equal(d.delivered, 2, 'good@ twice');
      assert.equal(d.failed, 1);
      assert.equal(d.refused.length, 1);
      assert.equal(d.refused[0].recipient, bad);
      assert.match(d.refused[0].reply, /^550 /);
      assert.match(outageDetail(done.json), new RegExp(`${bad!.replace(/\./g, '\\.')}.*550`));
      // Refused there, so not held for that target: the count and what a delivery there would send agree.
      const redirectKey = d.key as string;
      assert.equal(done.json.heldMessages, 0);
      assert.equal(await countHeldMessages(stack.ingest.sql, runbook.id, redirectKey), 0);
      assert.deepEqual(
        drSite.caught.map((c) => c.to),
        [[good], [good]],
      );

      // Still held for the customer's own server: the count says one, and the restore sends exactly that one.
      const holdIt = await call('POST', `/api/outages/${runbook.id}/instructions`, {
        body: { action: 'hold' },
      });
      assert.equal(holdIt.json.phase, 'holding');
      const holding = await eventually('the count for the primary', view, (r) => r.json?.heldMessages === 1);
      assert.equal(holding.json.heldMessages, 1);
      primary = await startCatcher({ port: primaryPort });
      await call('POST', `/api/outages/${runbook.id}/instructions`, { body: { action: 'restore' } });
      const closed = await eventually('the restore', view, (r) => r.json?.phase === 'closed', 10_000);
      assert.deepEqual(
        primary.caught.map((c) => c.to),
        [[bad]],
        'the restore sends what was counted',
      );
      assert.equal(closed.json.counts.restored, 1);
      assert.equal(closed.json.heldMessages, 0);
    });
  } finally {
    await Promise.allSettled([primary?.close(), gmail.close(), drSite.close()]);
    await stack.close();
  }
});

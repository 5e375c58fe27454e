import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { WorkflowUpdateFailedError } from '@temporalio/client';
import { type OutageWorkflow, outageWorkflowId } from '../src/domain/outage';
import { type Runbook, runbookSchema } from '../src/domain/runbook';
import { instructUpdate, recordCallUpdate, statusQuery } from '../src/workflows/messages';
import { stripArcSet } from './helpers/arc-set';
import { startCatcher } from './helpers/catcher';
import { FORWARDING_DOMAIN } from './helpers/dns-zone';
import { eventually } from './helpers/eventually';
import { readHeld, startIngest, type TestIngest, uniqueRunbook } from './helpers/ingest';
import { freePort } from './helpers/ports';
import { transaction } from './helpers/smtp-client';
import { recordHistory, useTemporalClient, withWorker } from './helpers/temporal';
import { startWebhookReceiver } from './helpers/webhook';

// Whole outages through SMTP, real Temporal, a real worker, PostgreSQL and MinIO, with runbook timings in seconds.
// Local SMTP servers stand in for the customer's primary MX and for Gmail.
const temporal = useTemporalClient();

const FORWARD_TO = 'forwarded.mail@gmail.example';

function fastRunbook(primaryPort: number, overrides: Partial<Runbook> = {}): Runbook {
  return runbookSchema.parse({
    ...uniqueRunbook('harborview-law'),
    primary: [{ host: '127.0.0.1', port: primaryPort }],
    detection: { probeInterval: '1s', confirmAfter: '2s' },
    instructions: { default: { after: '60s', action: 'hold' } },
    restore: { mode: 'auto', ratePerSecond: 50 },
    ...overrides,
  });
}

async function stack(runbook: Runbook, env: Record<string, string> = {}) {
  const ingest = await startIngest([runbook], {
    env: { MXF_TASK_QUEUE: `e2e-${randomUUID()}`, MXF_DOORBELL_MS: '50', ...env },
    temporal: temporal.client,
  });
  return { config: ingest.config, ingest };
}

async function send(ingest: TestIngest, to: string, subject: string): Promise<Buffer> {
  const r = await transaction(ingest.port, {
    from: 'sender@origin.example',
    to: [to],
    // Headers a real mail has: without them rspamd scores it as spam, and a forward would rightly leave it.
    data: [
      'From: Sender <sender@origin.example>',
      `To: ${to}`,
      `Date: ${new Date().toUTCString()}`,
      `Message-ID: <${randomUUID()}@origin.example>`,
      `Subject: ${subject}`,
      '',
      `About ${subject}.`,
    ].join('\r\n'),
  });
  const queueId = /queued as (\w+)/.exec(r.end ?? '')?.[1];
  assert.ok(queueId, r.end);
  const [row] = await ingest.sql<{ object_key: string; body_offset: string; size_bytes: string }[]>`
    select object_key, body_offset, size_bytes from held_message where queue_id = ${queueId}`;
  return readHeld(ingest, row!);
}

test('primary healthy: mail at the backup is relayed to it at once, and no outage is declared', async () => {
  const primary = await startCatcher();
  const runbook = fastRunbook(primary.port);
  const { config, ingest } = await stack(runbook);
  const { address, namespace, taskQueue } = config.temporal;
  try {
    await withWorker({ address, namespace, taskQueue, sql: ingest.sql, config }, async () => {
      const started = Date.now();
      const stored = await send(ingest, (runbook.recipients as string[])[0]!, 'relay me');
      const handle = temporal.client.workflow.getHandle<OutageWorkflow>(outageWorkflowId(runbook.id));
      await eventually('the doorbell starts the workflow', () => handle.describe().then(() => true), Boolean);
      const result = await handle.result();
      await recordHistory('outage-primary-healthy', handle);
      assert.ok(Date.now() - started < 10_000, 'within seconds');
      assert.equal(result.phase, 'closed');
      assert.equal(result.declaredAt, null, 'no outage');
      assert.equal(result.counts.relayed, 1);
      assert.equal(primary.caught.length, 1);
      assert.ok(primary.caught[0]!.raw.equals(stored), 'the primary receives the stored bytes');
    });
  } finally {
    await ingest.close();
    await primary.close();
  }
});

test('outage: declared, forwarded byte for byte (new mail too), held, restored when the primary returns, resolved', async () => {
  const primaryPort = await freePort(); // nothing listens: the primary is down
  const gmail = await startCatcher(); // also the relay that notification emails leave through
  const forwarded = () => gmail.caught.filter((m) => m.to.includes(FORWARD_TO));
  const webhook = await startWebhookReceiver();
  const runbook = fastRunbook(primaryPort, {
    notify: [
      { after: '0s', channels: ['ops-call', 'email'] },
      { after: '1s', channels: ['webhook'] },
      { after: '10m', channels: ['sms'] },
    ],
  });
  const to = (runbook.recipients as string[])[0]!;
  const { config, ingest } = await stack(runbook, {
    MXF_SMTP_RELAY: `127.0.0.1:${gmail.port}`,
    MXF_NOTIFY_WEBHOOK_URL: webhook.url,
  });
  const { address, namespace, taskQueue } = config.temporal;
  let primary: Awaited<ReturnType<typeof startCatcher>> | undefined;
  try {
    await withWorker({ address, namespace, taskQueue, sql: ingest.sql, config }, async () => {
      const first = await send(ingest, to, 'one');
      const second = await send(ingest, to, 'two');
      const handle = temporal.client.workflow.getHandle<OutageWorkflow>(outageWorkflowId(runbook.id));
      await eventually(
        'the outage is declared',
        () => handle.query(statusQuery),
        (s) => s.phase === 'awaiting-instructions',
        20_000,
      );

      // Notify: step 1 opens a call task and emails the contacts; step 2, a second later, calls the webhook.
      const notified = await eventually(
        'two escalation steps',
        () => handle.query(statusQuery),
        (s) => s.notifications.length === 2,
      );
      const email = gmail.caught.find((m) => m.to.includes('harborview.backup@gmail.example'));
      assert.ok(email, 'the notification email reaches the contact through the relay');
      assert.match(email.raw.toString(), /we are holding your mail/);
      assert.equal(webhook.received.length, 1);
      assert.equal(webhook.received[0]!.body.event, 'outage.notify');
      assert.equal(webhook.received[0]!.body.customerId, runbook.id);
      assert.deepEqual(
        notified.callTasks.map((t) => `${t.id}:${t.outcome}`),
        ['call-1:null'],
      );
      assert.equal(notified.callTasks[0]!.contacts[0]!.phone, '+1 212 555 0142');
      await assert.rejects(
        handle.executeUpdate(recordCallUpdate, {
          args: [{ taskId: 'call-9', outcome: 'reached', actor: 'ops:alice' }],
        }),
        (err: unknown) =>
          err instanceof WorkflowUpdateFailedError &&
          /no call task call-9; open ones: call-1/.test(String((err.cause as Error)?.message)),
      );
      const called = await handle.executeUpdate(recordCallUpdate, {
        args: [
          {
            taskId: 'call-1',
            outcome: 'reached',
            actor: 'ops:alice',
            note: 'office manager: forward to Gmail',
          },
        ],
      });
      assert.equal(called.acknowledged, true);
      assert.equal(called.callTasks[0]!.closedBy, 'ops:alice');

      await assert.rejects(
        handle.executeUpdate(instructUpdate, {
          args: [{ action: 'forward', to: ['not an address'], actor: 'ops:alice' }],
        }),
        (err: unknown) =>
          err instanceof WorkflowUpdateFailedError &&
          /invalid instruction: to\.0/.test(String((err.cause as Error)?.message)),
      );
      const forwarding = await handle.executeUpdate(instructUpdate, {
        args: [
          {
            action: 'forward',
            to: [FORWARD_TO],
            actor: 'ops:alice',
            requestId: 'req-1',
          },
        ],
      });
      assert.equal(forwarding.phase, 'forwarding');
      assert.equal(forwarding.history.length, 1, 'the refused instruction left no trace');
      await eventually(
        'held mail reaches the Gmail stand-in',
        async () => forwarded().length,
        (n) => n === 2,
      );
      assert.ok(
        stripArcSet(forwarded()[0]!.raw).equals(first) && stripArcSet(forwarded()[1]!.raw).equals(second),
        'byte for byte after our ARC set, in order',
      );
      assert.match(
        forwarded()[0]!.from,
        new RegExp(`^mxfb=\\d+=[0-9a-f]{8}=\\w+=[0-9a-f]{20}@${FORWARDING_DOMAIN}$`),
      );

      const third = await send(ingest, to, 'three');
      await eventually(
        'new mail follows the forward',
        async () => forwarded().length,
        (n) => n === 3,
      );
      assert.ok(stripArcSet(forwarded()[2]!.raw).equals(third));

      await handle.executeUpdate(instructUpdate, { args: [{ action: 'hold', actor: 'ops:bob' }] });
      const fourth = await send(ingest, to, 'four');
      await eventually(
        'held while holding',
        () => handle.query(statusQuery),
        (s) => s.phase === 'holding' && s.heldMessages === 1,
      );
      assert.equal(forwarded().length, 3);

      primary = await startCatcher({ port: primaryPort });
      const result = await handle.result();
      await recordHistory('outage-forward-hold-restore', handle);
      assert.equal(primary.caught.length, 1, 'restore delivers the rest to the primary');
      assert.ok(primary.caught[0]!.raw.equals(fourth));
      assert.equal(result.phase, 'closed');
      assert.deepEqual(result.counts, { relayed: 0, forwarded: 3, redirected: 0, restored: 1, failed: 0 });
      assert.equal(result.heldMessages, 0);
      assert.ok(result.declaredAt && result.resolvedAt);
      assert.deepEqual(
        result.history.map((h) => `${h.instruction.action} by ${h.instruction.actor}`),
        [
          'forward by ops:alice',
          'hold by ops:bob',
          `restore by runbook ${runbook.id} (restore.mode auto: the primary answers again)`,
        ],
      );
    });
  } finally {
    await ingest.close();
    await gmail.close();
    await webhook.close();
    await primary?.close();
  }
});

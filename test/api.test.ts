import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import SwaggerParser from '@apidevtools/swagger-parser';
import { outageWorkflowId } from '../src/domain/outage';
import { startApi, startOpsStack } from './helpers/api';
import { stripArcSet } from './helpers/arc-set';
import { startCatcher } from './helpers/catcher';
import { eventually } from './helpers/eventually';
import { freePort } from './helpers/ports';
import { runbookWithPrimaryAt } from './helpers/runbooks';
import { transaction } from './helpers/smtp-client';
import { testConfig } from './helpers/stack';
import { useTemporalClient } from './helpers/temporal';

// The ops API over real HTTP, against real Temporal (with a worker), PostgreSQL and MinIO, the ingest taking mail
// over SMTP, and a local SMTP server standing in for Gmail.

const temporal = useTemporalClient();

const GMAIL = 'office.backup@gmail.example';

/** Restores automatically, as the shipped runbook does, so the API sees an outage end by itself. */
const fastRunbook = (primaryPort: number) =>
  runbookWithPrimaryAt(primaryPort, { restore: { mode: 'auto', ratePerSecond: 20 } });

/** The payloads of the workflow's accepted updates, decoded: what the history says each mutation carried. */
async function acceptedUpdates(workflowId: string) {
  const history = await temporal.client.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? []).flatMap((e) => {
    const accepted = e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest;
    if (!accepted) return [];
    const arg = accepted.input?.args?.payloads?.[0]?.data;
    return [{ name: accepted.input?.name, arg: JSON.parse(Buffer.from(arg ?? []).toString() || '{}') }];
  });
}

test('ops API: an outage run end to end, every refusal with its status and code, every action audited', async (t) => {
  const primaryPort = await freePort(); // nothing listens: the primary is down
  const gmail = await startCatcher();
  const runbook = fastRunbook(primaryPort);
  const quiet = fastRunbook(primaryPort); // a customer with no mail, whose outage is declared by hand
  const to = (runbook.recipients as string[])[0]!;
  const stack = await startOpsStack([runbook, quiet], { client: temporal.client, relayPort: gmail.port });
  const { ingest, api } = stack;
  const { call, names } = api;
  try {
    await stack.run(async () => {
      const sent = await transaction(ingest.port, {
        from: 'client@origin.example',
        to: [to],
        // Headers a real mail client writes: without them the spam filter scores it past the quarantine line.
        data: `Subject: Contract draft\r\nFrom: client@origin.example\r\nTo: ${to}\r\nDate: ${new Date().toUTCString()}\r\nMessage-ID: <${randomUUID()}@origin.example>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<p onclick="x()">Please sign</p><script>alert(1)</script>\r\n--b\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=contract.pdf\r\n\r\n%PDF-1.4\r\n--b--\r\n`,
      });
      assert.match(sent.end ?? '', /^250/);

      await t.test('auth: 401 without or with a bad token, 403 for the wrong role', async () => {
        const none = await call('GET', '/api/outages', { as: 'none' });
        assert.equal(none.status, 401);
        assert.equal(none.json.error.code, 'UNAUTHENTICATED');
        const bad = await call('GET', '/api/outages', { token: 'mxf_not-a-token' });
        assert.equal(bad.status, 401);
        const viewer = await call('POST', `/api/outages/${runbook.id}/instructions`, {
          as: 'viewer',
          body: { action: 'hold' },
        });
        assert.equal(viewer.status, 403);
        assert.equal(viewer.json.error.code, 'FORBIDDEN');
        assert.match(viewer.json.error.message, /needs the operator role/);
        assert.equal((await call('GET', '/api/audit', { as: 'operator' })).status, 403);
        assert.equal((await call('GET', '/healthz', { as: 'none' })).status, 200, 'health is open');
      });

      const outage = await eventually(
        'the outage is declared and listed',
        () => call('GET', `/api/outages?state=active&customer=${runbook.id}`, { as: 'viewer' }),
        (r) => r.json?.outages?.[0]?.phase === 'awaiting-instructions',
        20_000,
      );
      const outageId: string = outage.json.outages[0].id;
      assert.match(outageId, new RegExp(`^${runbook.id}\\.[0-9a-f]{8}$`));

      await t.test('customers: each runbook with its held mail and active outage', async () => {
        const r = await call('GET', '/api/customers', { as: 'viewer' });
        assert.equal(r.status, 200);
        const mine = r.json.customers.find((c: { id: string }) => c.id === runbook.id);
        assert.equal(mine.heldMessages, 1);
        assert.equal(mine.activeOutage.id, outageId);
        assert.equal(r.json.customers.find((c: { id: string }) => c.id === quiet.id).activeOutage, null);
      });

      await t.test('show: by outage id and by customer id; unknown and malformed ids', async () => {
        const r = await call('GET', `/api/outages/${outageId}`, { as: 'viewer' });
        assert.equal(r.status, 200);
        assert.equal(r.json.id, outageId);
        assert.equal(r.json.heldMessages, 1);
        assert.equal(r.json.lastProbe[0].ok, false);
        assert.equal(r.json.callTasks[0].id, 'call-1');
        assert.equal(r.json.appliedRequestIds, undefined, 'internal bookkeeping stays inside');
        assert.equal((await call('GET', `/api/outages/${runbook.id}`, { as: 'viewer' })).json.id, outageId);
        const unknown = await call('GET', `/api/outages/${runbook.id}.00000000`, { as: 'viewer' });
        assert.equal(unknown.status, 404);
        assert.equal(unknown.json.error.code, 'OUTAGE_NOT_FOUND');
        const noCustomer = await call('GET', '/api/outages/nobody-here', { as: 'viewer' });
        assert.equal(noCustomer.json.error.code, 'OUTAGE_NOT_FOUND');
        for (const id of ['..%2F..%2Fetc%2Fpasswd', 'h%C3%A4rborview', 'UPPER', '%00']) {
          const r = await call('GET', `/api/outages/${id}`, { as: 'viewer' });
          assert.equal(r.status, 400, id);
          assert.equal(r.json.error.code, 'INVALID_REQUEST', id);
          assert.ok(!/at .*\.ts:\d+/.test(r.text), 'no stack trace');
        }
      });

      await t.test('instructions: malformed, wrong type, oversized, refused in this state', async () => {
        const path = `/api/outages/${outageId}/instructions`;
        const bad = await call('POST', path, { body: { action: 'forward', to: ['not an address'] } });
        assert.equal(bad.status, 400);
        assert.equal(bad.json.error.code, 'INVALID_REQUEST');
        assert.ok(bad.json.error.issues.some((i: { path: string }) => i.path.startsWith('body.to')));
        const unknownAction = await call('POST', path, { body: { action: 'delete-everything' } });
        assert.equal(unknownAction.status, 400);
        const notJson = await call('POST', path, {
          rawBody: 'action=hold',
          contentType: 'application/x-www-form-urlencoded',
        });
        assert.equal(notJson.status, 415);
        assert.equal(notJson.json.error.code, 'UNSUPPORTED_MEDIA_TYPE');
        const broken = await call('POST', path, { rawBody: '{"action":' });
        assert.equal(broken.json.error.code, 'INVALID_REQUEST');
        const huge = await call('POST', path, { body: { action: 'hold', note: 'x'.repeat(100_000) } });
        assert.equal(huge.status, 413);
        assert.equal(huge.json.error.code, 'BODY_TOO_LARGE');
        // A destination that can never take the mail (here: our own address and SMTP port) is refused before the
        // outage changes course.
        const ourselves = { action: 'redirect', host: '127.0.0.1', port: ingest.config.smtp.port };
        const loop = await call('POST', path, { body: ourselves });
        assert.equal(loop.status, 422);
        assert.equal(loop.json.error.code, 'ROUTE_UNUSABLE');
        assert.match(
          loop.json.error.message,
          /is this MX failover service itself: delivering there would loop/,
        );
        const early = await call('POST', path, { body: { action: 'resolve' } });
        assert.equal(early.status, 409);
        assert.equal(early.json.error.code, 'WORKFLOW_REFUSED');
        assert.match(early.json.error.message, /1 message\(s\) are still held/);
      });

      await t.test('calls: the oldest open task is closed with the operator as its actor', async () => {
        const r = await call('POST', `/api/outages/${outageId}/calls`, {
          body: { outcome: 'reached', note: 'office manager: forward to Gmail' },
        });
        assert.equal(r.status, 200);
        assert.equal(r.json.callTasks[0].outcome, 'reached');
        assert.equal(r.json.callTasks[0].closedBy, names.operator);
        assert.equal(r.json.acknowledged, true);
        const again = await call('POST', `/api/outages/${outageId}/calls`, { body: { outcome: 'reached' } });
        assert.equal(again.status, 409, 'no open call task is left');
        const unknownTask = await call('POST', `/api/outages/${outageId}/calls`, {
          body: { taskId: 'call-9', outcome: 'no-answer' },
        });
        assert.equal(unknownTask.status, 409);
        assert.match(unknownTask.json.error.message, /no call task call-9/);
      });

      await t.test(
        'forward: applied once per requestId, delivered, and visible in the messages list',
        async () => {
          const body = { action: 'forward', to: [GMAIL], requestId: `req-${randomUUID()}` };
          const r = await call('POST', `/api/outages/${outageId}/instructions`, { body });
          assert.equal(r.status, 200);
          assert.equal(r.json.phase, 'forwarding');
          assert.equal(r.json.instruction.actor, names.operator);
          const retried = await call('POST', `/api/outages/${outageId}/instructions`, { body });
          assert.equal(retried.status, 200);
          assert.equal(retried.json.history.length, 1, 'a retried request is applied once');
          await eventually(
            'the forward reaches Gmail',
            async () => gmail.caught.length,
            (n) => n === 1,
            20_000,
          );
          const delivered = await eventually(
            'the list shows it delivered',
            () => call('GET', `/api/outages/${outageId}/messages?status=delivered`, { as: 'viewer' }),
            (l) => l.json?.messages?.length === 1,
          );
          const m = delivered.json.messages[0];
          assert.equal(m.subject, 'Contract draft');
          assert.equal(m.recipients[0].status, 'delivered');
          assert.match(m.recipients[0].target, /^forward:/);
          const held = await call('GET', `/api/outages/${outageId}/messages?status=held`, { as: 'viewer' });
          assert.equal(held.json.messages.length, 0);
          const bySender = await call('GET', `/api/outages/${outageId}/messages?sender=nobody`, {
            as: 'viewer',
          });
          assert.equal(bySender.json.messages.length, 0);
          const page = await call('GET', `/api/outages/${outageId}/messages?limit=0`, { as: 'viewer' });
          assert.equal(page.status, 400);
        },
      );

      await t.test(
        'message content: parsed and sanitized for operators, raw bytes as sent, audited',
        async () => {
          const list = await call('GET', `/api/outages/${outageId}/messages`, { as: 'viewer' });
          const id = list.json.messages[0].id;
          assert.equal((await call('GET', `/api/messages/${id}`, { as: 'viewer' })).status, 403);
          const shown = await call('GET', `/api/messages/${id}`);
          assert.equal(shown.status, 200);
          assert.equal(shown.json.content.subject, 'Contract draft');
          assert.equal(shown.json.spam.state, 'clean', 'scored by the filter, which passed it');
          assert.equal(typeof shown.json.spam.score, 'number');
          assert.equal(shown.json.auth.spf.domain, 'origin.example');
          assert.match(shown.json.content.html, /Please sign/);
          assert.doesNotMatch(shown.json.content.html, /script|onclick/);
          assert.deepEqual(
            shown.json.content.attachments.map((a: { filename: string }) => a.filename),
            ['contract.pdf'],
          );
          const raw = await call('GET', `/api/messages/${id}/raw`);
          assert.equal(raw.headers.get('content-type'), 'message/rfc822');
          const forwarded = stripArcSet(gmail.caught[0]!.raw).toString();
          assert.equal(forwarded, raw.text, 'the forwarded bytes after our ARC set are the held bytes');
          const missing = await call('GET', '/api/messages/999999999');
          assert.equal(missing.json.error.code, 'MESSAGE_NOT_FOUND');
          assert.equal((await call('GET', '/api/messages/1%2F..')).status, 400);
        },
      );

      await t.test('resolve: closes the outage; it then refuses more', async () => {
        const r = await eventually(
          'resolved once nothing is held',
          () => call('POST', `/api/outages/${outageId}/instructions`, { body: { action: 'resolve' } }),
          (x) => x.status === 200,
        );
        assert.equal(r.json.phase, 'closed');
        const after = await call('POST', `/api/outages/${outageId}/instructions`, {
          body: { action: 'hold' },
        });
        assert.equal(after.status, 409, after.text);
        assert.equal(after.json.error.code, 'WORKFLOW_REFUSED');
        const resolved = await eventually(
          'listed as resolved',
          () => call('GET', `/api/outages?state=resolved&customer=${runbook.id}`, { as: 'viewer' }),
          (l) => l.json?.outages?.length === 1,
        );
        assert.equal(resolved.json.outages[0].id, outageId);
        const shown = await call('GET', `/api/outages/${outageId}`, { as: 'viewer' });
        assert.equal(shown.json.phase, 'closed', 'a resolved outage is read from its result');
        const messages = await call('GET', `/api/outages/${outageId}/messages`, { as: 'viewer' });
        assert.equal(messages.json.messages.length, 1, 'what it delivered stays listed');
      });

      await t.test('declare by hand: starts an outage with no mail; twice is refused', async () => {
        const r = await call('POST', `/api/customers/${quiet.id}/outages`, {
          body: { note: 'customer called: flood at the office' },
        });
        assert.equal(r.status, 201);
        assert.equal(r.json.phase, 'awaiting-instructions');
        assert.equal(r.json.declaredBy, names.operator);
        assert.equal(r.json.declarationNote, 'customer called: flood at the office');
        const twice = await call('POST', `/api/customers/${quiet.id}/outages`, { body: {} });
        assert.equal(twice.status, 409);
        assert.match(twice.json.error.message, /already declared/);
        const unknown = await call('POST', '/api/customers/no-such-customer/outages', { body: {} });
        assert.equal(unknown.status, 404);
        assert.equal(unknown.json.error.code, 'CUSTOMER_NOT_FOUND');
        const done = await call('POST', `/api/outages/${quiet.id}/instructions`, {
          body: { action: 'resolve' },
        });
        assert.equal(done.status, 200);
      });

      await t.test(
        'audit: every mutation and content read, with actor and outcome; also in the history',
        async () => {
          const r = await call('GET', `/api/audit?customer=${runbook.id}&limit=200`, { as: 'admin' });
          assert.equal(r.status, 200);
          const seen = r.json.events.map(
            (e: { actor: string; action: string; outcome: string }) => `${e.actor} ${e.action} ${e.outcome}`,
          );
          for (const expected of [
            `${names.viewer} outage.instruct denied`,
            `${names.operator} outage.instruct invalid`,
            `${names.operator} outage.instruct refused`,
            `${names.operator} outage.instruct ok`,
            `${names.operator} outage.call ok`,
            `${names.operator} message.read ok`,
            `${names.operator} message.raw ok`,
          ])
            assert.ok(seen.includes(expected), `audit has "${expected}"`);
          assert.ok(!seen.some((s: string) => s.endsWith('pending')), 'every row is completed');
          // A message id names no customer until the message is found: the viewer's refused read is under its actor.
          const byViewer = await call('GET', `/api/audit?actor=${names.viewer}`, { as: 'admin' });
          assert.ok(
            byViewer.json.events.some(
              (e: { action: string; outcome: string; statusCode: number }) =>
                e.action === 'message.read' && e.outcome === 'denied' && e.statusCode === 403,
            ),
          );
          const declared = await call('GET', `/api/audit?customer=${quiet.id}&action=outage.declare`, {
            as: 'admin',
          });
          assert.deepEqual(
            declared.json.events.map((e: { outcome: string }) => e.outcome),
            ['refused', 'ok'],
            'newest first: the second declaration was refused',
          );
          const updates = await acceptedUpdates(outageWorkflowId(runbook.id));
          assert.ok(
            updates.some(
              (u) => u.name === 'instruct' && u.arg.action === 'forward' && u.arg.actor === names.operator,
            ),
            'the forward, with its actor, is in the workflow history',
          );
          assert.ok(updates.some((u) => u.name === 'recordCall' && u.arg.actor === names.operator));
        },
      );
    });
  } finally {
    await stack.close();
    await gmail.close();
  }
});

test('OpenAPI: the document validates and covers every route; docs are browsable', async () => {
  const api = await startApi(testConfig(), []);
  try {
    const doc = await api.call('GET', '/openapi.json', { as: 'none' });
    assert.equal(doc.status, 200);
    await SwaggerParser.validate(structuredClone(doc.json));
    const documented = new Set(
      Object.entries(doc.json.paths as Record<string, object>).flatMap(([path, ops]) =>
        Object.keys(ops).map((m) => `${m.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`),
      ),
    );
    const undocumented = new Set(['GET /openapi.json']);
    const missing = api.app.routeList.filter(
      (r) => !documented.has(r) && !undocumented.has(r) && !r.startsWith('GET /docs'),
    );
    assert.deepEqual(missing, []);
    assert.ok(documented.has('POST /api/outages/:id/instructions'));
    // The spam view is described, not left as an untyped object.
    const schemas = doc.json.components?.schemas ?? {};
    assert.deepEqual(Object.keys(schemas.MessageSpam?.properties ?? {}).sort(), [
      'action',
      'reason',
      'review',
      'score',
      'scoredAt',
      'state',
      'symbols',
    ]);
    assert.ok(schemas.QuarantinePage, 'the quarantine page is described');
    const ui = await api.call('GET', '/docs/', { as: 'none' });
    assert.equal(ui.status, 200);
    assert.match(ui.text, /swagger/i);
  } finally {
    await api.close();
  }
});

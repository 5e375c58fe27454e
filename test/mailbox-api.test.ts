import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { provisionMailboxes } from '../src/mailbox/provision';
import { startApi } from './helpers/api';
import { canSignIn, imapClient } from './helpers/imap';
import { runbookWithPrimaryAt } from './helpers/runbooks';
import { testConfig } from './helpers/stack';
import { startWebhookReceiver } from './helpers/webhook';

// Issue 14: getting people in. The operator hands out a sign-in once (a new password and a one-time web link,
// shown once, audited without the secrets), optionally sends the link by SMS, never to the mailbox that is down.
let webhook: Awaited<ReturnType<typeof startWebhookReceiver>>;
let config: ReturnType<typeof testConfig>;
let api: Awaited<ReturnType<typeof startApi>>;
const runbook = runbookWithPrimaryAt(2525);
const [reception, it] = runbook.recipients as [string, string];
before(async () => {
  webhook = await startWebhookReceiver();
  config = testConfig({ MXF_NOTIFY_WEBHOOK_URL: webhook.url });
  api = await startApi(config, [runbook]);
});
after(async () => {
  await api.close();
  await webhook.close();
});

const imapSignIn = (user: string, pass: string) => canSignIn(config, user, pass);

const signInPath = (address: string) =>
  `/api/outages/${runbook.id}/mailboxes/${encodeURIComponent(address)}/sign-in`;

test('mailboxes: listed per person; a sign-in handed out once, reset on the next, refused for a closed mailbox', async () => {
  assert.equal(await provisionMailboxes(api.sql, runbook, null), 2);
  let list = await api.call('GET', `/api/outages/${runbook.id}/mailboxes`, { as: 'viewer' });
  assert.equal(list.status, 200, list.text);
  assert.deepEqual(
    list.json.mailboxes.map((m: { address: string; state: string }) => [m.address, m.state]),
    [
      [it, 'provisioned'],
      [reception, 'provisioned'],
    ],
  );
  assert.equal((await api.call('POST', signInPath(reception), { as: 'viewer', body: {} })).status, 403);

  const first = await api.call('POST', signInPath(reception), { body: {} });
  assert.equal(first.status, 200, first.text);
  assert.equal(first.headers.get('cache-control'), 'no-store');
  assert.match(first.json.password, /^[a-zA-Z2-9]{24}$/);
  assert.ok(first.json.web.link.startsWith(`${config.mailbox.web.url}/link/`));
  assert.deepEqual(first.json.imap, {
    host: config.mailbox.publicHost,
    port: config.mailbox.imapPort,
    security: 'STARTTLS',
  });
  assert.ok(await imapSignIn(reception, first.json.password), 'the handed-out password signs in to IMAP');

  // A phone signed in with the first password, idle in its inbox: the next hand-out signs it out.
  const phone = imapClient(config, reception, first.json.password);
  await phone.connect();
  await phone.mailboxOpen('INBOX');
  const signedOut = new Promise<void>((resolve) => phone.once('close', () => resolve()));
  void phone.idle().catch(() => {});

  const second = await api.call('POST', signInPath(reception), {
    body: { sendLinkTo: { sms: '+1 212 555 0142' } },
  });
  assert.equal(second.status, 200, second.text);
  assert.equal(second.json.sessionsEnded, true);
  await Promise.race([
    signedOut,
    new Promise((_, reject) => setTimeout(() => reject(new Error('the old session was not ended')), 10_000)),
  ]);
  assert.ok(!(await imapSignIn(reception, first.json.password)), 'a new hand-out replaces the old password');
  assert.ok(await imapSignIn(reception, second.json.password));
  assert.deepEqual(second.json.sent, { channel: 'sms', to: '+1 212 555 0142', ok: true });
  const sms = webhook.received.at(-1)!.body;
  assert.equal(sms.event, 'mailbox.sign-in-link');
  assert.match(String(sms.text), new RegExp(second.json.web.link.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
  assert.ok(!String(sms.text).includes(second.json.password), 'the password never goes by SMS');

  const down = await api.call('POST', signInPath(reception), { body: { sendLinkTo: { email: it } } });
  assert.equal(down.status, 422, down.text);
  assert.equal(down.json.error.code, 'LINK_DESTINATION_REFUSED');
  assert.ok(await imapSignIn(reception, second.json.password), 'a refused hand-out changes nothing');

  const unknown = await api.call('POST', signInPath(`nobody@${runbook.domains[0]}`), { body: {} });
  assert.equal(unknown.status, 404);
  assert.equal(unknown.json.error.code, 'MAILBOX_NOT_FOUND');

  list = await api.call('GET', `/api/outages/${runbook.id}/mailboxes`, { as: 'viewer' });
  assert.equal(
    list.json.mailboxes.find((m: { address: string }) => m.address === reception).state,
    'sign-in issued',
  );
  assert.equal(list.json.counts.signInIssued, 1);

  const audit = await api.sql<{ detail: unknown; outcome: string }[]>`
    select detail, outcome from audit_event where action = 'mailbox.sign-in-issued' and customer_id = ${runbook.id}
    order by id`;
  assert.equal(audit.filter((a) => a.outcome === 'ok').length, 2, 'each hand-out audited');
  assert.ok(
    audit.some((a) => a.outcome === 'invalid'),
    'and the refused one',
  );
  const everything = JSON.stringify(audit);
  assert.ok(everything.includes(reception), 'the audit names the mailbox');
  for (const secret of [first.json.password, second.json.password, second.json.web.link])
    assert.ok(!everything.includes(secret), 'and never a secret');

  await api.sql`update mailbox set sign_in_allowed = false, closed_at = now() where address = ${reception}`;
  const closed = await api.call('POST', signInPath(reception), { body: {} });
  assert.equal(closed.status, 409);
  assert.equal(closed.json.error.code, 'MAILBOX_CLOSED');
  assert.ok(!(await imapSignIn(reception, second.json.password)), 'a closed mailbox refuses its user');
});

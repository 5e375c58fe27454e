import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { primaryTargetKey } from '../src/domain/delivery';
import {
  parseReturnPath,
  type ReturnPathKey,
  returnPathFor,
  returnPathSecret,
} from '../src/mail/return-path';
import { countHeldMessages } from '../src/store/held';
import { FORWARDING_DOMAIN } from './helpers/dns-zone';
import { dsn } from './helpers/dsn';
import { holdBacklog } from './helpers/held';
import { startIngest, type TestIngest, uniqueRunbook } from './helpers/ingest';
import { transaction } from './helpers/smtp-client';

// Bounces of forwarded copies at the real ingest, on the stack's PostgreSQL: a bounce to a signed return address
// turns the copy's ledger row into a failure (so the message is held for the customer's own server again), and is
// never held or passed on; addresses we did not sign are refused at RCPT.
const law = uniqueRunbook('harborview-law');
const [reception, it] = law.recipients as [string, string];
const FORWARD = 'forward:harborview.it@gmail.example';
const REDIRECT = 'redirect:dr.harborview.example:25';
const DAY = 86_400_000;
let ingest: TestIngest;
let key: ReturnPathKey;

before(async () => {
  ingest = await startIngest([law]);
  key = { domain: ingest.config.outbound.returnPath.domain, secret: returnPathSecret(ingest.config) };
});
after(() => ingest.close());

/** One held message, forwarded to FORWARD for both recipients (as a delivery records it); its row id. */
async function forwardedMessage(opts: { ledger?: boolean } = {}): Promise<string> {
  const { byRowId } = await holdBacklog(ingest.sql, law.id, [reception, it], 1);
  const [id] = [...byRowId.keys()];
  if (opts.ledger !== false)
    await ingest.sql`insert into delivery_ledger (message_id, recipient, target, outcome, smtp_response)
      values (${id!}, ${reception}, ${FORWARD}, 'delivered', '250 2.0.0 OK'),
             (${id!}, ${it}, ${FORWARD}, 'delivered', '250 2.0.0 OK'),
             (${id!}, ${it}, ${REDIRECT}, 'failed', '550 5.7.1 not here')`;
  return id!;
}

async function ledgerOf(id: string) {
  const rows = await ingest.sql<
    { recipient: string; target: string; outcome: string; smtp_response: string }[]
  >`
    select recipient, target, outcome, smtp_response from delivery_ledger where message_id = ${id}
    order by target, recipient`;
  return [...rows];
}

async function heldMessageCount(): Promise<number> {
  const [row] = await ingest.sql<{ n: number }[]>`select count(*)::int as n from held_message`;
  return row!.n;
}

const bounce = (to: string[], data?: string) => transaction(ingest.port, { from: '', to, data });

test('the stack gives the ingest our forwarding domain and a secret', () => {
  assert.equal(key.domain, FORWARDING_DOMAIN);
  assert.equal(key.secret, process.env.MXF_RETURN_PATH_SECRET);
});

test('a DSN to a return address marks that copy failed, and the message is held for the primary again', async () => {
  const id = await forwardedMessage();
  assert.equal(
    await countHeldMessages(ingest.sql, law.id, primaryTargetKey(law.id)),
    0,
    'delivered: not held',
  );
  const held = await heldMessageCount();
  const to = returnPathFor(key, id, FORWARD);
  const data = dsn({
    action: 'failed',
    status: '5.2.2',
    diagnostic: "smtp; 552-5.2.2 The recipient's inbox is out of storage space.",
  });
  const replies = await bounce([to], data);
  assert.match(replies.mail, /^250 /, 'MAIL FROM:<> is taken');
  assert.match(replies.rcpts[0]!, /^250 /);
  assert.match(replies.end!, /^250 2\.0\.0 .*bounce recorded/);

  const response = "bounced after delivery: 5.2.2 The recipient's inbox is out of storage space.";
  assert.deepEqual(await ledgerOf(id), [
    { recipient: it, target: FORWARD, outcome: 'failed', smtp_response: response },
    { recipient: reception, target: FORWARD, outcome: 'failed', smtp_response: response },
    { recipient: it, target: REDIRECT, outcome: 'failed', smtp_response: '550 5.7.1 not here' },
  ]);
  assert.equal(
    await countHeldMessages(ingest.sql, law.id, primaryTargetKey(law.id)),
    1,
    'held for the primary',
  );
  assert.equal(
    await countHeldMessages(ingest.sql, law.id, FORWARD),
    0,
    'not sent to the mailbox that bounced',
  );
  assert.equal(await heldMessageCount(), held, 'the bounce itself is not held');
  assert.equal(
    (await ingest.metrics.bounces.get()).values.find((v) => v.labels.result === 'recorded')?.value,
    1,
  );

  // The same bounce again (a sender retrying after a lost 250) changes nothing.
  assert.match((await bounce([to.toUpperCase()], dsn({ action: 'failed', status: '5.1.1' }))).end!, /^250 /);
  assert.equal((await ledgerOf(id))[0]!.smtp_response, response);
});

test('a delay warning is read and dropped: the copy stays delivered', async () => {
  const id = await forwardedMessage();
  const replies = await bounce(
    [returnPathFor(key, id, FORWARD)],
    dsn({ action: 'delayed', status: '4.2.1' }),
  );
  assert.match(replies.end!, /^250 2\.0\.0 .*nothing failed/);
  assert.deepEqual(
    (await ledgerOf(id)).map((r) => r.outcome),
    ['delivered', 'delivered', 'failed'],
  );
});

test('forged, expired and unknown return addresses are refused at RCPT', async () => {
  const id = await forwardedMessage();
  const good = returnPathFor(key, id, FORWARD);
  // The MAC's last digit changed (the match is that digit and the @ after it).
  const forged = good.replace(/([0-9a-f])@/, (_, digit: string) => `${digit === '0' ? '1' : '0'}@`);
  assert.equal(parseReturnPath(key, forged).ok, false, 'the test forged it');
  const otherSecret = returnPathFor({ ...key, secret: 'not-our-secret-at-all' }, id, FORWARD);
  const expired = returnPathFor(key, id, FORWARD, new Date(Date.now() - 22 * DAY));
  const gone = returnPathFor(key, '9000000000000000000', FORWARD);
  const otherTarget = returnPathFor(key, id, 'forward:someone@else.example');
  const held = await heldMessageCount();

  const replies = await bounce(
    [forged, otherSecret, `postmaster@${FORWARDING_DOMAIN}`, expired, gone],
    dsn({ action: 'failed', status: '5.1.1' }),
  );
  assert.match(replies.rcpts[0]!, /^550 5\.1\.1 .*not a valid return address/);
  assert.match(replies.rcpts[1]!, /^550 5\.1\.1 .*not a valid return address/);
  assert.match(replies.rcpts[2]!, /^550 5\.1\.1 .*not a valid return address/);
  assert.match(replies.rcpts[3]!, /^550 5\.1\.1 .*expired/);
  assert.match(replies.rcpts[4]!, /^550 5\.1\.1 .*not held here/);
  assert.equal(replies.end, undefined, 'no recipient, no DATA');
  // A valid address for a target the message never went to: its row may still be on its way.
  assert.match((await bounce([otherTarget])).rcpts[0]!, /^451 4\.3\.0 .*try again later/);
  assert.deepEqual(
    (await ledgerOf(id)).map((r) => r.outcome),
    ['delivered', 'delivered', 'failed'],
  );
  assert.equal(await heldMessageCount(), held);
});

test('a bounce that comes before its ledger row is asked to come back later', async () => {
  const id = await forwardedMessage({ ledger: false });
  assert.match((await bounce([returnPathFor(key, id, FORWARD)])).rcpts[0]!, /^451 4\.3\.0 /);
});

test('bounces and customer mail do not share a transaction: the later kind gets 452 4.5.3', async () => {
  const id = await forwardedMessage();
  const to = returnPathFor(key, id, FORWARD);
  const held = await heldMessageCount();
  const bounceFirst = await bounce([to, reception], dsn({ action: 'failed', status: '5.1.1' }));
  assert.match(bounceFirst.rcpts[0]!, /^250 /);
  assert.match(bounceFirst.rcpts[1]!, /^452 4\.5\.3 .*separately/);
  assert.match(bounceFirst.end!, /^250 /, 'the bounce alone goes through');
  const customerFirst = await transaction(ingest.port, {
    from: 'someone@sender.example',
    to: [reception, to],
    data: 'Subject: hello\r\n\r\nhi\r\n',
  });
  assert.match(customerFirst.rcpts[0]!, /^250 /);
  assert.match(customerFirst.rcpts[1]!, /^452 4\.5\.3 /);
  assert.match(customerFirst.end!, /^250 /);
  assert.equal(await heldMessageCount(), held + 1, 'the customer mail is held, the bounce is not');
  const [row] = await ingest.sql<{ n: number }[]>`
    select count(*)::int as n from held_recipient r join held_message m on m.id = r.message_id
    where m.envelope_from = '' or r.recipient like ${`%@${FORWARDING_DOMAIN}`}`;
  assert.equal(row!.n, 0, 'nothing to a return address is ever held');
});

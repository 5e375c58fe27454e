import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bounceResponse, readBounce } from '../src/mail/dsn';
import { dsn } from './helpers/dsn';

// Reading bounces of forwarded copies (RFC 3464 delivery status notifications): pure, no stack needed.

test('a failed DSN gives its status and the remote words, unfolded and without the reply code', () => {
  const raw = dsn({
    action: 'failed',
    status: '5.2.2',
    diagnostic:
      "smtp; 552-5.2.2 The recipient's inbox is out of storage\r\n    space. Please direct the recipient to https://support.example/?p=full",
  });
  const report = readBounce(raw);
  assert.deepEqual(report, {
    failed: true,
    status: '5.2.2',
    diagnostic:
      "The recipient's inbox is out of storage space. Please direct the recipient to https://support.example/?p=full",
  });
  assert.match(
    bounceResponse(report),
    /^bounced after delivery: 5\.2\.2 The recipient's inbox is out of storage space/,
  );
});

test('a delay warning or a relay notice is not a failure', () => {
  assert.equal(
    readBounce(dsn({ action: 'delayed', status: '4.4.1', diagnostic: 'smtp; 421 try later' })).failed,
    false,
  );
  assert.equal(readBounce(dsn({ action: 'relayed', status: '2.0.0' })).failed, false);
});

test('a long diagnostic is kept short', () => {
  const report = readBounce(
    dsn({ action: 'failed', status: '5.1.1', diagnostic: `smtp; 550 ${'x'.repeat(5000)}` }),
  );
  assert.ok(report.diagnostic!.length <= 200);
  assert.equal(
    bounceResponse(readBounce(dsn({ action: 'failed', status: '5.0.0' }))),
    'bounced after delivery: 5.0.0',
  );
});

test('a plain-text bounce counts as failed; a vacation reply does not', () => {
  const qmail =
    'From: MAILER-DAEMON@old.example\r\nSubject: failure notice\r\n\r\nSorry, no mailbox here by that name.\r\n';
  assert.deepEqual(readBounce(qmail), { failed: true, status: null, diagnostic: null });
  assert.equal(bounceResponse(readBounce(qmail)), 'bounced after delivery: the report gives no reason');
  const vacation =
    'From: it@gmail.example\r\nSubject: Out of office\r\nAuto-Submitted: auto-replied\r\n\r\nBack Monday.\r\n';
  assert.equal(readBounce(vacation).failed, false);
});

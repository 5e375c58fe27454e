import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { authenticate, type DKIMSignOptions, type DNSResolver, dkimSign } from 'mailauth';
import type { OutageStatus, OutageWorkflow } from '../src/domain/outage';
import { dnsLookupOf, mailResolver } from '../src/mail/dns';
import { createSql } from '../src/store/db';
import { outageStart } from '../src/temporal';
import { declareUpdate, instructUpdate, statusQuery } from '../src/workflows/messages';
import { stripArcSet } from './helpers/arc-set';
import { messageIdsOf, startCatcher } from './helpers/catcher';
import {
  DKIM_DOMAIN,
  FORWARDING_DOMAIN,
  GMAIL_DOMAIN,
  NULL_MX_DOMAIN,
  SENDER_MX_ADDRESS,
  SPF_PASS_DOMAIN,
  testDkimKey,
} from './helpers/dns-zone';
import { dsn } from './helpers/dsn';
import { eventually } from './helpers/eventually';
import { startGmail } from './helpers/gmail';
import { holdBacklog } from './helpers/held';
import { startIngest } from './helpers/ingest';
import { freePort } from './helpers/ports';
import { runbookWithPrimaryAt } from './helpers/runbooks';
import { transaction } from './helpers/smtp-client';
import { testConfig } from './helpers/stack';
import { useTemporalClient, withQueueWorker } from './helpers/temporal';

// Issue 13's headline: a backlog forwarded to one Gmail mailbox by MX lookup, paced under the mailbox's cap, each
// copy still carrying the sender's valid DKIM signature, sealed with our ARC set, from a return address at our
// forwarding domain whose SPF passes; and a bounce of one copy recorded against it. The Gmail stand-in
// (test/helpers/gmail.ts) is the MX the test DNS gives gmail.example; it answers 421 4.7.28 past its cap.
const temporal = useTemporalClient();
const sql = createSql(testConfig());
after(() => sql.end());

const MAILBOX = `office.backup@${GMAIL_DOMAIN}`;
const MESSAGES = 500;
const CAP_PER_SECOND = 5;

/**
 * Stored as ingest stores it: our Received header, then the sender's bytes, DKIM-signed as signed.example.com.
 * mailauth 4.13 signs about one message in a thousand with a signature it then fails itself ("bad signature", no
 * forwarding involved): a message is signed again, with a new body, until its signature verifies as stored, so that
 * what the Gmail stand-in finds is what our forwarding did to it.
 */
async function signedMessage(i: number, messageId: string): Promise<Buffer> {
  for (let attempt = 1; ; attempt++) {
    const stored = await signOnce(i, messageId, attempt);
    const { dkim } = await authenticate(stored, { ...ORIGIN_SESSION, resolver: lookup as DNSResolver });
    if (dkim.results.some((r) => r.status.result === 'pass')) return stored;
    assert.ok(attempt < 5, `message ${i}: its DKIM signature never verified`);
  }
}

const lookup = dnsLookupOf(mailResolver(testConfig().dns.servers));
const ORIGIN_SESSION = {
  ip: '127.0.0.1',
  helo: `mail.${SPF_PASS_DOMAIN}`,
  sender: `counsel@${DKIM_DOMAIN}`,
  mta: 'mx.failover.test',
  disableBimi: true,
};

async function signOnce(i: number, messageId: string, attempt: number): Promise<Buffer> {
  const message = Buffer.from(
    [
      `From: Counsel <counsel@${DKIM_DOMAIN}>`,
      'To: office@harborview.example',
      `Subject: Filing ${i}`,
      `Date: ${new Date().toUTCString()}`,
      `Message-ID: <${messageId}>`,
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      '',
      `Filing number ${i} is attached to the courier note${attempt > 1 ? ` (copy ${attempt})` : ''}.`,
      '',
    ].join('\r\n'),
  );
  const { domainName, keySelector, privateKey } = testDkimKey();
  // mailauth's typings put the key fields at the top level; its code reads them from signatureData.
  const signWith = { signatureData: [{ signingDomain: domainName, selector: keySelector, privateKey }] };
  const { signatures } = await dkimSign(message, signWith as unknown as DKIMSignOptions);
  const received = `Received: from mail.${SPF_PASS_DOMAIN} ([127.0.0.1])\r\n\tby mx.failover.test (MX Failover) with ESMTP id Q${i}; ${new Date().toUTCString()}\r\n`;
  return Buffer.concat([Buffer.from(received), Buffer.from(signatures), message]);
}

test(`${MESSAGES} held messages forwarded to one Gmail mailbox capped at ${CAP_PER_SECOND}/s: all, in order, once, paced, authenticated`, async () => {
  const runbook = runbookWithPrimaryAt(await freePort(), {
    detection: { probeInterval: '1s', confirmAfter: '1h' },
  });
  const recipient = (runbook.recipients as string[])[0]!;
  const backlog = await holdBacklog(sql, runbook.id, [recipient], MESSAGES, {
    compose: signedMessage,
    origin: {
      envelopeFrom: `counsel@${DKIM_DOMAIN}`,
      clientIp: '127.0.0.1',
      helo: `mail.${SPF_PASS_DOMAIN}`,
    },
  });
  const gmail = await startGmail({ perMailbox: { count: CAP_PER_SECOND, windowMs: 1_000 } });
  try {
    await withQueueWorker(sql, {}, async (taskQueue) => {
      const handle = await temporal.client.workflow.start<OutageWorkflow>(
        'outageWorkflow',
        outageStart(taskQueue, runbook),
      );
      await handle.executeUpdate(declareUpdate, { args: [{ actor: 'ops:alice' }] });
      const started = Date.now();
      const forward = {
        action: 'forward' as const,
        to: [MAILBOX],
        rate: `${CAP_PER_SECOND}/s`,
        actor: 'ops:alice',
      };
      await handle.executeUpdate(instructUpdate, { args: [forward] });

      // Meanwhile the status says what a person plans with: the rate in force, what is left, when it ends.
      const midway = await eventually(
        'the status shows the pace',
        () => handle.query(statusQuery),
        (s: OutageStatus) =>
          (s.deliveries.find((d) => d.inForce)?.pace?.remaining ?? MESSAGES) < MESSAGES - 50,
        60_000,
      );
      const pace = midway.deliveries.find((d) => d.inForce)!.pace!;
      assert.ok(
        pace.ratePerMinute > 0.9 * 60 * CAP_PER_SECOND && pace.ratePerMinute <= 60 * CAP_PER_SECOND,
        JSON.stringify(pace),
      );
      const finish = Date.parse(pace.estimatedFinishAt) - started;
      assert.ok(finish > 80_000 && finish < 130_000, `estimated finish ${finish} ms after the instruction`);

      await eventually(
        'every copy delivered',
        async () => ({ kept: gmail.kept.length, refusedTooFast: gmail.refusedTooFast }),
        (n) => n.kept >= MESSAGES,
        200_000,
      );
      const seconds = (gmail.kept.at(-1)!.at - started) / 1000;
      console.log(
        `forward-gmail: ${MESSAGES} copies in ${seconds.toFixed(1)} s at a cap of ${CAP_PER_SECOND}/s`,
      );
      assert.ok(
        seconds > MESSAGES / CAP_PER_SECOND - 5 && seconds < (MESSAGES / CAP_PER_SECOND) * 1.3,
        `${seconds} s`,
      );
      assert.equal(gmail.refusedTooFast, 0, 'never over the mailbox cap');
      assert.deepEqual(
        messageIdsOf(gmail.kept.map((k) => ({ ...k, raw: stripArcSet(k.raw) })) as never),
        backlog.messageIds,
        'all, in order, once',
      );

      const dkimFailed = gmail.kept.flatMap((copy, i) =>
        copy.auth.dkim.some((d) => d.domain === DKIM_DOMAIN && d.result === 'pass')
          ? []
          : [{ i, ...copy.auth }],
      );
      assert.deepEqual(dkimFailed, [], "the sender's DKIM signature passes on every copy");
      for (const copy of gmail.kept) {
        assert.ok(copy.tls, 'STARTTLS, since it was offered');
        assert.deepEqual(copy.to, [MAILBOX]);
        assert.equal(copy.auth.arc, 'pass', JSON.stringify(copy.auth));
        assert.equal(copy.auth.spf, 'pass');
        assert.equal(copy.auth.spfDomain, FORWARDING_DOMAIN);
      }
      const status = await handle.query(statusQuery);
      assert.equal(status.counts.failed, 0, 'no 5xx');
      await bounceOfTheFirstCopy(runbook, gmail.kept[0]!.from, [...backlog.byRowId.keys()][0]!);
      await handle.terminate('test finished');
    });
  } finally {
    await gmail.close();
  }
});

/** Its return address names the message and the forward: the ledger records the failure there, nothing is relayed. */
async function bounceOfTheFirstCopy(
  runbook: Parameters<typeof startIngest>[0][number],
  returnPath: string,
  messageId: string,
) {
  const ingest = await startIngest([runbook], { temporal: temporal.client });
  // The original sender's MX, as DNS names it: whatever we did with a bounce would end up here.
  const originalSender = await startCatcher({ host: SENDER_MX_ADDRESS, port: 25 });
  try {
    const heldBefore = await sql<{ n: number }[]>`select count(*)::int as n from held_message`;
    const r = await transaction(ingest.port, {
      from: '',
      to: [returnPath],
      data: dsn({ action: 'failed', status: '5.2.2', diagnostic: 'smtp; 552 5.2.2 mailbox full' }),
    });
    assert.match(r.end ?? '', /^250 /, JSON.stringify(r));
    const rows = await sql<{ outcome: string; smtp_response: string }[]>`
      select outcome, smtp_response from delivery_ledger where message_id = ${messageId} and target like 'forward:%'`;
    assert.deepEqual(
      rows.map((row) => row.outcome),
      ['failed'],
    );
    assert.match(rows[0]!.smtp_response, /5\.2\.2/);
    const heldAfter = await sql<{ n: number }[]>`select count(*)::int as n from held_message`;
    assert.equal(
      heldAfter[0]!.n,
      heldBefore[0]!.n,
      'the bounce is not held (nor relayed to the original sender)',
    );
    const forged = returnPath.replace(
      /=([0-9a-f]{20})@/,
      (_, mac: string) => `=${mac.startsWith('0') ? '1' : '0'}${mac.slice(1)}@`,
    );
    const refused = await transaction(ingest.port, { from: '', to: [forged], data: 'x' });
    assert.match(refused.rcpts[0]!, /^550 5\.1\.1 /);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    assert.equal(originalSender.caught.length, 0, 'the original sender receives nothing');
  } finally {
    await originalSender.close();
    await ingest.close();
  }
}

test('a forward to a null-MX domain fails for good, says why, and the mail stays held', async () => {
  const runbook = runbookWithPrimaryAt(await freePort(), {
    detection: { probeInterval: '1s', confirmAfter: '1h' },
  });
  const recipient = (runbook.recipients as string[])[0]!;
  await holdBacklog(sql, runbook.id, [recipient], 3);
  await withQueueWorker(sql, {}, async (taskQueue) => {
    const handle = await temporal.client.workflow.start<OutageWorkflow>(
      'outageWorkflow',
      outageStart(taskQueue, runbook),
    );
    await handle.executeUpdate(declareUpdate, { args: [{ actor: 'ops:alice' }] });
    await handle.executeUpdate(instructUpdate, {
      args: [{ action: 'forward', to: [`it@${NULL_MX_DOMAIN}`], actor: 'ops:alice' }],
    });
    const status = await eventually(
      'the forward shows its failure',
      () => handle.query(statusQuery),
      (s: OutageStatus) => Boolean(s.deliveries.find((d) => d.inForce)?.lastError),
      30_000,
    );
    const d = status.deliveries.find((x) => x.inForce)!;
    assert.equal(d.lastError!.permanent, true);
    assert.match(d.lastError!.message, /null MX \(RFC 7505\)/);
    assert.equal(d.delivered, 0);
    assert.equal(status.counts.failed, 0, 'not one message counted as refused: the route is what fails');
    assert.equal(status.heldMessages, 3, 'all still held');
    await handle.terminate('test finished');
  });
});

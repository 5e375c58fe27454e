import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { authenticate, type DKIMSignOptions, type DNSResolver, dkimSign } from 'mailauth';
import nodemailer from 'nodemailer';
import { createNotifyActivities } from '../src/activities/notify';
import { SealError, sealForwarded } from '../src/mail/arc';
import { dkimTxtRecord, ourDkimKey } from '../src/mail/dkim-key';
import { type DnsLookup, dnsLookupOf, mailResolver } from '../src/mail/dns';
import { startCatcher } from './helpers/catcher';
import {
  DKIM_DOMAIN,
  FORWARDING_DOMAIN,
  GMAIL_ADDRESS,
  SPF_PASS_DOMAIN,
  testDkimKey,
} from './helpers/dns-zone';
import { GMAIL_MTA, startGmail } from './helpers/gmail';
import { freePort } from './helpers/ports';
import { runbookWithPrimaryAt } from './helpers/runbooks';
import { testConfig, testTmp } from './helpers/stack';

// Gmail-safe forwarding, the signing half: our ARC seal on a stored message keeps the sender's DKIM and passes at
// a receiver that reads the test DNS; notices carry our DKIM signature; the Gmail stand-in behaves like Gmail.

const config = testConfig();
const lookup = dnsLookupOf(mailResolver(config.dns.servers));
const ORIGIN = {
  clientIp: '127.0.0.1',
  helo: `mail.${SPF_PASS_DOMAIN}`,
  envelopeFrom: `someone@${SPF_PASS_DOMAIN}`,
};
const BOUNCES = `bounces@${FORWARDING_DOMAIN}`;

/** A message as our ingest stores it: our Received header, then the sender's bytes, DKIM-signed as signed.example.com. */
async function storedMessage(): Promise<Buffer> {
  const message = Buffer.from(
    [
      `From: Someone <someone@${DKIM_DOMAIN}>`,
      'To: office@harborview.example',
      'Subject: Closing documents',
      'Date: Fri, 27 Nov 2026 17:40:00 +0000',
      `Message-ID: <arc-${Date.now()}@${DKIM_DOMAIN}>`,
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      '',
      'The signed copies are attached to the courier note.',
      '',
    ].join('\r\n'),
  );
  const { domainName, keySelector, privateKey } = testDkimKey();
  // mailauth's typings put the key fields at the top level; its code reads them from signatureData.
  const signWith = { signatureData: [{ signingDomain: domainName, selector: keySelector, privateKey }] };
  const { signatures, errors } = await dkimSign(message, signWith as unknown as DKIMSignOptions);
  assert.deepEqual(errors, []);
  const received =
    `Received: from ${ORIGIN.helo} ([${ORIGIN.clientIp}])\r\n\tby mx.failover.test (MX Failover) with ESMTPS id ` +
    'Q1; Fri, 27 Nov 2026 17:40:01 +0000\r\n';
  return Buffer.concat([Buffer.from(received), Buffer.from(signatures), message]);
}

const seal = (raw: Buffer, dns: DnsLookup = lookup) =>
  sealForwarded(raw, ORIGIN, { key: ourDkimKey(config), lookup: dns, authservId: 'mx.failover.test' });

/** What a receiver concludes about a copy we send from 127.0.0.1 as bounces@failover.test. */
const receive = (copy: Buffer) =>
  authenticate(copy, {
    ip: '127.0.0.1',
    helo: 'mx.failover.test',
    sender: BOUNCES,
    mta: GMAIL_MTA,
    resolver: lookup as DNSResolver,
    disableBimi: true,
  });

const arcOf = (res: Awaited<ReturnType<typeof receive>>) => (res.arc ? res.arc.status.result : 'none');

const dkimOf = (res: Awaited<ReturnType<typeof receive>>) =>
  res.dkim.results.map((r) => ({ domain: r.signingDomain, result: r.status.result }));

test('our DKIM key is the one the test DNS publishes, in the record dkimTxtRecord writes', async () => {
  const published = (await lookup(`mxf._domainkey.${FORWARDING_DOMAIN}`, 'TXT')) as string[][];
  const record = dkimTxtRecord(ourDkimKey(config));
  assert.equal(record.name, `mxf._domainkey.${FORWARDING_DOMAIN}`);
  assert.deepEqual(
    published.map((strings) => strings.join('')),
    [record.value],
  );
});

test('an ARC seal goes in front of the stored bytes, and a receiver finds the sender DKIM and our ARC passing', async () => {
  const raw = await storedMessage();
  const block = await seal(raw);
  const text = block.toString();
  assert.match(text, /^ARC-Seal: i=1; /);
  assert.match(text, /\r\nARC-Message-Signature: i=1; /);
  assert.match(text, /\r\nARC-Authentication-Results: i=1; mx\.failover\.test;/);
  assert.match(text, /spf=pass/);
  assert.match(text, new RegExp(`dkim=pass[^;]*header\\.[di]=@?${DKIM_DOMAIN.replaceAll('.', '\\.')}`));
  assert.doesNotMatch(text, /^(Authentication-Results|Received-SPF):/im, 'only the ARC set is added');
  assert.doesNotMatch(text.replace(/\r\n/g, ''), /[\r\n]/, 'every line ends in CRLF');
  assert.ok(text.endsWith('\r\n'));

  const copy = Buffer.concat([block, raw]);
  assert.ok(copy.subarray(block.length).equals(raw), 'the stored bytes follow unchanged');
  const res = await receive(copy);
  assert.deepEqual(dkimOf(res), [{ domain: DKIM_DOMAIN, result: 'pass' }]);
  assert.equal(arcOf(res), 'pass');
});

test('a body changed after sealing fails ARC, and the sender DKIM no longer passes', async () => {
  const raw = await storedMessage();
  const block = await seal(raw);
  const tampered = Buffer.from(raw.toString().replace('courier note', 'wire transfer'));
  const res = await receive(Buffer.concat([block, tampered]));
  assert.equal(arcOf(res), 'fail');
  // mailauth reports a body hash that does not match as "neutral", with the comment "body hash did not verify".
  assert.deepEqual(dkimOf(res), [{ domain: DKIM_DOMAIN, result: 'neutral' }]);
  assert.match(res.dkim.results[0]!.status.comment ?? '', /body hash did not verify/);
});

test('our DNS not answering is a temporary SealError; only the sender domain failing seals with its temperror', async () => {
  const raw = await storedMessage();
  const timeout = Object.assign(new Error('queryTxt ETIMEOUT'), { code: 'ETIMEOUT' });
  await assert.rejects(
    seal(raw, async () => {
      throw timeout;
    }),
    (err: unknown) => err instanceof SealError && err.temporary,
  );
  const senderDead: DnsLookup = async (name, rrtype) => {
    if (name === SPF_PASS_DOMAIN) throw Object.assign(new Error('queryTxt ESERVFAIL'), { code: 'ESERVFAIL' });
    return lookup(name, rrtype);
  };
  const block = await seal(raw, senderDead);
  assert.match(block.toString(), /spf=temperror/);
});

test('the Gmail stand-in: STARTTLS, our SPF and ARC pass, and the third message to a mailbox within the window gets 421 4.7.28', async () => {
  const gmail = await startGmail({ perMailbox: { count: 2, windowMs: 60_000 } });
  const transport = nodemailer.createTransport({
    host: GMAIL_ADDRESS,
    port: 25,
    localAddress: '127.0.0.1',
    name: 'mx.failover.test',
    requireTLS: true,
    tls: { rejectUnauthorized: false },
  });
  try {
    const raw = await storedMessage();
    const copy = Buffer.concat([await seal(raw), raw]);
    const envelope = { from: BOUNCES, to: ['harborview.backup@gmail.example'] };
    await transport.sendMail({ envelope, raw: copy });
    await transport.sendMail({ envelope, raw: copy });
    await assert.rejects(
      transport.sendMail({ envelope, raw: copy }),
      (err: { responseCode?: number; response?: string }) => {
        assert.equal(err.responseCode, 421);
        assert.match(err.response ?? '', /^421 4\.7\.28 /);
        return true;
      },
    );
    assert.equal(gmail.kept.length, 2, 'the refused message is not kept');
    assert.equal(gmail.refusedTooFast, 1);
    const [first] = gmail.kept;
    assert.ok(first!.tls, 'nodemailer upgraded with STARTTLS');
    assert.ok(first!.raw.equals(copy));
    assert.deepEqual(
      {
        spf: first!.auth.spf,
        spfDomain: first!.auth.spfDomain,
        arc: first!.auth.arc,
        dkim: first!.auth.dkim,
      },
      {
        spf: 'pass',
        spfDomain: FORWARDING_DOMAIN,
        arc: 'pass',
        dkim: [{ domain: DKIM_DOMAIN, result: 'pass' }],
      },
    );
  } finally {
    transport.close();
    await gmail.close();
  }
});

test('a notification email carries our DKIM signature, which verifies against the DNS', async () => {
  const relay = await startCatcher();
  try {
    const notify = createNotifyActivities({
      config: testConfig({ MXF_SMTP_RELAY: `127.0.0.1:${relay.port}` }),
    });
    const results = await notify.notifyContacts({
      runbook: runbookWithPrimaryAt(await freePort()),
      step: 0,
      channels: ['email'],
      heldMessages: 3,
      declaredAt: new Date().toISOString(),
    });
    assert.equal(results[0]?.ok, true, results[0]?.detail);
    assert.equal(relay.caught.length, 1);
    const { raw, from } = relay.caught[0]!;
    const res = await authenticate(raw, {
      ip: '127.0.0.1',
      sender: from,
      mta: GMAIL_MTA,
      resolver: lookup as DNSResolver,
      disableBimi: true,
    });
    assert.deepEqual(dkimOf(res), [{ domain: FORWARDING_DOMAIN, result: 'pass' }]);
  } finally {
    await relay.close();
  }
});

test('dns:records: processes starting together on a fresh data folder make one key between them, mode 0600', async () => {
  const dataDir = join(testTmp(), `dkim-race-${Date.now()}`);
  const run = () =>
    new Promise<string>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', join(__dirname, '../src/cli/dns-records.ts'), '--json'],
        {
          env: { ...process.env, MXF_DATA_DIR: dataDir, MXF_DKIM_KEY_FILE: '' },
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      let out = '';
      child.stdout.on('data', (c: Buffer) => {
        out += c;
      });
      child.on('error', reject);
      child.on('exit', (code) =>
        code === 0 ? resolve(out) : reject(new Error(`dns:records exited ${code}`)),
      );
    });
  const outputs = await Promise.all([run(), run(), run()]);
  const dkimValues = outputs.map((out) => {
    const parsed = JSON.parse(out) as { records: { type: string; name: string; value: string }[] };
    assert.deepEqual(
      parsed.records.map((r) => `${r.type} ${r.name}`),
      [`TXT ${FORWARDING_DOMAIN}`, `TXT mxf._domainkey.${FORWARDING_DOMAIN}`, `MX ${FORWARDING_DOMAIN}`],
    );
    assert.equal(parsed.records[0]!.value, 'v=spf1 ip4:127.0.0.1 -all');
    return parsed.records[1]!.value;
  });
  assert.equal(new Set(dkimValues).size, 1, 'one key for all');
  assert.deepEqual(readdirSync(join(dataDir, 'keys')), ['dkim-mxf.pem'], 'no temporary file left behind');
  assert.equal(statSync(join(dataDir, 'keys', 'dkim-mxf.pem')).mode & 0o777, 0o600);
});

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import type { Config } from '../src/config';
import { parseReturnPath, returnPathFor, returnPathSecret, targetHashOf } from '../src/mail/return-path';

// The signed return address of forwarded copies: pure, no stack needed.
const key = { domain: 'failover.test', secret: 'a-test-secret-of-enough-length' };
const FORWARD = 'forward:it@gmail.example';
const DAY = 86_400_000;
const sentAt = new Date('2026-03-01T12:00:00Z');

test('a return address parses back to its message and target', () => {
  const address = returnPathFor(key, '123456789', FORWARD, sentAt);
  assert.deepEqual(parseReturnPath(key, address, new Date(sentAt.getTime() + DAY)), {
    ok: true,
    messageId: '123456789',
    targetHash: targetHashOf(FORWARD),
  });
  assert.notEqual(targetHashOf(FORWARD), targetHashOf('forward:other@gmail.example'));
  assert.match(targetHashOf(FORWARD), /^[0-9a-f]{8}$/);
});

test('only lower-case letters, digits and = in a local part of at most 64 characters', () => {
  const longest = returnPathFor(key, String(2n ** 63n - 1n), 'redirect:MX.Example.COM:25', sentAt);
  const [local, domain] = longest.split('@');
  assert.match(local!, /^[a-z0-9=]+$/);
  assert.ok(local!.length <= 64, `${local!.length} characters`);
  assert.equal(domain, 'failover.test');
  assert.equal(parseReturnPath(key, longest, sentAt).ok, true);
});

test('an MTA that upper-cases the address does not break it', () => {
  const address = returnPathFor(key, '42', FORWARD, sentAt).toUpperCase();
  assert.deepEqual(parseReturnPath(key, address, sentAt), {
    ok: true,
    messageId: '42',
    targetHash: targetHashOf(FORWARD),
  });
});

test('a changed mac, message, target or expiry fails the signature', () => {
  const address = returnPathFor(key, '42', FORWARD, sentAt);
  const [local, domain] = address.split('@') as [string, string];
  const fields = local.split('=');
  const flip = (s: string) => s.slice(0, -1) + (s.endsWith('0') ? '1' : '0');
  for (const i of [1, 2, 3, 4]) {
    const tampered = fields.map((f, j) => (j === i ? flip(f) : f)).join('=');
    assert.deepEqual(
      parseReturnPath(key, `${tampered}@${domain}`, sentAt),
      {
        ok: false,
        reason: 'bad-signature',
      },
      `field ${i}`,
    );
  }
  const otherSecret = { ...key, secret: 'another-secret-of-enough-length' };
  assert.deepEqual(parseReturnPath(otherSecret, address, sentAt), { ok: false, reason: 'bad-signature' });
});

test('an address at another domain is not ours, even with a valid local part', () => {
  const address = returnPathFor(key, '42', FORWARD, sentAt);
  const elsewhere = address.replace('@failover.test', '@evil.example');
  assert.deepEqual(parseReturnPath(key, elsewhere, sentAt), { ok: false, reason: 'not-ours' });
  // Signed for another domain with the same secret: not valid here.
  const signedElsewhere = returnPathFor({ ...key, domain: 'other.test' }, '42', FORWARD, sentAt);
  const moved = signedElsewhere.replace('@other.test', '@failover.test');
  assert.deepEqual(parseReturnPath(key, moved, sentAt), { ok: false, reason: 'bad-signature' });
});

test('an address works for 21 days, and is expired after', () => {
  const address = returnPathFor(key, '42', FORWARD, sentAt);
  assert.equal(parseReturnPath(key, address, new Date(sentAt.getTime() + 21 * DAY)).ok, true);
  assert.deepEqual(parseReturnPath(key, address, new Date(sentAt.getTime() + 22 * DAY)), {
    ok: false,
    reason: 'expired',
  });
});

test('malformed return addresses', () => {
  for (const local of [
    'postmaster',
    'mxfb',
    'mxfb=42=abcdef01=k4f',
    'mxfb=042=abcdef01=k4f=0123456789abcdef0123',
    'mxfb=42=abcdef01=k4f=0123456789abcdef012',
    'mxfb=42=abcdef01=k4f=0123456789abcdef0123=x',
    'mxfb=99999999999999999999=abcdef01=k4f=0123456789abcdef0123',
    'mxfb=9223372036854775808=abcdef01=k4f=0123456789abcdef0123',
    'mxfb=42=abcdef01=k4f=0123456789abcdef0123%evil.example',
    '"mxfb=42=abcdef01=k4f=0123456789abcdef0123"',
  ]) {
    assert.deepEqual(
      parseReturnPath(key, `${local}@failover.test`, sentAt),
      { ok: false, reason: 'malformed' },
      local,
    );
  }
  assert.deepEqual(parseReturnPath(key, 'no-at-sign', sentAt), { ok: false, reason: 'not-ours' });
});

test('only held_message ids can be signed', () => {
  for (const id of ['', 'abc', '01', '-1', '9223372036854775808', '1=2'])
    assert.throws(() => returnPathFor(key, id, FORWARD, sentAt), /held_message id/, id);
});

test('without a configured secret, one is made once, kept with mode 0600, and read back by every caller', async () => {
  const dataDirs = [await mkdtemp(join(tmpdir(), 'rp-')), await mkdtemp(join(tmpdir(), 'rp-'))];
  const config = (dataDir: string) =>
    ({ dataDir, outbound: { returnPath: { domain: 'failover.test' } } }) as unknown as Config;
  const first = returnPathSecret(config(dataDirs[0]!));
  assert.match(first, /^[0-9a-f]{64}$/);
  const file = join(dataDirs[0]!, 'keys', 'return-path.secret');
  assert.equal(statSync(file).mode & 0o777, 0o600);
  assert.equal(returnPathSecret(config(dataDirs[0]!)), first);
  assert.notEqual(returnPathSecret(config(dataDirs[1]!)), first, 'each data folder has its own');
  const configured = {
    dataDir: dataDirs[0],
    outbound: { returnPath: { domain: 'x.test', secret: 's'.repeat(16) } },
  };
  assert.equal(returnPathSecret(configured as unknown as Config), 's'.repeat(16));
});

test('processes starting together agree on one secret', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'rp-race-'));
  const script =
    "const { returnPathSecret } = require('./src/mail/return-path');" +
    'process.stdout.write(returnPathSecret({ dataDir: process.argv[1], outbound: { returnPath: {} } }));';
  const run = () =>
    promisify(execFile)(process.execPath, ['--import', 'tsx', '-e', script, dataDir], {
      cwd: join(__dirname, '..'),
    });
  const secrets = (await Promise.all(Array.from({ length: 6 }, run))).map((r) => r.stdout);
  assert.match(secrets[0]!, /^[0-9a-f]{64}$/);
  assert.deepEqual(new Set(secrets).size, 1, secrets.join('\n'));
  assert.deepEqual(readdirSync(join(dataDir, 'keys')), ['return-path.secret'], 'no temporary files left');
});

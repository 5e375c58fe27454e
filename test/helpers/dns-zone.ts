import { createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DnsRecord } from '../../src/stack/dns';

// The DNS the tests live in: scripts/test.ts serves these records from the test stack's private DNS server, which
// rspamd (and any MX lookup) uses, and which answers NXDOMAIN for every other name. So a test can say "this
// sender's SPF allows 127.0.0.1" or "this domain's DMARC policy is reject" and rspamd sees exactly that.

/** Signs with the test DKIM key (selector DKIM_SELECTOR); SPF allows 127.0.0.1; DMARC p=reject. */
export const DKIM_DOMAIN = 'signed.example.com';
export const DKIM_SELECTOR = 'mxf';
/** A brand that is spoofed: SPF allows only BANK_IP (not us), DMARC p=reject. */
export const BANK_DOMAIN = 'bank.example.net';
export const BANK_IP = '192.0.2.10';
/** An ordinary sender whose SPF allows 127.0.0.1 (so mail from the tests passes SPF), with no DMARC record. */
export const SPF_PASS_DOMAIN = 'sender.example.org';

/** Every record except the DKIM key, which is made per test run (see dkimRecord). */
export const TEST_DNS_RECORDS: readonly DnsRecord[] = Object.freeze([
  { type: 'TXT', name: DKIM_DOMAIN, value: 'v=spf1 ip4:127.0.0.1 -all' },
  { type: 'TXT', name: `_dmarc.${DKIM_DOMAIN}`, value: 'v=DMARC1; p=reject' },
  { type: 'TXT', name: BANK_DOMAIN, value: `v=spf1 ip4:${BANK_IP} -all` },
  { type: 'TXT', name: `_dmarc.${BANK_DOMAIN}`, value: 'v=DMARC1; p=reject' },
  { type: 'TXT', name: SPF_PASS_DOMAIN, value: 'v=spf1 ip4:127.0.0.1 -all' },
]);

/** The DKIM key record for a public key (the split into 255-byte strings is the DNS server's). */
export function dkimRecord(publicKey: KeyObject | string): DnsRecord {
  const key =
    typeof publicKey !== 'string' && publicKey.type === 'public' ? publicKey : createPublicKey(publicKey);
  const der = key.export({ type: 'spki', format: 'der' });
  return {
    type: 'TXT',
    name: `${DKIM_SELECTOR}._domainkey.${DKIM_DOMAIN}`,
    value: `v=DKIM1; k=rsa; p=${der.toString('base64')}`,
  };
}

/**
 * For scripts/test.ts: a fresh RSA 2048 key pair for this run, its private key written to `dir` (the path goes
 * to the tests as TEST_DKIM_KEY_FILE), and every record the test DNS serves.
 */
export function makeTestZone(dir: string): { records: DnsRecord[]; dkimKeyFile: string } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const dkimKeyFile = join(dir, `dkim-${DKIM_SELECTOR}.pem`);
  writeFileSync(dkimKeyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  return { records: [...TEST_DNS_RECORDS, dkimRecord(publicKey)], dkimKeyFile };
}

/** The DKIM key the test DNS publishes, in nodemailer's `dkim` option shape. */
export function testDkimKey(): { domainName: string; keySelector: string; privateKey: string } {
  const file = process.env.TEST_DKIM_KEY_FILE;
  if (!file) throw new Error('TEST_DKIM_KEY_FILE is not set: run the tests with `npm test`');
  return { domainName: DKIM_DOMAIN, keySelector: DKIM_SELECTOR, privateKey: readFileSync(file, 'utf8') };
}

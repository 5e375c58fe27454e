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

/**
 * Us, in the tests' world (README "Routing"): our MX name and address, and our forwarding domain, which signs
 * forwarded copies (DKIM/ARC selector OUR_SELECTOR), is their envelope sender's domain (SPF allows 127.0.0.0/8,
 * where every test server lives) and takes their bounces. scripts/test.ts exports the matching MXF_ variables.
 */
export const OUR_MX = 'mx.failover.test';
export const OUR_ADDRESS = '127.0.0.1';
export const FORWARDING_DOMAIN = 'failover.test';
export const OUR_SELECTOR = 'mxf';
/** A stand-in for Gmail: its MX is a receiver a test starts on GMAIL_ADDRESS, port 25. */
export const GMAIL_DOMAIN = 'gmail.example';
export const GMAIL_ADDRESS = '127.0.0.25';
/** RFC 7505: takes no mail at all. */
export const NULL_MX_DOMAIN = 'nullmx.example';
/** A customer whose DNS lists its own server (DNS_PRIMARY_ADDRESS, port 25) at 10 and us at 20. */
export const DNS_PRIMARY_DOMAIN = 'dnsprimary.example';
export const DNS_PRIMARY_ADDRESS = '127.0.0.31';
/** A customer whose DNS lists one of our own addresses at 10, below us at 20: any delivery there would loop. */
export const LOOP_DOMAIN = 'loopy.example';

/** The MX of DKIM_DOMAIN, the signing sender's domain: a test listens there to see that a bounce never reaches it. */
export const SENDER_MX_ADDRESS = '127.0.0.40';

const ROUTING_RECORDS: DnsRecord[] = [
  { type: 'MX', name: DKIM_DOMAIN, host: `mx.${DKIM_DOMAIN}`, preference: 10 },
  { type: 'A', name: `mx.${DKIM_DOMAIN}`, address: SENDER_MX_ADDRESS },
  { type: 'A', name: OUR_MX, address: OUR_ADDRESS },
  { type: 'TXT', name: FORWARDING_DOMAIN, value: 'v=spf1 ip4:127.0.0.0/8 -all' },
  { type: 'MX', name: GMAIL_DOMAIN, host: `mx.${GMAIL_DOMAIN}`, preference: 10 },
  { type: 'A', name: `mx.${GMAIL_DOMAIN}`, address: GMAIL_ADDRESS },
  { type: 'MX', name: NULL_MX_DOMAIN, host: '.', preference: 0 },
  { type: 'MX', name: DNS_PRIMARY_DOMAIN, host: `mx1.${DNS_PRIMARY_DOMAIN}`, preference: 10 },
  { type: 'MX', name: DNS_PRIMARY_DOMAIN, host: OUR_MX, preference: 20 },
  { type: 'A', name: `mx1.${DNS_PRIMARY_DOMAIN}`, address: DNS_PRIMARY_ADDRESS },
  { type: 'MX', name: LOOP_DOMAIN, host: `mx1.${LOOP_DOMAIN}`, preference: 10 },
  { type: 'MX', name: LOOP_DOMAIN, host: OUR_MX, preference: 20 },
  { type: 'A', name: `mx1.${LOOP_DOMAIN}`, address: OUR_ADDRESS },
];

/** The MXF_ variables that make every process of a test run the "us" of these records. */
export function ourIdentityEnv(dkimKeyFile: string, secret: string): Record<string, string> {
  return {
    MXF_MX_NAMES: OUR_MX,
    MXF_MX_ADDRESSES: OUR_ADDRESS,
    MXF_RETURN_PATH_DOMAIN: FORWARDING_DOMAIN,
    MXF_RETURN_PATH_SECRET: secret,
    MXF_DKIM_SELECTOR: OUR_SELECTOR,
    MXF_DKIM_KEY_FILE: dkimKeyFile,
  };
}

/** Every record except the DKIM keys, which are made per test run (see dkimRecord). */
export const TEST_DNS_RECORDS: readonly DnsRecord[] = Object.freeze([
  { type: 'TXT', name: DKIM_DOMAIN, value: 'v=spf1 ip4:127.0.0.1 -all' },
  { type: 'TXT', name: `_dmarc.${DKIM_DOMAIN}`, value: 'v=DMARC1; p=reject' },
  { type: 'TXT', name: BANK_DOMAIN, value: `v=spf1 ip4:${BANK_IP} -all` },
  { type: 'TXT', name: `_dmarc.${BANK_DOMAIN}`, value: 'v=DMARC1; p=reject' },
  { type: 'TXT', name: SPF_PASS_DOMAIN, value: 'v=spf1 ip4:127.0.0.1 -all' },
  ...ROUTING_RECORDS,
]);

/** The DKIM key record for a public key (the split into 255-byte strings is the DNS server's). */
export function dkimRecord(
  publicKey: KeyObject | string,
  at: { domain: string; selector: string } = { domain: DKIM_DOMAIN, selector: DKIM_SELECTOR },
): DnsRecord {
  const key =
    typeof publicKey !== 'string' && publicKey.type === 'public' ? publicKey : createPublicKey(publicKey);
  const der = key.export({ type: 'spki', format: 'der' });
  return {
    type: 'TXT',
    name: `${at.selector}._domainkey.${at.domain}`,
    value: `v=DKIM1; k=rsa; p=${der.toString('base64')}`,
  };
}

/**
 * For scripts/test.ts: a fresh RSA 2048 key pair for this run, its private key written to `dir` (the path goes
 * to the tests as TEST_DKIM_KEY_FILE), and every record the test DNS serves.
 */
export function makeTestZone(dir: string): { records: DnsRecord[]; dkimKeyFile: string; ourKeyFile: string } {
  const key = (file: string) => {
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(join(dir, file), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    return { publicKey, file: join(dir, file) };
  };
  const sender = key(`dkim-${DKIM_SELECTOR}.pem`);
  const ours = key(`our-dkim-${OUR_SELECTOR}.pem`);
  return {
    records: [
      ...TEST_DNS_RECORDS,
      dkimRecord(sender.publicKey),
      dkimRecord(ours.publicKey, { domain: FORWARDING_DOMAIN, selector: OUR_SELECTOR }),
    ],
    dkimKeyFile: sender.file,
    ourKeyFile: ours.file,
  };
}

/** The DKIM key the test DNS publishes, in nodemailer's `dkim` option shape. */
export function testDkimKey(): { domainName: string; keySelector: string; privateKey: string } {
  const file = process.env.TEST_DKIM_KEY_FILE;
  if (!file) throw new Error('TEST_DKIM_KEY_FILE is not set: run the tests with `npm test`');
  return { domainName: DKIM_DOMAIN, keySelector: DKIM_SELECTOR, privateKey: readFileSync(file, 'utf8') };
}

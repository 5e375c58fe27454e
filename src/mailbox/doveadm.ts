import { createHmac } from 'node:crypto';
import type { Config } from '../config';
import { masterSecret } from './imap';

// Dovecot's admin HTTP API (doveadm), for what IMAP cannot do: end a mailbox's open sessions. A phone in IMAP IDLE
// stays signed in across a password reset or the outage's end until its connection closes; kicking it makes it
// sign in again, with the new password or not at all. The API key is derived from the master secret: one secret
// fewer to share between our services and Dovecot, and a different string on the wire.

export const doveadmApiKey = (config: Pick<Config, 'mailbox' | 'dataDir'>) =>
  createHmac('sha256', masterSecret(config)).update('doveadm http api').digest('hex');

/** Ends every open session (IMAP, submission) of these mailboxes; throws when Dovecot did not do it. */
export async function kickMailboxes(
  config: Pick<Config, 'mailbox' | 'dataDir'>,
  addresses: string[],
): Promise<void> {
  if (addresses.length === 0) return;
  const { host, doveadmPort } = config.mailbox;
  const res = await fetch(`http://${host}:${doveadmPort}/doveadm/v1`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: `X-Dovecot-API ${Buffer.from(doveadmApiKey(config)).toString('base64')}`,
    },
    body: JSON.stringify([['kick', { mask: addresses.map((a) => a.toLowerCase()) }, 'kick']]),
    signal: AbortSignal.timeout(10_000),
  });
  const body = await res.text();
  if (!res.ok || !body.includes('"doveadmResponse"'))
    throw new Error(`Dovecot did not end the sessions (${res.status}): ${body.slice(0, 200)}`);
}

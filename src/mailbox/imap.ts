import { ImapFlow } from 'imapflow';
import type { Config } from '../config';
import { keptSecret } from '../store/secrets';

// Our own services (the filler's crash check, the web inbox, the Sent copy of submitted mail, retention) reach a
// mailbox through IMAP like any client, as Dovecot's master user: `<address>*mxf-master`. The master user exists
// only in a passwd-file Dovecot reads from our data folder (src/stack/dovecot.ts); people never learn it.

export const MASTER_USER = 'mxf-master';
export const MASTER_SEPARATOR = '*';

export const masterSecret = (config: Pick<Config, 'mailbox' | 'dataDir'>): string =>
  config.mailbox.masterSecret ?? keptSecret(config.dataDir, 'dovecot-master.secret');

/** An IMAP client signed in to `address` as our master user, over STARTTLS (call connect(), then logout()). */
export function mailboxImap(config: Pick<Config, 'mailbox' | 'dataDir'>, address: string): ImapFlow {
  const { host, imapPort } = config.mailbox;
  return new ImapFlow({
    host,
    port: imapPort,
    secure: false,
    // Dovecot refuses passwords without TLS; its certificate is the stack's self-signed one on this host.
    doSTARTTLS: true,
    tls: { rejectUnauthorized: false },
    auth: { user: `${address.toLowerCase()}${MASTER_SEPARATOR}${MASTER_USER}`, pass: masterSecret(config) },
    logger: false,
  });
}

/** Runs `fn` with a signed-in client and always signs out. */
export async function withMailbox<T>(
  config: Pick<Config, 'mailbox' | 'dataDir'>,
  address: string,
  fn: (imap: ImapFlow) => Promise<T>,
): Promise<T> {
  const imap = mailboxImap(config, address);
  await imap.connect();
  try {
    return await fn(imap);
  } finally {
    await imap.logout().catch(() => imap.close());
  }
}

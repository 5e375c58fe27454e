import { ImapFlow } from 'imapflow';
import type { Config } from '../../src/config';

/** A mail app's IMAP client for a temporary mailbox: STARTTLS (Dovecot's certificate is the stack's own), no log. */
export function imapClient(config: Pick<Config, 'mailbox'>, user: string, pass: string): ImapFlow {
  return new ImapFlow({
    host: config.mailbox.host,
    port: config.mailbox.imapPort,
    secure: false,
    doSTARTTLS: true,
    tls: { rejectUnauthorized: false },
    auth: { user, pass },
    logger: false,
  });
}

/** Signed in and out again: does this password open the mailbox now? */
export async function canSignIn(
  config: Pick<Config, 'mailbox'>,
  user: string,
  pass: string,
): Promise<boolean> {
  const imap = imapClient(config, user, pass);
  try {
    await imap.connect();
    await imap.logout();
    return true;
  } catch {
    return false;
  }
}

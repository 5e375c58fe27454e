import type { ImapFlow } from 'imapflow';
import type { Config } from '../config';
import type { Logger } from '../log';
import { mailboxImap } from '../mailbox/imap';
import { mailServerDown } from './errors';

// One IMAP session a request, signed in as our master user on the reader's behalf (src/mailbox/imap.ts). Sign-in
// on loopback costs a few milliseconds; holding a connection per browser session would cost Dovecot a process per
// idle reader, and a reader on a phone is idle most of the time.

export interface ImapDeps {
  config: Config;
  log: Logger;
}

/** A signed-in client; the caller signs out (closeMailbox). Not reaching Dovecot reads as "try again". */
export async function openMailbox(deps: ImapDeps, address: string): Promise<ImapFlow> {
  const imap = mailboxImap(deps.config, address);
  // An ImapFlow without an error listener would take the whole process down with a dropped socket.
  imap.on('error', (err: Error) => deps.log.warn({ err }, 'web inbox: IMAP connection failed'));
  try {
    await imap.connect();
  } catch (err) {
    deps.log.error({ err }, 'web inbox: IMAP sign-in failed');
    imap.close();
    throw mailServerDown();
  }
  return imap;
}

export async function closeMailbox(imap: ImapFlow): Promise<void> {
  await imap.logout().catch(() => imap.close());
}

export async function useMailbox<T>(
  deps: ImapDeps,
  address: string,
  fn: (imap: ImapFlow) => Promise<T>,
): Promise<T> {
  const imap = await openMailbox(deps, address);
  try {
    return await fn(imap);
  } finally {
    await closeMailbox(imap);
  }
}

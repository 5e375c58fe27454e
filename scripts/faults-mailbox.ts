import { performance } from 'node:perf_hooks';
import { SMTPServer } from 'smtp-server';
import { freePort } from '../test/helpers/ports';

// The forward target (Gmail, played by a local SMTP server) as the fault suite needs it: every copy it accepts,
// with the SMTP session it came on and when. A duplicate is excused only when it can be traced to a worker killed
// with a delivery session open, so the mailbox keeps when each session opened and closed, on the same clock
// (performance.now) as the suite's kills.

export interface Copy {
  sessionId: string;
  /** When the final dot was answered with 250: the moment the copy counts as delivered. */
  at: number;
  to: string[];
  raw: Buffer;
}

export interface MailSession {
  id: string;
  openedAt: number;
  /** Undefined while the connection is still open. */
  closedAt?: number;
}

export interface Mailbox {
  port: number;
  copies: Copy[];
  sessions: Map<string, MailSession>;
  close(): Promise<void>;
}

export async function startMailbox(): Promise<Mailbox> {
  const copies: Copy[] = [];
  const sessions = new Map<string, MailSession>();
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    onConnect(session, callback) {
      sessions.set(session.id, { id: session.id, openedAt: performance.now() });
      callback();
    },
    onClose(session) {
      const s = sessions.get(session.id);
      if (s) s.closedAt = performance.now();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        copies.push({
          sessionId: session.id,
          at: performance.now(),
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks),
        });
        callback();
      });
    },
  });
  // A killed worker resets its connection mid-session: expected here, and recorded by onClose.
  server.on('error', () => {});
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port,
    copies,
    sessions,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

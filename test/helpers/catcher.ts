import { SMTPServer } from 'smtp-server';
import { freePort } from './ports';

export interface Caught {
  from: string;
  to: string[];
  raw: Buffer;
  /** When the server had the whole message (Date.now()), for tests that measure a pace or a schedule. */
  at: number;
}

export interface CatcherOptions {
  refuse?: (rcpt: string) => number | undefined;
  port?: number;
  /** Another loopback address, for a server that DNS names (an MX on port 25). */
  host?: string;
  /**
   * Runs before the server answers a RCPT or the final dot of DATA, and the answer waits for it: a test can stall
   * the server or kill the client at one precise moment. `index` counts the messages kept before this one. At
   * 'data' this message is already kept: the remote has accepted it, whether or not its 250 is ever read.
   */
  beforeReply?: (stage: 'rcpt' | 'data', index: number) => Promise<void> | void;
}

/**
 * A local SMTP server standing in for a real one (the customer's primary MX, Gmail): it keeps what it accepts.
 * `refuse` answers a recipient with a code of our choosing (550 permanent, 450 temporary).
 */
export async function startCatcher(opts: CatcherOptions = {}) {
  const caught: Caught[] = [];
  // A hook that throws fails the test (an unhandled rejection); the server answers anyway, so no session hangs.
  const hooked = async (stage: 'rcpt' | 'data') => {
    await opts.beforeReply?.(stage, caught.length - (stage === 'data' ? 1 : 0));
  };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    onRcptTo(address, _session, callback) {
      const code = opts.refuse?.(address.address);
      hooked('rcpt').finally(() =>
        code ? callback(Object.assign(new Error('refused by test'), { responseCode: code })) : callback(),
      );
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        caught.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks),
          at: Date.now(),
        });
        hooked('data').finally(() => callback());
      });
    },
  });
  // A client that dies mid-session (a killed worker) resets its connection: that is its problem, not ours.
  server.on('error', () => {});
  const port = opts.port ?? (await freePort());
  await new Promise<void>((resolve) => server.listen(port, opts.host ?? '127.0.0.1', resolve));
  return { port, caught, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** The Message-ID of each message caught, in arrival order: which message arrived, and how often. */
export const messageIdsOf = (caught: Caught[]) =>
  caught.map((m) => /Message-ID: <([^>]+)>/i.exec(m.raw.toString())?.[1] ?? '');

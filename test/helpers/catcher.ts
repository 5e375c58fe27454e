import { SMTPServer } from 'smtp-server';
import { freePort } from './ports';

export interface Caught {
  from: string;
  to: string[];
  raw: Buffer;
}

/**
 * A local SMTP server standing in for a real one (the customer's primary MX, Gmail): it keeps what it accepts.
 * `refuse` answers a recipient with a code of our choosing (550 permanent, 450 temporary).
 */
export async function startCatcher(
  opts: { refuse?: (rcpt: string) => number | undefined; port?: number; rcptDelayMs?: number } = {},
) {
  const caught: Caught[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    logger: false,
    onRcptTo(address, _session, callback) {
      const code = opts.refuse?.(address.address);
      const answer = () =>
        code ? callback(Object.assign(new Error('refused by test'), { responseCode: code })) : callback();
      // A slow server: most of each delivery's time is spent before DATA, where a dead client delivers nothing.
      if (opts.rcptDelayMs) setTimeout(answer, opts.rcptDelayMs);
      else answer();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        caught.push({
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((r) => r.address),
          raw: Buffer.concat(chunks),
        });
        callback();
      });
    },
  });
  // A client that dies mid-session (a killed worker) resets its connection: that is its problem, not ours.
  server.on('error', () => {});
  const port = opts.port ?? (await freePort());
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { port, caught, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

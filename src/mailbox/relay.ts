import { SMTPServer, type SMTPServerSession } from 'smtp-server';
import type { Logger } from '../log';
import { SubmissionRefused, type SubmitDeps, submitFromMailbox } from './submit';

// What Dovecot's submission service hands on (src/stack/dovecot.ts: submission_relay_host): a message from a
// person who signed in to Dovecot, named by XCLIENT LOGIN. Only Dovecot's address may use XCLIENT; a connection
// without it has nobody signed in and can send nothing, so nobody reaches the outside world through us without a
// password. Listening on loopback only.

export function buildSubmissionRelay(deps: SubmitDeps & { dovecotAddresses: string[]; log: Logger }) {
  const { config, log } = deps;
  return new SMTPServer({
    name: config.hostname,
    banner: 'MX Failover submission relay (for our Dovecot only)',
    useXClient: deps.dovecotAddresses,
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    size: config.smtp.maxSize,
    logger: false,
    // XCLIENT LOGIN=<address>: Dovecot has checked that person's password.
    onAuth(auth, _session, callback) {
      if (auth.method !== 'XCLIENT' || !auth.username)
        return callback(new Error("5.7.0 authentication is Dovecot's"));
      callback(null, { user: auth.username.toLowerCase() });
    },
    onMailFrom(_address, session, callback) {
      if (!signedIn(session)) return callback(refusal(530, '5.7.0 sign in first (submission needs AUTH)'));
      callback();
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if ((stream as unknown as { sizeExceeded?: boolean }).sizeExceeded)
          return callback(refusal(552, `5.3.4 message larger than ${config.smtp.maxSize} bytes`));
        const raw = Buffer.concat(chunks);
        submitFromMailbox(deps, signedIn(session)!, {
          raw,
          envelopeFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          recipients: session.envelope.rcptTo.map((r) => r.address),
        }).then(
          (s) => callback(null, `2.0.0 queued as ${s.messageId}`),
          (err: Error) => {
            if (err instanceof SubmissionRefused) return callback(refusal(err.code, err.message));
            log.error({ err, mailbox: signedIn(session) }, 'submission failed');
            callback(refusal(451, '4.3.0 could not store the message; try again in a few minutes'));
          },
        );
      });
    },
  });
}

const signedIn = (session: SMTPServerSession): string | undefined =>
  typeof session.user === 'string' && session.user ? session.user : undefined;

function refusal(code: number, message: string): Error {
  return Object.assign(new Error(message), { responseCode: code });
}

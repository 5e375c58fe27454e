import { SMTPServer, type SMTPServerAddress, type SMTPServerSession } from 'smtp-server';
import type { Config } from '../config';
import { acceptsRecipient, type Runbook } from '../domain/runbook';
import type { Logger } from '../log';

export interface IngestDeps {
  config: Config;
  runbooks: Runbook[];
  log: Logger;
}

/** An SMTP reply with its code and enhanced status, as smtp-server expects errors to carry them. */
export function smtpReply(code: number, enhanced: string, text: string): Error & { responseCode: number } {
  return Object.assign(new Error(`${enhanced} ${text}`), { responseCode: code });
}

/**
 * The backup MX listener. Built so far: the relay policy at RCPT time. Not built yet (issue 3): storing the
 * body. Until then DATA is answered 451 so senders keep the message and retry; nothing is ever acknowledged
 * that is not stored.
 */
export function createSmtpServer({ config, runbooks, log }: IngestDeps): SMTPServer {
  const byDomain = new Map(runbooks.flatMap((rb) => rb.domains.map((d) => [d, rb] as const)));
  return new SMTPServer({
    name: config.hostname,
    banner: 'MX Failover backup MX',
    authOptional: true,
    disabledCommands: ['AUTH', 'STARTTLS'],
    hideENHANCEDSTATUSCODES: false,
    logger: false,
    onRcptTo(address: SMTPServerAddress, _session: SMTPServerSession, callback: (err?: Error) => void) {
      const domain = address.address.slice(address.address.lastIndexOf('@') + 1).toLowerCase();
      const runbook = byDomain.get(domain);
      if (!runbook)
        return callback(
          smtpReply(550, '5.7.1', 'relaying denied: we are not a mail exchanger for that domain'),
        );
      if (!acceptsRecipient(runbook, address.address))
        return callback(smtpReply(550, '5.1.1', 'no such recipient here'));
      callback();
    },
    onData(stream, session, callback) {
      stream.on('end', () => {
        log.warn({ session: session.id }, 'DATA refused: body storage is not built yet');
        callback(smtpReply(451, '4.3.2', 'cannot store messages yet; please try again later'));
      });
      stream.resume();
    },
  });
}

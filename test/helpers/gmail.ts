import { authenticate, type DNSResolver } from 'mailauth';
import { generate } from 'selfsigned';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';
import type { Config } from '../../src/config';
import { dnsLookupOf, mailResolver } from '../../src/mail/dns';
import { GMAIL_ADDRESS, GMAIL_DOMAIN } from './dns-zone';
import { testConfig } from './stack';

// A stand-in for Gmail's MX, on the address the test zone gives mx.gmail.example: STARTTLS, a size limit, the
// per-mailbox receiving limit (support.google.com/a/answer/1366776) and, for every message it keeps, the verdicts
// a receiver reaches with mailauth against the test DNS: what Gmail would think of our forwarded copies.

export const GMAIL_MTA = `mx.${GMAIL_DOMAIN}`;

/** Gmail's reply once our addresses send too fast (github.com/mail-in-a-box/mailinabox/issues/1771). */
const RATE_LIMITED =
  '4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address. ' +
  'To protect our users from spam, mail sent from your IP address has been temporarily rate limited.';

export interface Verdicts {
  dkim: { domain: string; result: string; comment?: string }[];
  /** The ARC chain's status: 'none' without one. */
  arc: string;
  spf: string;
  /** The domain SPF was checked for (the envelope sender's, else the HELO name's). */
  spfDomain: string;
  dmarc: string;
}

export interface GmailMessage {
  from: string;
  to: string[];
  raw: Buffer;
  at: number;
  /** The session was upgraded with STARTTLS. */
  tls: boolean;
  auth: Verdicts;
}

export interface GmailOptions {
  host?: string;
  port?: number;
  /** Advertised with SIZE and enforced (552), in bytes. */
  size?: number;
  /** `count` messages a mailbox at once, and `count` per `windowMs` on average; past it, RCPT gets 421 4.7.28 and the connection closes. */
  perMailbox?: { count: number; windowMs: number };
  /** For the DNS servers; testConfig() by default. */
  config?: Config;
}

export async function startGmail(opts: GmailOptions = {}) {
  const config = opts.config ?? testConfig();
  const lookup = dnsLookupOf(mailResolver(config.dns.servers));
  const kept: GmailMessage[] = [];
  const theoreticalArrival = new Map<string, number>(); // per mailbox: when its bucket is full again
  const stats = { refusedTooFast: 0 };

  // A token bucket per mailbox (GCRA): `count` at once, then one every windowMs/count. A sender that keeps to the
  // average never meets it, whatever the jitter of its clock; one that goes faster, even briefly past a burst of
  // `count`, gets 421 4.7.28 as Gmail answers.
  const tooFast = (mailbox: string) => {
    if (!opts.perMailbox) return false;
    const { count, windowMs } = opts.perMailbox;
    const emission = windowMs / count;
    const now = Date.now();
    const tat = Math.max(theoreticalArrival.get(mailbox) ?? now, now);
    if (tat - now > windowMs - emission) return true;
    theoreticalArrival.set(mailbox, tat + emission);
    return false;
  };

  const verdictsOf = async (raw: Buffer, session: SMTPServerSession, from: string): Promise<Verdicts> => {
    const res = await authenticate(raw, {
      ip: session.remoteAddress,
      helo: session.hostNameAppearsAs,
      sender: from,
      mta: GMAIL_MTA,
      resolver: lookup as DNSResolver,
      disableBimi: true,
    });
    return {
      dkim: res.dkim.results.map((r) => {
        // mailauth says why a signature failed ("bad signature", "body hash did not verify"); nothing when it passed.
        const comment = (r.status as { comment?: string }).comment;
        return { domain: r.signingDomain, result: r.status.result, ...(comment ? { comment } : {}) };
      }),
      arc: res.arc ? res.arc.status.result : 'none',
      spf: res.spf ? res.spf.status.result : 'none',
      spfDomain: res.spf ? res.spf.domain : '',
      dmarc: res.dmarc ? res.dmarc.status.result : 'none',
    };
  };

  const { private: key, cert } = await generate([{ name: 'commonName', value: GMAIL_MTA }], {
    keySize: 2048,
  });
  const server = new SMTPServer({
    name: GMAIL_MTA,
    key,
    cert,
    size: opts.size,
    authOptional: true,
    disabledCommands: ['AUTH'],
    logger: false,
    onRcptTo(address, _session, callback) {
      const mailbox = address.address.toLowerCase();
      if (!tooFast(mailbox)) return callback();
      stats.refusedTooFast += 1;
      callback(Object.assign(new Error(RATE_LIMITED), { responseCode: 421 }));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        if (stream.sizeExceeded) {
          const tooBig = "5.3.4 Your message exceeded Google's message size limits.";
          return callback(Object.assign(new Error(tooBig), { responseCode: 552 }));
        }
        const raw = Buffer.concat(chunks);
        const at = Date.now();
        const from = session.envelope.mailFrom ? session.envelope.mailFrom.address : '';
        const to = session.envelope.rcptTo.map((r) => r.address.toLowerCase());
        verdictsOf(raw, session, from).then(
          (auth) => {
            kept.push({ from, to, raw, at, tls: session.secure, auth });
            callback();
          },
          (err: Error) => callback(Object.assign(new Error(`4.3.0 ${err.message}`), { responseCode: 451 })),
        );
      });
    },
  });
  // A client cut off mid-session (a 421 closes the connection) is not the stand-in's problem.
  server.on('error', () => {});
  const host = opts.host ?? GMAIL_ADDRESS;
  const port = opts.port ?? 25;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    host,
    port,
    kept,
    get refusedTooFast() {
      return stats.refusedTooFast;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

import { isIP } from 'node:net';
import { domainToASCII } from 'node:url';
import nodemailer, { type Transporter } from 'nodemailer';
import type { Config } from '../config';
import type { DeliveryError } from '../domain/delivery';
import type { RouteHost } from '../domain/route';

// One SMTP transaction to a target's hosts, and its answer sorted the way the ledger needs it: accepted,
// refused for good (5xx), deferred (4xx), or the target not taking mail at all (TargetDeferred).

type SmtpError = Error & {
  responseCode?: number;
  response?: string;
  code?: string;
  recipient?: string;
  rejectedErrors?: SmtpError[];
};
const permanent = (err: SmtpError) => (err.responseCode ?? 0) >= 500;

/** The reply as the server sent it when one came, else the network error; never our own stack. */
export function deliveryErrorOf(err: SmtpError, at = new Date()): DeliveryError {
  return {
    at: at.toISOString(),
    replyCode: err.responseCode ?? null,
    message: (err.responseCode && err.response) || err.message,
  };
}

/** The target did not take the message now (4xx, network): nothing was recorded for it; try again later. */
export class TargetDeferred extends Error {
  constructor(readonly error: DeliveryError) {
    super(error.message);
  }
}

export interface RecipientReply {
  recipient: string;
  reply: string;
}

export type SendOutcome =
  | {
      kind: 'sent';
      accepted: string[];
      refused: RecipientReply[];
      deferred: (RecipientReply & { error: DeliveryError })[];
      response: string;
    }
  | { kind: 'permanent'; response: string };

/**
 * One SMTP session per batch and host, reusing its connection for every message (a new connection per message
 * cost a round trip and the server's greeting each time). One, not parallel sessions: a worker killed between a
 * server's 250 and our ledger write sends that message again, and with one session at most one message is ever in
 * that window. Parallel sessions (20, as Postfix uses) released a backlog about twice as fast, but a kill -9 under
 * load then sent up to 5 duplicates (npm run test:faults); exactly once matters more here than speed.
 */
export function transportFor(config: Config, to: RouteHost, requireTls: boolean) {
  return nodemailer.createTransport({
    pool: true,
    maxConnections: 1,
    maxMessages: 1_000,
    // A 421 before the message's bytes went (Gmail's "4.7.28 rate limited" at RCPT) is nodemailer's to retry on a
    // new connection, up to 5 times within a second: that hides the reply that should slow us down, and hammers a
    // receiver that asked for less. Every reply comes to us; the workflow decides when to try again.
    maxRequeues: 0,
    // The address DNS gave (Node's own lookup would ignore MXF_DNS_SERVERS), the name for TLS's SNI.
    host: to.address,
    port: to.port,
    name: config.hostname,
    secure: false,
    requireTLS: requireTls,
    // Opportunistic TLS between MTAs (RFC 3207, RFC 7435): STARTTLS whenever offered, and a self-signed or
    // mismatched certificate is still better than plain text. A redirect may require TLS.
    tls: { rejectUnauthorized: false, servername: isIP(to.name) ? undefined : to.name },
    connectionTimeout: 30_000,
    // RFC 5321 4.5.3.2: a client waits up to 5 minutes for the greeting and for the reply to the final dot.
    greetingTimeout: 5 * 60_000,
    socketTimeout: 10 * 60_000,
  });
}

function sorted(rejected: SmtpError[]) {
  const reply = (e: SmtpError) => ({ recipient: e.recipient ?? '', reply: e.response ?? e.message });
  return {
    refused: rejected.filter(permanent).map(reply),
    deferred: rejected.filter((e) => !permanent(e)).map((e) => ({ ...reply(e), error: deliveryErrorOf(e) })),
  };
}

/** Tries each host in preference order; a connection failure moves on, an SMTP answer is final. */
export async function sendVia(
  transports: Transporter[],
  envelope: { from: string; to: string[] },
  raw: Buffer,
): Promise<SendOutcome> {
  let lastError: SmtpError | undefined;
  for (const transport of transports) {
    try {
      const info = await transport.sendMail({ envelope, raw });
      const accepted = (info.accepted as string[]).map(String);
      const rejected = (info.rejectedErrors ?? []) as SmtpError[];
      return { kind: 'sent', accepted, ...sorted(rejected), response: info.response ?? '' };
    } catch (err) {
      const e = err as SmtpError;
      // Every recipient refused: nodemailer throws EENVELOPE with the answer for each one.
      if (e.code === 'EENVELOPE' && e.rejectedErrors?.length)
        return { kind: 'sent', accepted: [], ...sorted(e.rejectedErrors), response: e.message };
      // nodemailer's own refusal of the message (over the server's SIZE, say) will not change on a retry.
      if (permanent(e) || (e.code === 'EMESSAGE' && !e.responseCode))
        return { kind: 'permanent', response: e.response ?? e.message };
      lastError = e;
      if (e.responseCode) break; // a 4xx from a server that answered: retry later, not elsewhere
    }
  }
  throw new TargetDeferred(
    lastError
      ? deliveryErrorOf(lastError)
      : { at: new Date().toISOString(), replyCode: null, message: 'no host' },
  );
}

/** An address as nodemailer reports it back: the domain lower-cased and in ASCII (punycode). */
export function recipientKey(address: string): string {
  const at = address.lastIndexOf('@');
  const domain = address.slice(at + 1).toLowerCase();
  return `${address.slice(0, at)}@${domainToASCII(domain) || domain}`;
}

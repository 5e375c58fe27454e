import { randomBytes } from 'node:crypto';
import type { SMTPServerSession } from 'smtp-server';

/** Sortable by time, unique without coordination between ingest nodes: 9 chars of time, 10 of randomness. */
export function newQueueId(now = Date.now()): string {
  return `${now.toString(36).padStart(9, '0')}${randomBytes(5).toString('hex')}`.toUpperCase();
}

/** Where a body lives in the bucket; the day prefix lets the orphan sweep look at recent objects only. */
export function objectKeyFor(queueId: string, receivedAt: Date): string {
  return `held/${receivedAt.toISOString().slice(0, 10)}/${queueId}.eml`;
}

// Text the client chose (its HELO name) must not be able to break our header.
const printable = (s: string) =>
  s
    .replace(/[^\x21-\x7e]/g, '?')
    .replace(/[()]/g, '?')
    .slice(0, 255);

/** RFC 5322 date-time in UTC, e.g. "Fri, 27 Nov 2026 17:40:00 +0000". */
export function rfc5322Date(d: Date): string {
  return d.toUTCString().replace(/GMT$/, '+0000');
}

/**
 * Our trace header (RFC 5321 4.4): client HELO name and address, our name, the protocol (RFC 3848), TLS version
 * and cipher, the queue id, and the time. "for" names the recipient only when there is exactly one, so a
 * message to several people does not tell each of them who else received it.
 */
export function receivedHeader(
  session: SMTPServerSession,
  hostname: string,
  queueId: string,
  at: Date,
): Buffer {
  const helo = printable(session.hostNameAppearsAs || 'unknown');
  const reverse =
    typeof session.clientHostname === 'string' && !session.clientHostname.startsWith('[')
      ? `${printable(session.clientHostname)} `
      : '';
  const lines = [`Received: from ${helo} (${reverse}[${session.remoteAddress}])`];
  lines.push(`\tby ${hostname} (MX Failover) with ${session.transmissionType || 'ESMTP'} id ${queueId}`);
  const tls = tlsDescription(session);
  if (tls) lines.push(`\t(${tls})`);
  const rcpts = session.envelope.rcptTo;
  if (rcpts.length === 1) lines.push(`\tfor <${rcpts[0]!.address}>`);
  lines[lines.length - 1] += `; ${rfc5322Date(at)}`;
  return Buffer.from(`${lines.join('\r\n')}\r\n`, 'utf8');
}

export function tlsDescription(session: SMTPServerSession): string | null {
  const cipher = session.tlsOptions;
  if (!session.secure || !cipher) return null;
  return `version=${cipher.version} cipher=${cipher.standardName ?? cipher.name}`;
}

import type { Readable } from 'node:stream';
import type { SMTPServerSession } from 'smtp-server';
import type { Config } from '../config';
import { bounceResponse, readBounce } from '../mail/dsn';
import { parseReturnPath, type ReturnPathKey, returnPathSecret, targetHashOf } from '../mail/return-path';
import { ledgerTargetsOf, recordBounce } from '../store/bounces';
import type { BounceResult, RejectReason } from './metrics';
import { replies, type SmtpReply } from './replies';
import type { IngestDeps } from './smtp';

// Bounces of forwarded copies come back to the signed return addresses that src/mail/return-path.ts makes. They
// are read and recorded in the delivery ledger, never held and never relayed: the original sender may be forged,
// and a bounce passed on to it would be backscatter (DESIGN invariant 8). Each RCPT is checked in full, so that a
// forged, expired or stale address is refused before DATA, where one reply would have to answer for all of them.

/** The first bytes of a bounce are kept (its delivery status comes before the returned message), the rest dropped. */
const KEEP_BYTES = 64 * 1024;

const domainOf = (address: string) => address.slice(address.lastIndexOf('@') + 1).toLowerCase();

export const isReturnAddress = (config: Config, address: string) =>
  domainOf(address) === config.outbound.returnPath.domain;

/** A transaction holds bounces only, or none (see onRcptTo): its first recipient says which. */
export const isBounceTransaction = (config: Config, session: SMTPServerSession) =>
  session.envelope.rcptTo.length > 0 && isReturnAddress(config, session.envelope.rcptTo[0]!.address);

/** Bounces and customer mail in one transaction would need two different DATA replies; the later kind waits. */
export function mixesKinds(config: Config, session: SMTPServerSession, address: string): boolean {
  const bounce = isReturnAddress(config, address);
  return session.envelope.rcptTo.some((r) => isReturnAddress(config, r.address) !== bounce);
}

function returnPathKey(config: Config): ReturnPathKey {
  return { domain: config.outbound.returnPath.domain, secret: returnPathSecret(config) };
}

type Refusal = { reason: RejectReason; reply: SmtpReply };

/** The ledger targets a return address stands for, or the refusal to answer its RCPT with. */
async function bouncedCopy(
  deps: IngestDeps,
  address: string,
): Promise<{ messageId: string; targets: string[] } | Refusal> {
  const parsed = parseReturnPath(returnPathKey(deps.config), address);
  if (!parsed.ok)
    return parsed.reason === 'expired'
      ? { reason: 'expired_return_path', reply: replies.expiredReturnAddress() }
      : { reason: 'bad_return_path', reply: replies.notReturnAddress() };
  const targets = await ledgerTargetsOf(deps.sql, parsed.messageId);
  if (targets === null) return { reason: 'bounced_message_gone', reply: replies.bouncedMessageGone() };
  const matching = targets.filter((t) => targetHashOf(t) === parsed.targetHash);
  // The copy left but its ledger row is not written yet: the bounce was faster than our bookkeeping.
  if (matching.length === 0) return { reason: 'bounce_too_early', reply: replies.bounceTooEarly() };
  return { messageId: parsed.messageId, targets: matching };
}

/** RCPT to a return address: undefined to accept it, else the refusal (counted). */
export async function bounceRecipientReply(
  deps: IngestDeps,
  address: string,
  session: SMTPServerSession,
): Promise<SmtpReply | undefined> {
  try {
    const copy = await bouncedCopy(deps, address);
    if (!('reason' in copy)) return undefined;
    deps.metrics.rejected.inc({ reason: copy.reason });
    deps.log.info({ session: session.id, to: address, reason: copy.reason }, 'bounce refused at RCPT');
    return copy.reply;
  } catch (err) {
    deps.log.error({ session: session.id, err }, 'checking a return address failed; answering 451');
    deps.metrics.rejected.inc({ reason: 'local_error' });
    return replies.localError();
  }
}

/** DATA of a bounce transaction: read the report, record the failure per return address; any failure throws a reply. */
export async function acceptBounce(
  deps: IngestDeps,
  stream: Readable,
  session: SMTPServerSession,
): Promise<string> {
  const log = deps.log.child({ session: session.id });
  let raw: string;
  try {
    raw = await readCapped(stream, KEEP_BYTES);
  } catch (err) {
    stream.resume(); // smtp-server answers only once DATA has been read to its end
    log.warn({ err: (err as Error).message }, 'reading a bounce failed');
    throw replies.localError();
  }
  const report = readBounce(raw);
  const result: BounceResult = report.failed ? 'recorded' : 'not_a_failure';
  try {
    for (const { address } of session.envelope.rcptTo) {
      const copy = await bouncedCopy(deps, address);
      // Checked at RCPT a moment ago; a change since (the address expired at midnight) gets the same answer now.
      if ('reason' in copy) throw copy;
      const customers = report.failed
        ? await recordBounce(deps.sql, copy.messageId, copy.targets, bounceResponse(report))
        : [];
      log.info(
        { to: address, messageId: copy.messageId, status: report.status, result, customers },
        'bounce',
      );
      // The message is held again for the customer's own server: the outage recounts (and shows it) at once.
      for (const customerId of customers) deps.ring(customerId);
    }
  } catch (err) {
    if (isRefusal(err)) {
      deps.metrics.rejected.inc({ reason: err.reason });
      throw err.reply;
    }
    log.error({ err }, 'recording a bounce failed; answering 451');
    deps.metrics.rejected.inc({ reason: 'local_error' });
    throw replies.localError();
  }
  deps.metrics.bounces.inc({ result });
  return report.failed ? '2.0.0 Ok: bounce recorded' : '2.0.0 Ok: report read, nothing failed';
}

const isRefusal = (err: unknown): err is Refusal =>
  typeof err === 'object' && err !== null && 'reason' in err && 'reply' in err;

/** The first `cap` bytes of the DATA stream as text; the rest is read to its end, as smtp-server needs to reply. */
async function readCapped(stream: Readable, cap: number): Promise<string> {
  const kept: Buffer[] = [];
  let size = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    if (size < cap) kept.push(chunk.subarray(0, cap - size));
    size += chunk.length;
  }
  return Buffer.concat(kept).toString('utf8');
}

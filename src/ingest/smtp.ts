import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import {
  SMTPServer,
  type SMTPServerAddress,
  type SMTPServerOptions,
  type SMTPServerSession,
} from 'smtp-server';
import type { Config } from '../config';
import type { HeldMessage } from '../domain/message';
import { acceptsRecipient, type Runbook } from '../domain/runbook';
import type { Logger } from '../log';
import type { Sql } from '../store/db';
import { commitHeldMessage } from '../store/messages';
import type { BodyRef, BodyWriter } from '../store/objects';
import { withTimeout } from '../timeout';
import { BodyCheck, type BodyResult } from './body';
import {
  acceptBounce,
  bounceRecipientReply,
  isBounceTransaction,
  isReturnAddress,
  mixesKinds,
} from './bounces';
import { searchableHeaders } from './headers';
import type { IngestMetrics, RejectReason } from './metrics';
import { newQueueId, objectKeyFor, receivedHeader, tlsDescription } from './received';
import { replies, SmtpReply } from './replies';
import type { PatchOptions } from './smtp-server-patches';
import './smtp-server-patches';

export interface IngestDeps {
  config: Config;
  runbooks: Runbook[];
  log: Logger;
  sql: Sql;
  bodies: BodyWriter;
  metrics: IngestMetrics;
  tls: { key: string; cert: string };
  /** Told after each commit; never awaited before the 250. */
  ring: (customerId: string) => void;
}

/** RFC 5321 4.5.3.1.8: a server must accept at least 100 recipients; past that we say 452 and the sender retries. */
export const MAX_RECIPIENTS = 100;
/** RFC 5321 4.5.3.2.7: wait at least 5 minutes for the next command. */
const IDLE_TIMEOUT_MS = 5 * 60_000;
/** A body that takes longer than this to store (a stalled object store, a client gone silent) gets a 451. */
const STORE_TIMEOUT_MS = 10 * 60_000;

const domainOf = (address: string) => address.slice(address.lastIndexOf('@') + 1).toLowerCase();

/** The relay decision (DESIGN invariant 8): only runbook domains, only listed recipients, no routing tricks. */
export function recipientPolicy(
  byDomain: Map<string, Runbook>,
  address: string,
): { runbook: Runbook } | { refuse: RejectReason } {
  const runbook = byDomain.get(domainOf(address));
  if (!runbook) return { refuse: 'relay_denied' };
  // %-hack, bang paths and quoted local parts holding @ route mail to a third domain on MTAs that honour them.
  if (/[%!@]/.test(address.slice(0, address.lastIndexOf('@')))) return { refuse: 'address_trick' };
  if (!acceptsRecipient(runbook, address)) return { refuse: 'unknown_recipient' };
  return { runbook };
}

const REFUSALS: Partial<Record<RejectReason, () => SmtpReply>> = {
  relay_denied: replies.relayDenied,
  address_trick: replies.addressTrick,
  unknown_recipient: replies.unknownRecipient,
};

export function createSmtpServer(deps: IngestDeps): SMTPServer {
  const { config, log, metrics } = deps;
  const byDomain = new Map(deps.runbooks.flatMap((rb) => rb.domains.map((d) => [d, rb] as const)));
  const perIp = new Map<string, number>();
  const counted = new Set<string>();
  const refuse = (reason: RejectReason, reply: SmtpReply) => {
    metrics.rejected.inc({ reason });
    return reply;
  };

  return new SMTPServer({
    ...listenerOptions(deps),

    onConnect(session, callback) {
      const ip = session.remoteAddress;
      const open = perIp.get(ip) ?? 0;
      if (open >= config.smtp.maxPerIp) return callback(refuse('per_ip_limit', replies.tooManyFromYou()));
      perIp.set(ip, open + 1);
      counted.add(session.id);
      callback();
    },

    onClose(session) {
      if (!counted.delete(session.id)) return;
      const open = (perIp.get(session.remoteAddress) ?? 1) - 1;
      if (open > 0) perIp.set(session.remoteAddress, open);
      else perIp.delete(session.remoteAddress);
    },

    onRcptTo(address: SMTPServerAddress, session: SMTPServerSession, callback: (err?: Error) => void) {
      try {
        const already = session.envelope.rcptTo.some(
          (r) => r.address.toLowerCase() === address.address.toLowerCase(),
        );
        if (!already && session.envelope.rcptTo.length >= MAX_RECIPIENTS) {
          return callback(refuse('too_many_recipients', replies.tooManyRecipients()));
        }
        const notAlone = () => refuse('bounce_not_alone', replies.bounceNotAlone());
        if (isReturnAddress(config, address.address)) {
          if (mixesKinds(config, session, address.address)) return callback(notAlone());
          bounceRecipientReply(deps, address.address, session).then((reply) => callback(reply));
          return;
        }
        const decision = recipientPolicy(byDomain, address.address);
        if ('refuse' in decision) return callback(refuse(decision.refuse, REFUSALS[decision.refuse]!()));
        callback(mixesKinds(config, session, address.address) ? notAlone() : undefined);
      } catch (err) {
        log.error({ session: session.id, err }, 'RCPT handling failed');
        callback(refuse('local_error', replies.localError()));
      }
    },

    onData(stream, session, callback) {
      const accept = isBounceTransaction(config, session) ? acceptBounce : acceptMessage;
      accept(deps, stream, session, byDomain).then(
        (reply) => callback(null, reply),
        (err: unknown) =>
          callback(err instanceof SmtpReply ? err : unexpectedFailure(deps, err, stream, session)),
      );
    },
  });
}

/** How the listener behaves, apart from what it does with each command. */
function listenerOptions(deps: IngestDeps): SMTPServerOptions & PatchOptions & { noDelay: boolean } {
  const { config } = deps;
  return {
    greetPauseMs: config.smtp.greetPauseMs,
    // smtp-server answers a declared SIZE over the limit itself (552 5.3.4); we only count it.
    onDeclaredOversize: () => deps.metrics.rejected.inc({ reason: 'oversize' }),
    // smtp-server hands its options to net.createServer. Without TCP_NODELAY, Nagle's algorithm holds back a
    // reply written in two pieces until the client's delayed ACK (40 ms), several times per message.
    noDelay: true,
    name: config.hostname,
    banner: 'MX Failover ESMTP',
    key: deps.tls.key,
    cert: deps.tls.cert,
    size: config.smtp.maxSize,
    rejectOversized: true,
    maxClients: config.smtp.maxClients,
    socketTimeout: IDLE_TIMEOUT_MS,
    closeTimeout: 30_000,
    // An MX takes mail from anyone for its own domains: no AUTH, and no 530 for unauthenticated senders.
    disabledCommands: ['AUTH'],
    authOptional: true,
    hideENHANCEDSTATUSCODES: false,
    // DSN and REQUIRETLS are promises about the whole path to the mailbox, which forwarding to a mailbox of the
    // customer's choosing cannot keep; hidden, senders fall back to their own defaults.
    hideDSN: true,
    hideREQUIRETLS: true,
    // No DNS round trip per connection on the hot path; the Received header carries the address.
    disableReverseLookup: true,
    logger: false,
  };
}

/**
 * A bug, or a dependency failing in a way acceptMessage does not foresee. Passed on as it is, smtp-server would
 * answer 450 with the error's own text: our internals to a stranger, and no advice. It happened before the commit
 * (after it, acceptMessage answers 250), so no row exists and the sender only has to try again.
 */
function unexpectedFailure(deps: IngestDeps, err: unknown, stream: Readable, session: SMTPServerSession) {
  deps.log.error({ session: session.id, err }, 'accepting a message failed unexpectedly; answering 451');
  deps.metrics.rejected.inc({ reason: 'local_error' });
  stream.unpipe();
  stream.resume(); // smtp-server answers only once DATA has been read to its end
  return replies.localError();
}

/** Stream the body to object storage, commit its rows, and only then produce the 250 text; any failure throws a reply. */
async function acceptMessage(
  deps: IngestDeps,
  stream: Readable,
  session: SMTPServerSession,
  byDomain: Map<string, Runbook>,
): Promise<string> {
  const started = performance.now();
  const receivedAt = new Date();
  const queueId = newQueueId(receivedAt.getTime());
  const log = deps.log.child({ session: session.id, queueId });
  const { stored, body } = await storeBody(deps, stream, session, { queueId, receivedAt, log });
  const headers = searchableHeaders(body.headers);
  const message: HeldMessage = {
    queueId,
    envelopeFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
    sizeBytes: stored.length,
    sha256: body.sha256,
    objectKey: stored.objectKey,
    bodyOffset: stored.offset,
    receivedAt,
    clientIp: session.remoteAddress,
    helo: session.hostNameAppearsAs ?? '',
    tls: tlsDescription(session),
    messageId: headers.messageId,
    subject: headers.subject,
    recipients: session.envelope.rcptTo.map((r) => ({
      address: r.address,
      customerId: byDomain.get(domainOf(r.address))!.id,
    })),
  };
  try {
    await commitHeldMessage(deps.sql, message);
  } catch (err) {
    // The stored bytes may share a segment with messages that did commit: the orphan sweep removes segments
    // no row points at, and an unreferenced range inside a kept segment is only dead bytes.
    log.error({ err: (err as Error).message }, 'committing the message failed; answering 451');
    deps.metrics.rejected.inc({ reason: 'local_error' });
    throw replies.localError();
  }
  try {
    announceHeld(deps, message, body, (performance.now() - started) / 1000, log);
  } catch (err) {
    // The message is committed, so the 250 is owed: a 451 now would only make the sender send it again.
    log.error({ err }, 'recording an accepted message failed; answering 250 all the same');
  }
  return `2.0.0 Ok: queued as ${queueId}`;
}

/** The body, through the checker into object storage; a refusal or a storage failure throws the reply to send. */
async function storeBody(
  deps: IngestDeps,
  stream: Readable,
  session: SMTPServerSession,
  at: { queueId: string; receivedAt: Date; log: Logger },
): Promise<{ stored: BodyRef; body: BodyResult }> {
  const { config, metrics, bodies } = deps;
  const check = new BodyCheck(
    receivedHeader(session, config.hostname, at.queueId, at.receivedAt),
    config.smtp.maxSize,
  );
  // A client that vanishes mid-DATA destroys smtp-server's stream without ending ours: end ours with an error.
  const onGone = () => {
    if (!stream.readableEnded) check.destroy(new Error('client disconnected during DATA'));
  };
  stream.once('close', onGone);
  stream.pipe(check);
  try {
    const key = objectKeyFor(at.queueId, at.receivedAt);
    const stored = await withTimeout(bodies.put(key, check, config.smtp.maxSize), STORE_TIMEOUT_MS);
    return { stored, body: check.result() };
  } catch (err) {
    stream.unpipe(check);
    check.destroy(); // a put still waiting on it (after a timeout) fails instead of hanging
    stream.resume(); // drain what is left, so smtp-server can answer
    if (check.refusal) {
      metrics.rejected.inc({ reason: check.refusal.reason });
      throw check.refusal.reply;
    }
    at.log.error({ err: (err as Error).message }, 'storing the body failed; answering 451');
    metrics.rejected.inc({ reason: 'local_error' });
    throw replies.localError();
  } finally {
    stream.off('close', onGone);
  }
}

/** After the commit: metrics, the log line, and the doorbell of each customer the message is for. */
function announceHeld(
  deps: IngestDeps,
  message: HeldMessage,
  body: BodyResult,
  seconds: number,
  log: Logger,
) {
  deps.metrics.accepted.inc();
  deps.metrics.acceptedBytes.inc(body.storedBytes);
  deps.metrics.timeTo250.observe(seconds);
  log.info(
    {
      bytes: body.storedBytes,
      recipients: message.recipients.length,
      bareLf: body.bareLfNormalised || undefined,
    },
    'held',
  );
  for (const customerId of new Set(message.recipients.map((r) => r.customerId))) deps.ring(customerId);
}

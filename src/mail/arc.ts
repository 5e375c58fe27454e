import { authenticate, type DNSResolver } from 'mailauth';
import type { DkimKey } from './dkim-key';
import { type DnsLookup, noRecords, noSuchName } from './dns';

// ARC (RFC 8617) for forwarded copies. A forward breaks the sender's SPF (the mail now comes from us) and, where the
// sender publishes DMARC, its alignment; Gmail's advice to forwarders is to add an ARC set recording what we saw
// when the mail reached us, signed by our forwarding domain. The set is header fields placed above the stored
// bytes, which go out unchanged after it, so the sender's own DKIM signature still verifies at Gmail.

/** What our ingest recorded about the SMTP session that brought the message (held_message.client_ip, helo, envelope_from). */
export interface Origin {
  clientIp: string;
  helo: string;
  /** '' for the null sender. */
  envelopeFrom: string;
}

export interface SealOptions {
  key: DkimKey;
  lookup: DnsLookup;
  /** The authserv-id of our verdicts (RFC 8601): our host name. */
  authservId: string;
}

/** `temporary`: try again later (our DNS is not answering); otherwise sealing this message will never work. */
export class SealError extends Error {
  constructor(
    message: string,
    readonly temporary: boolean,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'SealError';
  }
}

/** DNS answers that are facts about a name; anything else (timeout, SERVFAIL, refused) says the lookup failed. */
const answered = (err: unknown) => noSuchName(err) || noRecords(err);

/**
 * The header block to put in front of `raw` (the stored message, our Received header first): ARC-Seal,
 * ARC-Message-Signature and ARC-Authentication-Results, CRLF line ends. Verdicts are those of the SMTP session
 * that brought the message to us (SPF of `origin`, the DKIM signatures and ARC chain it carries, DMARC).
 *
 * Empty when the message arrived with an ARC chain that had already failed (cv=fail): RFC 8617 5.1.2 says not to
 * extend it. Throws SealError, `temporary` when our DNS is not answering: sealing then would write "temperror"
 * (or, for an incoming ARC chain, "fail") into a signed header for good, so the caller should retry later.
 *
 * Authentication-Results and Received-SPF are left out on purpose: receivers ignore unsigned results from other
 * hosts (RFC 8601 5) and Gmail reads ours from ARC-Authentication-Results, which carries the same verdicts
 * signed and bound into the chain. Fewer added fields also means fewer bytes that differ from what the sender sent.
 */
export async function sealForwarded(raw: Buffer, origin: Origin, opts: SealOptions): Promise<Buffer> {
  const troubles: unknown[] = [];
  // Note every failed lookup; mailauth turns them into verdicts (temperror) instead of throwing.
  const lookup = async (name: string, rrtype: string) => {
    try {
      return await opts.lookup(name, rrtype);
    } catch (err) {
      if (!answered(err)) troubles.push(err);
      throw err;
    }
  };
  let headers: string;
  try {
    ({ headers } = await authenticate(raw, {
      ip: origin.clientIp,
      helo: origin.helo,
      sender: origin.envelopeFrom || undefined, // mailauth checks postmaster@<helo> for the null sender
      mta: opts.authservId,
      resolver: lookup as DNSResolver,
      disableBimi: true, // a logo lookup, no part of the verdicts
      seal: { signingDomain: opts.key.domain, selector: opts.key.selector, privateKey: opts.key.privateKey },
    }));
  } catch (err) {
    throw new SealError(`ARC sealing failed: ${(err as Error).message}`, troubles.length > 0, { cause: err });
  }
  if (troubles.length > 0 && !(await dnsAnswers(opts))) {
    const first = troubles[0] as Error & { code?: string };
    throw new SealError(
      `ARC sealing needs DNS, which is not answering (${first.code ?? first.message})`,
      true,
      {
        cause: first,
      },
    );
  }
  return arcSetOf(headers);
}

/**
 * Is it our DNS that fails, or only the sender's? Asked when a lookup failed: our own key's record must answer. If
 * it does, the failure belongs to the sender's domain (dead name servers), and the "temperror" it gave is the
 * truth to record, or the message would never be forwarded.
 */
async function dnsAnswers(opts: SealOptions): Promise<boolean> {
  try {
    await opts.lookup(`${opts.key.selector}._domainkey.${opts.key.domain}`, 'TXT');
    return true;
  } catch (err) {
    return answered(err);
  }
}

/** The ARC-* fields of mailauth's header block, each with CRLF line ends (its folding is not all CRLF). */
function arcSetOf(headers: string): Buffer {
  const fields = headers
    .replace(/\r?\n/g, '\r\n')
    .split(/\r\n(?![ \t])/)
    .filter((field) => /^ARC-/i.test(field));
  return Buffer.from(fields.map((field) => `${field}\r\n`).join(''), 'utf8');
}

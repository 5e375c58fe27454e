import { createHash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import type { RejectReason } from './metrics';
import { replies, type SmtpReply } from './replies';

// The DATA stream on its way to object storage: our Received header first, then the sender's bytes, checked as
// they pass. Nothing here holds more than one chunk and the first 64 KiB of headers.
//
// Line endings, and why SMTP smuggling cannot pass through us: smtp-server ends DATA only on <CRLF>.<CRLF>, and
// passes bare CR and bare LF through into the body. We
//   - normalise a bare LF to CRLF, as Postfix 3.9 does by default: broken-but-legitimate senders still get their
//     mail through, and DKIM is unaffected because signers canonicalise bare LF to CRLF before signing (RFC 6376
//     5.3); every line we store and later send ends in CRLF, so nodemailer dot-stuffs it like any other line.
//   - refuse a bare CR with 550 5.6.0: no legitimate mail needs one, and nodemailer would relay it verbatim, which
//     is the residual smuggling risk (<CR>.<CRLF> read as end of data by a lenient next hop).
//   - refuse NUL with 550 5.6.0 (RFC 5321 2.3.8; no MTA keeps it intact).

const CR = 0x0d;
const LF = 0x0a;
const CRLF = Buffer.from('\r\n');
const HEADER_CAP = 64 * 1024;
const END_OF_HEADERS = Buffer.from('\r\n\r\n');

export interface BodyResult {
  /** Bytes stored: our header plus the (normalised) message. */
  storedBytes: number;
  /** The sender's bytes as received, what SIZE limits. */
  receivedBytes: number;
  sha256: string;
  /** The message's header block (up to 64 KiB), for Message-ID and Subject. */
  headers: Buffer;
  bareLfNormalised: number;
}

export class BodyCheck extends Transform {
  private readonly hash = createHash('sha256');
  private storedBytes = 0;
  private receivedBytes = 0;
  private bareLf = 0;
  private prevWasCr = false;
  private headerChunks: Buffer[] = [];
  private headerBytes = 0;
  private headersDone = false;
  /** Set when the data is refused; the stream errors with its reply. */
  refusal?: { reason: RejectReason; reply: SmtpReply };

  constructor(
    prefix: Buffer,
    private readonly maxBytes: number,
  ) {
    super();
    this.pass(prefix, false);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.receivedBytes += chunk.length;
    const refusal = this.refusalFor(chunk);
    if (refusal) {
      done(refusal);
      return;
    }
    let start = 0;
    for (let at = chunk.indexOf(LF); at !== -1; at = chunk.indexOf(LF, at + 1)) {
      const before = at > 0 ? chunk[at - 1] : this.prevWasCr ? CR : undefined;
      if (before === CR) continue;
      this.pass(chunk.subarray(start, at), true);
      this.pass(CRLF, true);
      this.bareLf++;
      start = at + 1;
    }
    this.pass(start === 0 ? chunk : chunk.subarray(start), true);
    this.prevWasCr = chunk[chunk.length - 1] === CR;
    done();
  }

  override _flush(done: TransformCallback): void {
    done(this.prevWasCr ? this.refuse('bare_cr', replies.bareCr()) : undefined);
  }

  private refusalFor(chunk: Buffer): SmtpReply | undefined {
    if (this.receivedBytes > this.maxBytes) return this.refuse('oversize', replies.oversize(this.maxBytes));
    if (chunk.indexOf(0) !== -1) return this.refuse('nul', replies.nul());
    // A CR that ended the previous chunk must be followed by the LF that starts this one.
    if (this.prevWasCr && chunk[0] !== LF) return this.refuse('bare_cr', replies.bareCr());
    for (let at = chunk.indexOf(CR); at !== -1; at = chunk.indexOf(CR, at + 1)) {
      if (at + 1 < chunk.length && chunk[at + 1] !== LF) return this.refuse('bare_cr', replies.bareCr());
    }
    return undefined;
  }

  result(): BodyResult {
    return {
      storedBytes: this.storedBytes,
      receivedBytes: this.receivedBytes,
      sha256: this.hash.digest('hex'),
      headers: Buffer.concat(this.headerChunks),
      bareLfNormalised: this.bareLf,
    };
  }

  private refuse(reason: RejectReason, reply: SmtpReply): SmtpReply {
    this.refusal = { reason, reply };
    return reply;
  }

  private pass(bytes: Buffer, fromMessage: boolean): void {
    if (bytes.length === 0) return;
    this.hash.update(bytes);
    this.storedBytes += bytes.length;
    if (fromMessage && !this.headersDone) this.captureHeaders(bytes);
    this.push(bytes);
  }

  private captureHeaders(bytes: Buffer): void {
    const take = bytes.subarray(0, HEADER_CAP - this.headerBytes);
    this.headerChunks.push(take);
    this.headerBytes += take.length;
    const sofar = Buffer.concat(this.headerChunks);
    const end = sofar.indexOf(END_OF_HEADERS);
    if (end !== -1 || this.headerBytes >= HEADER_CAP || sofar.subarray(0, 2).equals(CRLF)) {
      this.headerChunks = [end === -1 ? sofar : sofar.subarray(0, end + 2)];
      this.headersDone = true;
    } else {
      this.headerChunks = [sofar];
    }
  }
}

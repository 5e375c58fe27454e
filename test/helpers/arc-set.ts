// A forwarded copy is our ARC set (RFC 8617: ARC-Seal, ARC-Message-Signature, ARC-Authentication-Results) above
// the bytes we hold. Tests that compare a copy with what the sender sent take the set off first.

const ARC_FIELD = /^ARC-(Seal|Message-Signature|Authentication-Results):/i;
const CRLF = Buffer.from('\r\n');

/** The bytes after the ARC header fields that lead the message (all of it when there are none). */
export function stripArcSet(raw: Buffer): Buffer {
  let at = 0;
  while (ARC_FIELD.test(raw.subarray(at, at + 40).toString('latin1'))) {
    // A header field ends at a CRLF not followed by folding whitespace.
    let end = raw.indexOf(CRLF, at);
    while (end !== -1 && (raw[end + 2] === 0x20 || raw[end + 2] === 0x09)) end = raw.indexOf(CRLF, end + 2);
    if (end === -1) break;
    at = end + 2;
  }
  return raw.subarray(at);
}

/** Does the copy carry an ARC set of ours, instance 1, sealed by `domain`? */
export const arcSealedBy = (raw: Buffer, domain: string) =>
  new RegExp(`^ARC-Seal: i=1;[^]*?\\bd=${domain.replace(/\./g, '\\.')};`, 'i').test(raw.toString('latin1'));

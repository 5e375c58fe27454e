import { type Attachment, type ParsedMail, simpleParser } from 'mailparser';
import { messageNotFound } from './errors';
import { type SanitizedHtml, sanitizeMailHtml } from './sanitize';

// A message as the reader sees it, parsed from its IMAP source. Parts are numbered by their place in mailparser's
// list, which is the same for the same bytes, so /attachment/2 is the same part on every request.

/** mailparser would otherwise inline cid: images as data: URLs; we serve them ourselves, from their own URL. */
export const parseMail = (source: Buffer): Promise<ParsedMail> =>
  simpleParser(source, { skipImageLinks: true, skipTextToHtml: true, skipTextLinks: true });

export interface AttachmentInfo {
  index: number;
  filename: string;
  contentType: string;
  size: number;
}

export type Body = { kind: 'html'; sanitized: SanitizedHtml } | { kind: 'text'; text: string };

const bareCid = (cid: string) => cid.replace(/^<|>$/g, '');

/** The Content-IDs the HTML body shows in place; those parts are pictures in the text, not attachments to list. */
function shownCids(parsed: ParsedMail): Set<string> {
  const html = typeof parsed.html === 'string' ? parsed.html : '';
  const cids = new Set<string>();
  for (const m of html.matchAll(/cid:([^"'\s>)]+)/gi)) cids.add(decodeURIComponent(m[1]!).toLowerCase());
  return cids;
}

export function attachmentsOf(parsed: ParsedMail): AttachmentInfo[] {
  const shown = shownCids(parsed);
  return parsed.attachments.flatMap((a, index) =>
    a.cid && shown.has(bareCid(a.cid).toLowerCase())
      ? []
      : [
          {
            index,
            filename: a.filename || `attachment-${index + 1}`,
            contentType: a.contentType || 'application/octet-stream',
            size: a.size ?? a.content.length,
          },
        ],
  );
}

export function bodyOf(
  parsed: ParsedMail,
  opts: { remoteImages: boolean; cidUrl: (cid: string) => string },
): Body {
  if (typeof parsed.html === 'string' && parsed.html.trim())
    return { kind: 'html', sanitized: sanitizeMailHtml(parsed.html, opts) };
  return { kind: 'text', text: parsed.text ?? '' };
}

export function attachmentAt(parsed: ParsedMail, index: number): Attachment {
  const part = parsed.attachments[index];
  if (!part) throw messageNotFound();
  return part;
}

export function partByCid(parsed: ParsedMail, cid: string): Attachment {
  const wanted = bareCid(cid).toLowerCase();
  const part = parsed.attachments.find((a) => a.cid && bareCid(a.cid).toLowerCase() === wanted);
  if (!part) throw messageNotFound();
  return part;
}

/** A filename safe in a Content-Disposition header: the plain ASCII fallback and the RFC 5987 UTF-8 form. */
export function contentDisposition(filename: string): string {
  const ascii = filename.replace(/[^\x20-\x7e]|["\\]/g, '_');
  // encodeURIComponent leaves ' ( ) * alone, which RFC 5987 does not allow unencoded.
  const encoded = encodeURIComponent(filename).replace(
    /['()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encoded}`;
}

/** The part's declared type when it is a plain type/subtype; anything odder is served as bytes. */
export const safeContentType = (type: string | undefined): string =>
  type && /^[\w.+-]+\/[\w.+-]+$/.test(type) ? type : 'application/octet-stream';

import { simpleParser } from 'mailparser';
import sanitizeHtml from 'sanitize-html';
import { ApiFailure } from './errors';

// Reading a held message for an operator: parsed with mailparser here, on the API, never on the SMTP path, and
// with caps, because a hostile message (deep nesting, a huge single-line part) must not stall the API.
export const MAX_PARSE_BYTES = 25 * 1024 * 1024;
export const PARSE_TIMEOUT_MS = 5_000;
const MAX_TEXT_CHARS = 1_000_000;

const clip = (s: string | undefined) =>
  s === undefined ? null : s.length > MAX_TEXT_CHARS ? `${s.slice(0, MAX_TEXT_CHARS)}\n[clipped]` : s;

export function assertParsable(sizeBytes: number): void {
  if (sizeBytes > MAX_PARSE_BYTES)
    throw new ApiFailure(
      413,
      'MESSAGE_TOO_LARGE_TO_PARSE',
      `the message is ${sizeBytes} bytes, past the ${MAX_PARSE_BYTES}-byte cap for parsing; download it with /raw`,
    );
}

/**
 * Known limit: the time cap answers the client at 5 s, but mailparser has no abort, so a slow parse finishes in
 * the background (bounded by the size cap). Sanitizing is synchronous, so it only ever sees clipped HTML.
 */
export async function parseForReading(body: Buffer, sizeBytes: number) {
  assertParsable(sizeBytes);
  let timer: NodeJS.Timeout | undefined;
  const parsed = await Promise.race([
    simpleParser(body, {
      checksumAlgo: 'sha256',
      skipImageLinks: true,
      skipTextLinks: true,
      maxHtmlLengthToParse: 2 * MAX_TEXT_CHARS,
    }),
    new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new ApiFailure(
              503,
              'PARSE_TIMEOUT',
              `parsing took over ${PARSE_TIMEOUT_MS} ms; download it with /raw`,
            ),
          ),
        PARSE_TIMEOUT_MS,
      );
    }),
  ]).finally(() => clearTimeout(timer));
  return {
    subject: parsed.subject ?? null,
    from: parsed.from?.text ?? null,
    to: Array.isArray(parsed.to) ? parsed.to.map((a) => a.text).join(', ') : (parsed.to?.text ?? null),
    date: parsed.date?.toISOString() ?? null,
    headers: parsed.headerLines.map((h) => ({ name: h.key, line: h.line })),
    text: clip(parsed.text),
    // Scripts, styles, event handlers and remote images (tracking pixels) removed: safe to show in a browser.
    html: parsed.html ? sanitizeHtml(clip(parsed.html)!) : null,
    attachments: parsed.attachments.map((a) => ({
      filename: a.filename ?? null,
      contentType: a.contentType,
      size: a.size,
      contentId: a.contentId ?? null,
      sha256: a.checksum ?? null,
    })),
  };
}

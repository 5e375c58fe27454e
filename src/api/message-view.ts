import { simpleParser } from 'mailparser';
import sanitizeHtml from 'sanitize-html';
import { z } from 'zod';
import { authResultSchema, type SenderAuth, type SpamState } from '../domain/spam';
import type { StoredSpam } from '../store/quarantine';
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

// A held message's spam score and sender authentication, as operators read them. The operator's review overrides
// the filter's verdict; the symbols that weigh most come first, whichever way they push.

export const senderAuthSchema = z
  .object({
    spf: z.object({ result: authResultSchema, domain: z.string().nullable() }),
    dkim: z.object({ result: authResultSchema, domains: z.array(z.string()) }),
    dmarc: z.object({
      result: authResultSchema,
      domain: z.string().nullable(),
      policy: z.string().nullable(),
    }),
    arc: z.object({ result: authResultSchema }),
  })
  .meta({ id: 'SenderAuth', description: 'SPF, DKIM, DMARC and ARC as the filter evaluated them' });

export const spamViewSchema = z
  .object({
    state: z.enum(['unscored', 'clean', 'quarantined', 'released', 'spam']),
    /** rspamd's score; null until scored. */
    score: z.number().nullable(),
    /** rspamd's own action at its thresholds, for the record: the verdict is ours (the runbook's policy). */
    action: z.string().nullable(),
    /** Why the filter quarantined it; null for clean or unscored mail. */
    reason: z.string().nullable(),
    scoredAt: z.string().nullable(),
    symbols: z.array(z.object({ name: z.string(), score: z.number(), options: z.array(z.string()) })),
    review: z
      .object({ state: z.enum(['released', 'spam']), by: z.string().nullable(), at: z.string().nullable() })
      .nullable(),
  })
  .meta({
    id: 'MessageSpam',
    description:
      "The message's spam state (an operator's review overrides the filter's verdict), score and symbols, largest first",
  });
export type SpamView = z.infer<typeof spamViewSchema>;

export function spamStateOf(s: Pick<StoredSpam, 'review' | 'verdict' | 'scoredAt'>): SpamState {
  if (s.review) return s.review;
  if (!s.scoredAt || !s.verdict) return 'unscored';
  return s.verdict;
}

export function spamView(s: StoredSpam): SpamView {
  return {
    state: spamStateOf(s),
    score: s.score,
    action: s.action,
    reason: s.auth?.verdictReason ?? null,
    scoredAt: s.scoredAt,
    symbols: Object.entries(s.symbols ?? {})
      .map(([name, sym]) => ({ name, score: sym.score, options: sym.options ?? [] }))
      .sort((a, b) => Math.abs(b.score) - Math.abs(a.score) || a.name.localeCompare(b.name)),
    review: s.review ? { state: s.review, by: s.reviewedBy, at: s.reviewedAt } : null,
  };
}

/** The stored sender authentication without the verdict's reason (that is the spam view's); null when unscored. */
export function authView(s: StoredSpam): SenderAuth | null {
  if (!s.scoredAt || !s.auth) return null;
  const { spf, dkim, dmarc, arc } = s.auth;
  return { spf, dkim, dmarc, arc };
}

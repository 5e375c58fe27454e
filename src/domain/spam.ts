import { z } from 'zod';

// Spam and sender authentication of held mail. A backup MX is where spammers go first, so most of what we hold
// in quiet times is spam, and in an outage it is mixed into the real mail. Each held message is scored once, off
// the SMTP path; the verdict decides whether a forward or redirect may take it (never, when quarantined) and how a
// restore to the customer's own server treats it (the runbook's `spam.restoreQuarantined`). Pure: no I/O here.

/** A runbook's `spam` section. Every field has a default, so runbooks without it get the defaults. */
export const spamPolicySchema = z
  .strictObject({
    quarantineAt: z.number().min(0).max(1000).default(6).meta({
      description: 'rspamd score at or above which a message is quarantined (rspamd "add header" is 6).',
    }),
    dmarcReject: z.enum(['quarantine', 'score-only']).default('quarantine').meta({
      description:
        'A message failing DMARC for a domain that publishes p=reject: quarantined, or left to its score.',
    }),
    restoreQuarantined: z.enum(['deliver-tagged', 'keep']).default('deliver-tagged').meta({
      description:
        "Quarantined mail on a restore or relay to the customer's own servers: delivered with X-Spam-* headers for their own filter, or kept here until an operator releases it.",
    }),
  })
  .prefault({});
export type SpamPolicy = z.output<typeof spamPolicySchema>;

export const authResultSchema = z.enum([
  'pass',
  'fail',
  'softfail',
  'neutral',
  'none',
  'temperror',
  'permerror',
]);
export type AuthResult = z.infer<typeof authResultSchema>;

/** Sender authentication as rspamd evaluated it, with the domain each check was about. */
export interface SenderAuth {
  spf: { result: AuthResult; domain: string | null };
  dkim: { result: AuthResult; domains: string[] };
  dmarc: { result: AuthResult; domain: string | null; policy: string | null };
  arc: { result: AuthResult };
}

export interface SpamSymbol {
  score: number;
  options?: string[];
}

/** What the filter said about one message: stored with it, shown by the API. */
export interface SpamScore {
  score: number;
  /** rspamd's action at its own thresholds ("no action", "add header", "reject"...), for the record only. */
  action: string;
  symbols: Record<string, SpamSymbol>;
  auth: SenderAuth;
}

export type SpamVerdict = 'clean' | 'quarantined';

/** Tries of a message that fails on its own account before the scorer leaves it unscored for an operator. */
export const SCORE_ATTEMPTS = 5;

/** The verdict under one customer's policy; a message for several customers takes the strictest. */
export function verdictOf(
  score: SpamScore,
  policies: SpamPolicy[],
): { verdict: SpamVerdict; reason: string | null } {
  for (const p of policies) {
    if (score.score >= p.quarantineAt)
      return { verdict: 'quarantined', reason: `score ${score.score.toFixed(2)} >= ${p.quarantineAt}` };
    if (
      p.dmarcReject === 'quarantine' &&
      score.auth.dmarc.result === 'fail' &&
      score.auth.dmarc.policy === 'reject'
    )
      return {
        verdict: 'quarantined',
        reason: `DMARC failed for ${score.auth.dmarc.domain}, which says p=reject`,
      };
  }
  return { verdict: 'clean', reason: null };
}

/** The few symbols that explain a score best: the largest contributions either way. */
export function topSymbols(symbols: Record<string, SpamSymbol>, n = 5): { name: string; score: number }[] {
  return Object.entries(symbols)
    .map(([name, s]) => ({ name, score: s.score }))
    .sort((a, b) => Math.abs(b.score) - Math.abs(a.score) || a.name.localeCompare(b.name))
    .slice(0, n);
}

/**
 * The effective state of a held message: the operator's review overrides the filter's verdict. Unscored mail is
 * never forwarded or redirected to an outside mailbox unless the instruction says so (deliverUnscored).
 */
export type SpamState = 'unscored' | 'clean' | 'quarantined' | 'released' | 'spam';

/** Counts the outage status shows beside "held", and why mail waits. */
export interface SpamCounts {
  /** Not delivered anywhere yet and quarantined (by the filter or by an operator). */
  quarantined: number;
  /** Quarantined since an operator last listed this customer's quarantine: these stand in the way of resolve. */
  unreviewed: number;
  /** Not scored yet: a forward or redirect waits for them. */
  unscored: number;
  /** The filter as the scorer last found it; null when it has not been tried yet. */
  filter: { failingSince: string | null; lastError: string | null; checkedAt: string } | null;
}

/** The status's recount: what the next delivery would send, and what waits beside it. */
export interface HeldCount {
  held: number;
  spam: SpamCounts;
}

/** X-Spam-* headers for a quarantined message delivered to the customer's own servers (restoreQuarantined). */
export function spamHeaders(
  score: { score: number; symbols: Record<string, SpamSymbol> | null },
  threshold: number,
): string {
  // Folded a few names a line: a header line past 998 octets could get the message refused (RFC 5322 2.1.1).
  const names = Object.keys(score.symbols ?? {}).sort();
  const lines: string[] = [];
  for (let i = 0; i < names.length; i += 6) lines.push(names.slice(i, i + 6).join(','));
  return [
    'X-Spam-Flag: YES',
    `X-Spam-Score: ${score.score.toFixed(2)}`,
    `X-Spam-Status: Yes, score=${score.score.toFixed(2)} required=${threshold.toFixed(2)}`,
    `\ttests=${lines.join(',\r\n\t') || 'none'}`,
    '',
  ].join('\r\n');
}

/** Which mail a delivery may take, as far as spam goes (src/store/held.ts turns it into SQL). */
export interface SpamGate {
  /** A forward or redirect: outside the customer's own servers. */
  outside: boolean;
  /** The instruction lets unscored mail go outside (the filter has been down for long). */
  deliverUnscored?: boolean;
  /**
   * Temporary mailboxes: wait for the score (as an outside target does) but take quarantined mail, which goes to
   * Junk. Without the wait, spam that arrives faster than it is scored would land in people's inboxes.
   */
  waitForScore?: boolean;
  /** The runbook keeps quarantined mail from the customer's own servers too. */
  keepQuarantined?: boolean;
}

export function spamGateFor(
  target:
    | { kind: 'primary' }
    | { kind: 'mailboxes' }
    | { kind: 'forward' | 'redirect'; deliverUnscored?: boolean },
  policy: SpamPolicy,
): SpamGate {
  // A temporary mailbox is the customer's own mailbox for now, and we are its filter: scored mail goes in,
  // quarantined mail to Junk.
  if (target.kind === 'mailboxes') return { outside: false, keepQuarantined: false, waitForScore: true };
  if (target.kind === 'primary')
    return { outside: false, keepQuarantined: policy.restoreQuarantined === 'keep' };
  return { outside: true, deliverUnscored: target.deliverUnscored === true };
}

import { request } from 'node:http';
import type { AuthResult, SenderAuth, SpamScore, SpamSymbol } from '../domain/spam';

// rspamd's HTTP protocol (/checkv2): the message as the body, the envelope in headers. We pass what the SMTP
// session told us (client IP, HELO, MAIL FROM, RCPT TO), so SPF is checked against the real sending server and
// not against us. rspamd also evaluates DKIM, DMARC and ARC in the same pass, with the resolver its configuration
// names (MXF_DNS_SERVERS): one filter, one DNS configuration, one place that says why a message scored as it did.

export interface Envelope {
  queueId: string;
  clientIp: string;
  helo: string;
  from: string;
  recipients: string[];
}

export class FilterError extends Error {
  override name = 'FilterError';
  /** The filter answered but would not score this message; otherwise the filter itself is unreachable. */
  constructor(
    message: string,
    readonly aboutMessage = false,
  ) {
    super(message);
  }
}

const TIMEOUT_MS = 20_000;

/** Scores one message; throws FilterError when rspamd cannot be reached or does not give a result. */
export function checkMessage(url: string, raw: Buffer, envelope: Envelope): Promise<SpamScore> {
  const target = new URL('/checkv2', url);
  return new Promise((resolve, reject) => {
    const req = request(
      target,
      {
        method: 'POST',
        timeout: TIMEOUT_MS,
        headers: {
          'Content-Length': raw.length,
          'Queue-Id': envelope.queueId,
          IP: envelope.clientIp,
          Helo: envelope.helo,
          // The null reverse-path (bounces) has no sender to check SPF for; rspamd then uses the HELO.
          ...(envelope.from ? { From: envelope.from } : {}),
          // One Rcpt header per recipient, as the protocol asks; node sends an array as repeated lines.
          Rcpt: envelope.recipients,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => reject(new FilterError(`rspamd: ${err.message}`)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode !== 200)
            return reject(
              new FilterError(
                `rspamd answered HTTP ${res.statusCode}: ${text.slice(0, 200)}`,
                res.statusCode! < 500,
              ),
            );
          try {
            resolve(parseCheckResult(JSON.parse(text)));
          } catch (err) {
            if (err instanceof FilterError) reject(err);
            else reject(new FilterError(`rspamd gave no usable result: ${(err as Error).message}`, true));
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', (err) => reject(new FilterError(`rspamd at ${target.host}: ${err.message}`)));
    req.end(raw);
  });
}

interface CheckV2 {
  score: number;
  action: string;
  symbols?: Record<string, { score: number; options?: string[] }>;
  messages?: Record<string, string>;
}

export function parseCheckResult(body: CheckV2): SpamScore {
  if (typeof body.score !== 'number' || typeof body.action !== 'string')
    throw new Error(`unexpected answer: ${JSON.stringify(body).slice(0, 200)}`);
  // rspamd reports a task it could not finish (a timeout) as a soft reject with a message: not a score.
  if (body.action === 'soft reject' && body.messages?.smtp_message)
    throw new FilterError(`rspamd could not finish (soft reject): ${body.messages.smtp_message}`);
  const symbols: Record<string, SpamSymbol> = {};
  for (const [name, s] of Object.entries(body.symbols ?? {}))
    symbols[name] = s.options?.length ? { score: s.score, options: s.options } : { score: s.score };
  return { score: body.score, action: body.action, symbols, auth: senderAuthOf(symbols) };
}

// rspamd's symbol for each result of each check (src/plugins/spf.c, dkim.c; plugins/dmarc.lua, arc.lua).
const SPF: Record<string, AuthResult> = {
  R_SPF_ALLOW: 'pass',
  R_SPF_FAIL: 'fail',
  R_SPF_SOFTFAIL: 'softfail',
  R_SPF_NEUTRAL: 'neutral',
  R_SPF_DNSFAIL: 'temperror',
  R_SPF_PERMFAIL: 'permerror',
  R_SPF_NA: 'none',
};
const DKIM: Record<string, AuthResult> = {
  R_DKIM_ALLOW: 'pass',
  R_DKIM_REJECT: 'fail',
  R_DKIM_TEMPFAIL: 'temperror',
  R_DKIM_PERMFAIL: 'permerror',
  R_DKIM_NA: 'none',
};
const DMARC: Record<string, { result: AuthResult; policy: string | null }> = {
  DMARC_POLICY_ALLOW: { result: 'pass', policy: null },
  DMARC_POLICY_ALLOW_WITH_FAILURES: { result: 'pass', policy: null },
  DMARC_POLICY_REJECT: { result: 'fail', policy: 'reject' },
  DMARC_POLICY_QUARANTINE: { result: 'fail', policy: 'quarantine' },
  DMARC_POLICY_SOFTFAIL: { result: 'fail', policy: 'none' },
  DMARC_DNSFAIL: { result: 'temperror', policy: null },
  DMARC_BAD_POLICY: { result: 'permerror', policy: null },
  DMARC_NA: { result: 'none', policy: null },
};
const ARC: Record<string, AuthResult> = {
  ARC_ALLOW: 'pass',
  ARC_REJECT: 'fail',
  ARC_INVALID: 'permerror',
  ARC_DNSFAIL: 'temperror',
  ARC_NA: 'none',
};

function first<T>(
  symbols: Record<string, SpamSymbol>,
  table: Record<string, T>,
): [T, SpamSymbol] | undefined {
  for (const [name, value] of Object.entries(table)) if (symbols[name]) return [value, symbols[name]];
  return undefined;
}

export function senderAuthOf(symbols: Record<string, SpamSymbol>): SenderAuth {
  const spf = first(symbols, SPF);
  const dkim = first(symbols, DKIM);
  const dmarc = first(symbols, DMARC);
  const arc = first(symbols, ARC);
  // DMARC's options are [domain, policy]; DKIM's are "domain:selector" (or "domain:selector:reason").
  const dmarcOptions = dmarc?.[1].options ?? [];
  return {
    spf: { result: spf?.[0] ?? 'none', domain: null },
    dkim: {
      result: dkim?.[0] ?? 'none',
      domains: (dkim?.[1].options ?? []).map((o) => o.split(':')[0]!).filter(Boolean),
    },
    dmarc: {
      result: dmarc?.[0].result ?? 'none',
      domain: dmarcOptions[0] ?? null,
      policy: dmarc?.[0].policy ?? dmarcOptions[1] ?? null,
    },
    arc: { result: arc?.[0] ?? 'none' },
  };
}

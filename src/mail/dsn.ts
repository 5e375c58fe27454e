// What a bounce says: the delivery-status part of a DSN (RFC 3464), read from the first bytes of the report. The
// status part comes before the returned message (RFC 6522), so a capped read holds it. Small on purpose: only the
// fields we record, without decoding the rest of the report.

export interface BounceReport {
  /** False for a delay warning, a success notice or an auto-reply: nothing to record. */
  failed: boolean;
  /** RFC 3463 enhanced status, e.g. 5.2.2; null when the report gives none. */
  status: string | null;
  /** The remote server's words (Diagnostic-Code without its type), one line, capped. */
  diagnostic: string | null;
}

const DIAGNOSTIC_CAP = 200;

/** Header-style fields, unfolded, lower-case names; one map per blank-line-separated group. */
function fieldGroups(text: string): Map<string, string>[] {
  const groups: Map<string, string>[] = [];
  for (const block of text.split(/\r?\n[ \t]*\r?\n/)) {
    const fields = new Map<string, string>();
    for (const line of block.replace(/\r?\n[ \t]+/g, ' ').split(/\r?\n/)) {
      const m = /^([A-Za-z][A-Za-z0-9-]*):\s*(.*)$/.exec(line);
      if (m && !fields.has(m[1]!.toLowerCase())) fields.set(m[1]!.toLowerCase(), m[2]!.trim());
    }
    if (fields.size > 0) groups.push(fields);
  }
  return groups;
}

/** The body of the message/delivery-status part, up to the next MIME boundary; null when there is none. */
function deliveryStatusPart(raw: string): string | null {
  const type = /^content-type:[ \t]*message\/(?:global-)?delivery-status\b/im.exec(raw);
  if (!type) return null;
  const rest = raw.slice(type.index);
  const body = /\r?\n\r?\n/.exec(rest);
  if (!body) return null;
  const part = rest.slice(body.index + body[0].length);
  const boundary = /^--/m.exec(part);
  return boundary ? part.slice(0, boundary.index) : part;
}

function isAutoReply(raw: string): boolean {
  const head = fieldGroups(raw.split(/\r?\n\r?\n/, 1)[0] ?? '')[0] ?? new Map<string, string>();
  const looksLikeBounce =
    /mailer-daemon|postmaster/i.test(head.get('from') ?? '') ||
    /undeliver|failure|returned|not delivered|delivery status/i.test(head.get('subject') ?? '');
  const autoReply =
    /^auto-replied/i.test(head.get('auto-submitted') ?? '') ||
    head.has('x-autoreply') ||
    /auto_reply/i.test(head.get('precedence') ?? '');
  return autoReply && !looksLikeBounce;
}

function diagnosticOf(code: string | undefined, status: string | null): string | null {
  if (!code) return null;
  const text = code
    .replace(/^[a-z-]+;\s*/i, '') // "smtp; " names the kind of code, not what happened
    .replace(/^\d{3}[ -]/, '') // the reply code: the status says it better
    .replace(status ? new RegExp(`^${status.replace(/\./g, '\\.')}\\s+`) : /^$/, '')
    .replace(/\s+/g, ' ')
    .trim();
  return text === '' ? null : text.slice(0, DIAGNOSTIC_CAP);
}

/**
 * Reads a bounce. Without a delivery-status part it still counts as a failure (old MTAs send plain-text bounces),
 * unless it is an auto-reply (RFC 3834: a vacation notice goes to the envelope sender, which is us) that does not
 * look like a bounce: a copy recorded as failed by mistake is restored twice, one that failed but is not recorded
 * is lost, so doubt counts as failure.
 */
export function readBounce(raw: string): BounceReport {
  const part = deliveryStatusPart(raw);
  if (part === null) return { failed: !isAutoReply(raw), status: null, diagnostic: null };
  const recipients = fieldGroups(part).filter((g) => g.has('action') || g.has('status'));
  // Action is what happened (RFC 3464 2.3.3); a report without one is a failure only if its status is 5.x.x.
  const isFailure = (g: Map<string, string>) => {
    const action = g.get('action')?.toLowerCase();
    return action ? action.startsWith('failed') : g.get('status')?.startsWith('5') === true;
  };
  const failure = recipients.find(isFailure);
  if (!failure) return { failed: false, status: null, diagnostic: null };
  const status = /^[245]\.\d{1,3}\.\d{1,3}/.exec(failure.get('status') ?? '')?.[0] ?? null;
  return { failed: true, status, diagnostic: diagnosticOf(failure.get('diagnostic-code'), status) };
}

/** The ledger's words for a bounced copy, short: "bounced after delivery: 5.2.2 mailbox full". */
export function bounceResponse(report: BounceReport): string {
  const said = [report.status, report.diagnostic].filter((s) => s !== null).join(' ');
  return `bounced after delivery: ${said || 'the report gives no reason'}`;
}

import Table from 'cli-table3';
import type { SpamView } from '../api/message-view';
import type { OutageSummary } from '../api/outage-lookup';
import type { outageView } from '../api/outages';
import type { SenderAuth } from '../domain/spam';

// Readable text for people at a terminal; `--json` skips all of this and prints what the API returned.

const BORDERLESS = {
  top: '',
  'top-mid': '',
  'top-left': '',
  'top-right': '',
  bottom: '',
  'bottom-mid': '',
  'bottom-left': '',
  'bottom-right': '',
  left: '',
  'left-mid': '',
  mid: '',
  'mid-mid': '',
  right: '',
  'right-mid': '',
  middle: '  ',
};

export function table(head: string[], rows: (string | number | null | undefined)[][]): string {
  if (rows.length === 0) return '(none)';
  const t = new Table({
    head,
    chars: BORDERLESS,
    style: { head: [], border: [], 'padding-left': 0, 'padding-right': 0 },
  });
  for (const row of rows)
    t.push(row.map((c) => (c === null || c === undefined || c === '' ? '-' : String(c))));
  return t.toString().replace(/[ \t]+$/gm, '');
}

const when = (iso: string | null | undefined) => (iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-');

export type OutageView = ReturnType<typeof outageView>;

function describeInstruction(i: OutageView['instruction']): string {
  if (!i) return 'none yet';
  switch (i.action) {
    case 'forward':
      return `forward to ${i.to.join(', ')}${unscored(i.deliverUnscored)}`;
    case 'redirect':
      return `redirect to ${i.host}:${i.port}${i.requireTls ? ' (TLS required)' : ''}${unscored(i.deliverUnscored)}`;
    default:
      return i.action;
  }
}

const unscored = (deliverUnscored: boolean | undefined) => (deliverUnscored ? ', unscored mail too' : '');

/** One line after an action: what the outage does now. */
export function outageLine(o: OutageView): string {
  return `${o.id}: ${o.phase}, ${o.heldMessages} message(s) held; instruction: ${describeInstruction(o.instruction)}`;
}

export function outageDetail(o: OutageView): string {
  const c = o.counts;
  const lines = [
    `Outage       ${o.id}  (customer ${o.customerId})`,
    `Phase        ${o.phase}`,
    `Held         ${o.heldMessages} message(s)`,
    `Started      ${when(o.startedAt)}`,
    `Declared     ${o.declaredAt ? `${when(o.declaredAt)}${o.declaredBy ? ` by ${o.declaredBy}` : ' (probes)'}` : 'not yet'}${o.declarationNote ? `: ${o.declarationNote}` : ''}`,
    `Instruction  ${describeInstruction(o.instruction)}${o.instruction ? ` (by ${o.instruction.actor})` : ''}`,
    `Delivered    ${c.relayed} relayed, ${c.forwarded} forwarded, ${c.redirected} redirected, ${c.restored} restored; ${c.failed} failed`,
    `Resolved     ${when(o.resolvedAt)}`,
    ...mailboxLines(o),
    ...spamLines(o),
    '',
    ...deliverySection(o),
    'Primary MX probes',
    table(
      ['HOST', 'OK', 'STAGE', 'MS', 'ERROR'],
      o.lastProbe.map((p) => [`${p.host}:${p.port}`, p.ok ? 'yes' : 'no', p.stage, p.latencyMs, p.error]),
    ),
    '',
    'Call tasks',
    table(
      ['TASK', 'OUTCOME', 'BY', 'CONTACTS'],
      o.callTasks.map((t) => [
        t.id,
        t.outcome ?? 'open',
        t.closedBy,
        t.contacts.map((p) => `${p.name} ${p.phone ?? ''}`.trim()).join('; '),
      ]),
    ),
    '',
    'Notifications',
    table(
      ['STEP', 'AT', 'RESULTS'],
      o.notifications.map((n) => [
        n.step + 1,
        when(n.at),
        n.results.map((r) => `${r.channel} ${r.ok ? 'ok' : `failed (${r.detail})`}`).join('; '),
      ]),
    ),
    '',
    'Instructions',
    table(
      ['AT', 'ACTION', 'BY', 'NOTE'],
      o.history.map((h) => [
        when(h.at),
        describeInstruction(h.instruction),
        h.instruction.actor,
        h.instruction.note,
      ]),
    ),
  ];
  return lines.join('\n');
}

/** Temporary mailboxes, once the outage has them: how many, how far people got, the copies in them. */
function mailboxLines(o: OutageView): string[] {
  const m = o.mailboxes;
  if (!m) return [];
  const closed = m.closed ? `, ${m.closed} closed` : '';
  return [
    `Mailboxes    ${m.provisioned} (${m.signInIssued} handed a sign-in, ${m.signedIn} signed in${closed}); ${o.counts.copiedToMailboxes ?? 0} copies of held mail in them (mxf mailboxes list ${o.customerId})`,
  ];
}

/** What waits beside the held mail: quarantined, not reviewed, not scored; and the filter when it fails. */
function spamLines(o: OutageView): string[] {
  // Outages resolved before spam scoring have no spam counts.
  const spam = o.spam;
  if (!spam) return [];
  const unreviewed = spam.unreviewed
    ? ` (${spam.unreviewed} not reviewed: \`mxf quarantine list ${o.id}\`)`
    : ' (all reviewed)';
  const lines = [
    `Spam         ${spam.quarantined} quarantined${spam.quarantined ? unreviewed : ''}; ${spam.unscored} waiting for a score`,
  ];
  if (spam.filter?.failingSince)
    lines.push(
      `Filter       failing since ${when(spam.filter.failingSince)}: ${spam.filter.lastError ?? 'no error recorded'}`,
    );
  return lines;
}

/** Per target: how delivery goes, the last error and the next attempt; then the recipients refused for good. */
function deliverySection(o: OutageView): string[] {
  // Outages resolved before delivery state was kept have none.
  const deliveries = o.deliveries ?? [];
  if (deliveries.length === 0) return [];
  const refused = deliveries.flatMap((d) => d.refused.map((r) => ({ ...r, target: d.description })));
  return [
    'Delivery',
    table(
      [
        'TARGET',
        'IN FORCE',
        'DELIVERED',
        'REFUSED',
        'ATTEMPTS',
        'PACE',
        'LAST ERROR',
        'FAILING SINCE',
        'NEXT ATTEMPT',
      ],
      deliveries.map((d) => [
        d.description,
        d.inForce ? 'yes' : 'no',
        d.delivered,
        d.failed,
        d.failedAttempts ? `${d.attempts} (${d.failedAttempts} failed in a row)` : d.attempts,
        d.pace
          ? `${d.pace.ratePerMinute}/min, ${d.pace.remaining} left, done ~${when(d.pace.estimatedFinishAt)}`
          : null,
        d.lastError
          ? `${d.lastError.message} (${when(d.lastError.at)})${d.lastError.permanent ? ' [permanent: change DNS or the instruction]' : ''}`
          : null,
        when(d.failingSince),
        when(d.nextAttemptAt),
      ]),
    ),
    '',
    ...(refused.length
      ? [
          'Refused recipients (5xx: not sent to that target again)',
          table(
            ['RECIPIENT', 'MESSAGE', 'TARGET', 'REPLY', 'AT'],
            refused.map((r) => [r.recipient, r.messageId, r.target, r.reply, when(r.at)]),
          ),
          '',
        ]
      : []),
  ];
}

/** A message's spam state, score, review and symbols: the Spam section of `mxf messages show`. */
export function spamSection(spam: SpamView): string[] {
  if (spam.state === 'unscored' && !spam.review) return ['Spam', 'State        not scored yet'];
  const scored =
    spam.score === null
      ? 'not scored yet'
      : `${spam.score.toFixed(2)} (rspamd: ${spam.action ?? '-'}), scored ${when(spam.scoredAt)}`;
  return [
    'Spam',
    `State        ${spam.state}`,
    `Score        ${scored}`,
    `Reason       ${spam.reason ?? '-'}`,
    `Review       ${spam.review ? `${spam.review.state} by ${spam.review.by ?? '-'} at ${when(spam.review.at)}` : 'none'}`,
    ...(spam.symbols.length
      ? [
          table(
            ['SYMBOL', 'SCORE', 'OPTIONS'],
            spam.symbols.map((s) => [s.name, s.score.toFixed(2), s.options.join(', ')]),
          ),
        ]
      : []),
  ];
}

/** SPF, DKIM, DMARC and ARC, each with the domain it was about: the Authentication section. */
export function authSection(auth: SenderAuth | null): string[] {
  if (!auth) return ['Authentication', 'not checked yet (the message has no spam score)'];
  const line = (name: string, result: string, about: (string | null)[]) => {
    const shown = about.filter(Boolean);
    return `${name.padEnd(13)}${result}${shown.length ? ` (${shown.join(', ')})` : ''}`;
  };
  return [
    'Authentication',
    line('SPF', auth.spf.result, [auth.spf.domain]),
    line('DKIM', auth.dkim.result, auth.dkim.domains),
    line('DMARC', auth.dmarc.result, [
      auth.dmarc.domain,
      auth.dmarc.policy ? `policy ${auth.dmarc.policy}` : null,
    ]),
    line('ARC', auth.arc.result, []),
  ];
}

export const outagesTable = (outages: OutageSummary[]) =>
  table(
    ['OUTAGE', 'CUSTOMER', 'PHASE', 'INSTRUCTION', 'HELD', 'CLOSED'],
    outages.map((o) => [o.id, o.customerId, o.phase, o.instruction, o.heldMessages, when(o.closedAt)]),
  );

export { when };

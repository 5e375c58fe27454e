import { resolve } from 'node:path';
import type { AuditEvent } from '../api/audit';
import { roleSchema, tokenNameSchema } from '../api/auth';
import type { CustomersResponse } from '../api/customers';
import type { MessageDetail, MessagePage } from '../api/messages';
import type { OutageSummary } from '../api/outage-lookup';
import type { QuarantinePage, ReviewResult } from '../api/quarantine';
import { checkRunbooks } from '../runbooks/check';
import { request } from './api-client';
import { type Command, command, GLOBAL_OPTIONS, need, query, seg, UsageError } from './command';
import { mailboxCommands } from './mailbox-commands';
import {
  authSection,
  type OutageView,
  outageDetail,
  outageLine,
  outagesTable,
  spamSection,
  table,
  when,
} from './render';
import { tokensCommand } from './tokens';

export { type Command, GLOBAL_OPTIONS, UsageError };

// mxf's commands, one entry each: the words that name it, its lines of the usage text, the options it takes, and
// what it does with its own arguments. Adding a command is adding an entry; mxf.ts only finds and runs it.

const customers = command({
  name: 'customers',
  usage: [
    'customers                                   customers (runbooks), their held mail and active outage',
  ],
  options: {},
  maxArgs: 0,
  async run({ api, out }) {
    const r = await request<CustomersResponse>(api, 'GET', '/api/customers');
    const rows = r.customers.map((c) => [
      c.id,
      c.name,
      c.domains.join(', '),
      c.heldMessages,
      c.activeOutage?.id,
      c.activeOutage?.phase,
    ]);
    out(table(['CUSTOMER', 'NAME', 'DOMAINS', 'HELD', 'OUTAGE', 'PHASE'], rows), r);
    return 0;
  },
});

const outagesList = command({
  name: 'outages list',
  usage: ['outages list [--state active|resolved|all] [--customer ID]'],
  options: { state: { type: 'string' }, customer: { type: 'string' } },
  maxArgs: 0,
  async run({ api, out }, _args, opts) {
    const path = `/api/outages${query({ state: opts.state, customer: opts.customer })}`;
    const r = await request<{ outages: OutageSummary[] }>(api, 'GET', path);
    out(outagesTable(r.outages), r);
    return 0;
  },
});

const outagesShow = command({
  name: 'outages show',
  usage: [
    'outages show <outage>                       phase, counts, probes, notifications, calls, instructions',
  ],
  options: {},
  maxArgs: 1,
  async run({ api, out }, [outage]) {
    const r = await request<OutageView>(api, 'GET', `/api/outages/${seg(outage, 'the outage id')}`);
    out(outageDetail(r), r);
    return 0;
  },
});

const outagesDeclare = command({
  name: 'outages declare',
  usage: ['outages declare <customer> [--note TEXT]    declare an outage by hand (the customer called)'],
  options: { note: { type: 'string' } },
  maxArgs: 1,
  async run({ api, out }, [customer], opts) {
    const path = `/api/customers/${seg(customer, 'the customer id')}/outages`;
    const r = await request<OutageView>(api, 'POST', path, { note: opts.note });
    out(`declared. ${outageLine(r)}`, r);
    return 0;
  },
});

const instruct = command({
  name: 'instruct',
  usage: [
    'instruct <outage> hold|mailboxes|restore|resolve [--note TEXT]',
    '    mailboxes: a temporary mailbox per recipient, filled with their held mail (see mailboxes sign-in)',
    'instruct <outage> forward --to ADDRESS [--to ADDRESS ...] [--rate 60/min] [--deliver-unscored] [--note TEXT]',
    "    --rate: per receiving mailbox (default MXF_FORWARD_RATE, Gmail's 60/min); e.g. 20/min, 5/s, 3600/h",
    'instruct <outage> redirect --host HOST [--port 25] [--require-tls] [--deliver-unscored] [--note TEXT]',
    '    --deliver-unscored: also send mail the spam filter has not scored yet (when the filter is down for long)',
  ],
  options: {
    note: { type: 'string' },
    to: { type: 'string', multiple: true },
    rate: { type: 'string' },
    host: { type: 'string' },
    port: { type: 'string' },
    'require-tls': { type: 'boolean' },
    'deliver-unscored': { type: 'boolean' },
  },
  maxArgs: 2,
  async run({ api, out }, [outage, action], opts) {
    const body: Record<string, unknown> = {
      action: need(action, 'the action: hold, forward, redirect, mailboxes, restore or resolve'),
      note: opts.note,
    };
    if (action === 'forward') body.to = opts.to ?? [];
    if (opts.rate) {
      if (action !== 'forward') throw new UsageError('instruct: --rate goes with forward');
      body.rate = opts.rate;
    }
    if (action === 'redirect') {
      body.host = opts.host;
      if (opts.port) body.port = Number(opts.port);
      body.requireTls = opts['require-tls'] ?? false;
    }
    if (opts['deliver-unscored']) {
      if (action !== 'forward' && action !== 'redirect')
        throw new UsageError('instruct: --deliver-unscored goes with forward or redirect');
      body.deliverUnscored = true;
    }
    const path = `/api/outages/${seg(outage, 'the outage id')}/instructions`;
    const r = await request<OutageView>(api, 'POST', path, body);
    out(outageLine(r), r);
    return 0;
  },
});

const call = command({
  name: 'call',
  usage: ['call <outage> reached|no-answer|voicemail|wrong-number [--task ID] [--note TEXT]'],
  options: { task: { type: 'string' }, note: { type: 'string' } },
  maxArgs: 2,
  async run({ api, out }, [outage, outcome], opts) {
    const body = {
      outcome: need(outcome, 'the outcome: reached, no-answer, voicemail or wrong-number'),
      taskId: opts.task,
      note: opts.note,
    };
    const r = await request<OutageView>(
      api,
      'POST',
      `/api/outages/${seg(outage, 'the outage id')}/calls`,
      body,
    );
    const closed = [...r.callTasks].reverse().find((t) => t.outcome);
    out(`${closed?.id ?? 'call'} recorded: ${closed?.outcome ?? outcome}. ${outageLine(r)}`, r);
    return 0;
  },
});

const messagesList = command({
  name: 'messages list',
  usage: [
    'messages list <outage> [--status held|delivered|failed] [--recipient TEXT] [--sender TEXT]',
    '                       [--since ISO] [--until ISO] [--limit N] [--cursor ID] [--ids]',
  ],
  options: {
    status: { type: 'string' },
    recipient: { type: 'string' },
    sender: { type: 'string' },
    since: { type: 'string' },
    until: { type: 'string' },
    limit: { type: 'string' },
    cursor: { type: 'string' },
    ids: { type: 'boolean' },
  },
  maxArgs: 1,
  async run({ api, out }, [outage], opts) {
    const { status, recipient, sender, since, until, limit, cursor } = opts;
    const filter = query({ status, recipient, sender, since, until, limit, cursor });
    const path = `/api/outages/${seg(outage, 'the outage id')}/messages${filter}`;
    const r = await request<MessagePage>(api, 'GET', path);
    if (opts.ids) {
      const ids = r.messages.map((m) => m.id);
      out(ids.join('\n'), ids);
      return 0;
    }
    const text = table(
      ['ID', 'RECEIVED', 'FROM', 'SUBJECT', 'RECIPIENTS'],
      r.messages.map((m) => [
        m.id,
        when(m.receivedAt),
        m.envelopeFrom || '<>',
        (m.subject ?? '').slice(0, 50),
        m.recipients.map((x) => `${x.address} (${x.status})`).join(', '),
      ]),
    );
    out(r.nextCursor ? `${text}\nmore: --cursor ${r.nextCursor}` : text, r);
    return 0;
  },
});

const messagesShow = command({
  name: 'messages show',
  usage: [
    'messages show <id>                          spam score, authentication, headers, text, attachments (audited)',
  ],
  options: {},
  maxArgs: 1,
  async run({ api, out }, [id]) {
    const m = await request<MessageDetail>(api, 'GET', `/api/messages/${seg(id, 'the message id')}`);
    out(messageText(m), m);
    return 0;
  },
});

function messageText(m: MessageDetail): string {
  const c = m.content;
  return [
    `Message      ${m.id} (queue id ${m.queueId}), ${m.sizeBytes} bytes, received ${when(m.receivedAt)}`,
    `Envelope     from <${m.envelopeFrom}> to ${m.recipients.map((r) => `<${r.address}>`).join(', ')}`,
    `Client       ${m.clientIp} (${m.helo})${m.tls ? `, ${m.tls}` : ''}`,
    `From         ${c.from ?? '-'}`,
    `To           ${c.to ?? '-'}`,
    `Subject      ${c.subject ?? '-'}`,
    `Date         ${c.date ?? '-'}`,
    '',
    ...spamSection(m.spam),
    '',
    ...authSection(m.auth),
    '',
    c.text ?? '(no text part)',
    '',
    'Attachments',
    table(
      ['FILENAME', 'TYPE', 'BYTES'],
      c.attachments.map((a) => [a.filename, a.contentType, a.size]),
    ),
  ].join('\n');
}

const messagesRaw = command({
  name: 'messages raw',
  usage: ['messages raw <id>                           the message as accepted, to stdout (audited)'],
  options: {},
  maxArgs: 1,
  async run({ api }, [id]) {
    const path = `/api/messages/${seg(id, 'the message id')}/raw`;
    process.stdout.write(await request<Buffer>(api, 'GET', path, undefined, { binary: true }));
    return 0;
  },
});

const quarantineList = command({
  name: 'quarantine list',
  usage: [
    'quarantine list <outage> [--limit N] [--cursor ID]   quarantined mail still held (listing records a review)',
  ],
  options: { limit: { type: 'string' }, cursor: { type: 'string' } },
  maxArgs: 1,
  async run({ api, out }, [outage], { limit, cursor }) {
    const path = `/api/outages/${seg(outage, 'the outage id')}/quarantine${query({ limit, cursor })}`;
    const r = await request<QuarantinePage>(api, 'GET', path);
    const text = table(
      ['ID', 'RECEIVED', 'FROM', 'SUBJECT', 'SCORE', 'REASON / TOP SYMBOLS'],
      r.messages.map((m) => [
        m.id,
        when(m.receivedAt),
        m.envelopeFrom || '<>',
        (m.subject ?? '').slice(0, 50),
        m.score?.toFixed(2),
        [
          m.state === 'spam' ? 'marked as spam' : m.reason,
          m.topSymbols.map((s) => `${s.name} ${s.score.toFixed(2)}`).join(', '),
        ]
          .filter(Boolean)
          .join('; '),
      ]),
    );
    const more = r.nextCursor ? `\nmore: --cursor ${r.nextCursor}` : '';
    const hint = r.messages.length
      ? '\n`mxf quarantine release <id>` delivers one as the instruction in force says; `mxf quarantine spam <id>` keeps it from everywhere'
      : '';
    out(`${text}${more}${hint}`, r);
    return 0;
  },
});

const quarantineRelease = command({
  name: 'quarantine release',
  usage: [
    'quarantine release <message-id> [--note TEXT]        deliver it as the instruction in force says (audited)',
  ],
  options: { note: { type: 'string' } },
  maxArgs: 1,
  async run({ api, out }, [id], opts) {
    const path = `/api/messages/${seg(id, 'the message id')}/release`;
    const r = await request<ReviewResult>(api, 'POST', path, { note: opts.note });
    const by = r.spam.review ? ` by ${r.spam.review.by} at ${when(r.spam.review.at)}` : '';
    out(`message ${r.id} released${by}: it goes where the outage's instruction sends held mail`, r);
    return 0;
  },
});

const quarantineSpam = command({
  name: 'quarantine spam',
  usage: [
    'quarantine spam <message-id> [--note TEXT]           never deliver it anywhere; kept, never bounced (audited)',
  ],
  options: { note: { type: 'string' } },
  maxArgs: 1,
  async run({ api, out }, [id], opts) {
    const path = `/api/messages/${seg(id, 'the message id')}/spam`;
    const r = await request<ReviewResult>(api, 'POST', path, { note: opts.note });
    const by = r.spam.review ? ` by ${r.spam.review.by} at ${when(r.spam.review.at)}` : '';
    out(`message ${r.id} marked as spam${by}: it is kept here and delivered nowhere`, r);
    return 0;
  },
});

const audit = command({
  name: 'audit',
  usage: ['audit [--customer ID] [--actor NAME] [--action NAME] [--limit N]'],
  options: {
    customer: { type: 'string' },
    actor: { type: 'string' },
    action: { type: 'string' },
    limit: { type: 'string' },
  },
  maxArgs: 0,
  async run({ api, out }, _args, { customer, actor, action, limit }) {
    const r = await request<{ events: AuditEvent[] }>(
      api,
      'GET',
      `/api/audit${query({ customer, actor, action, limit })}`,
    );
    const rows = r.events.map((e) => [
      when(e.at),
      e.actor,
      e.action,
      e.target,
      `${e.outcome} (${e.statusCode ?? '-'})`,
    ]);
    out(table(['AT', 'ACTOR', 'ACTION', 'TARGET', 'OUTCOME'], rows), r);
    return 0;
  },
});

const runbooksCheck = command({
  name: 'runbooks check',
  usage: ['runbooks check [folder]'],
  options: {},
  maxArgs: 1,
  run: ({ config }, [folder]) => checkRunbooks(resolve(folder ?? config.runbooksDir)),
});

function tokenName(text: string | undefined): string {
  const name = tokenNameSchema.safeParse(text);
  if (!name.success) throw new UsageError(`token name: ${name.error.issues[0]?.message}`);
  return name.data;
}

const tokensCreate = command({
  name: 'tokens create',
  usage: ['tokens create <name> viewer|operator|admin [--replace]   prints the token once'],
  options: { replace: { type: 'boolean' } },
  maxArgs: 2,
  run({ config }, [name, role], opts) {
    const create = tokenName(name);
    const parsedRole = roleSchema.safeParse(role);
    if (!parsedRole.success) throw new UsageError('the role must be viewer, operator or admin');
    return tokensCommand(config, { create, role: parsedRole.data, replace: opts.replace ?? false });
  },
});

const tokensRevoke = command({
  name: 'tokens revoke',
  usage: ['tokens revoke <name>'],
  options: {},
  maxArgs: 1,
  run: ({ config }, [name]) => tokensCommand(config, { revoke: tokenName(name) }),
});

/** In the order of the usage text. */
export const COMMANDS: Command[] = [
  customers,
  outagesList,
  outagesShow,
  outagesDeclare,
  instruct,
  call,
  messagesList,
  messagesShow,
  messagesRaw,
  quarantineList,
  quarantineRelease,
  quarantineSpam,
  audit,
  runbooksCheck,
  tokensCreate,
  tokensRevoke,
  ...mailboxCommands,
];

/** The command named by the first words on the command line. */
export function findCommand(words: string[]): Command {
  const found = COMMANDS.find((c) => c.name.split(' ').every((w, i) => words[i] === w));
  if (!found) throw new UsageError(`unknown command: ${words.join(' ')}`);
  return found;
}

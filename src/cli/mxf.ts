import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { AuditEvent } from '../api/audit';
import { roleSchema, tokenNameSchema } from '../api/auth';
import type { CustomersResponse } from '../api/customers';
import type { MessageDetail, MessagePage } from '../api/messages';
import type { OutageSummary } from '../api/outage-lookup';
import { loadConfigOrExit } from '../config';
import { checkRunbooks } from '../runbooks/check';
import { type ApiTarget, CliApiError, request } from './api-client';
import { type OutageView, outageDetail, outageLine, outagesTable, table, when } from './render';
import { tokensCommand } from './tokens';

// mxf: the operator's CLI over the ops API. Tables for people, --json for scripts; a non-zero exit on failure
// (1: the API refused or failed, 2: a usage error). `mxf tokens` talks to PostgreSQL directly: it is how the
// first token comes to exist.

const USAGE = `usage: mxf <command> [options]

  customers                                   customers (runbooks), their held mail and active outage
  outages list [--state active|resolved|all] [--customer ID]
  outages show <outage>                       phase, counts, probes, notifications, calls, instructions
  outages declare <customer> [--note TEXT]    declare an outage by hand (the customer called)
  instruct <outage> hold|restore|resolve [--note TEXT]
  instruct <outage> forward --to ADDRESS [--to ADDRESS ...] [--note TEXT]
  instruct <outage> redirect --host HOST [--port 25] [--require-tls] [--note TEXT]
  call <outage> reached|no-answer|voicemail|wrong-number [--task ID] [--note TEXT]
  messages list <outage> [--status held|delivered|failed] [--recipient TEXT] [--sender TEXT]
                         [--since ISO] [--until ISO] [--limit N] [--cursor ID] [--ids]
  messages show <id>                          headers, text and attachments (audited)
  messages raw <id>                           the message as accepted, to stdout (audited)
  audit [--customer ID] [--actor NAME] [--action NAME] [--limit N]
  runbooks check [folder]
  tokens create <name> viewer|operator|admin [--replace]   prints the token once
  tokens revoke <name>

<outage> is an outage id (harborview-law.1a2b3c4d) or a customer id, for its latest outage.
Options: --api URL (or MXF_API_URL), --token TOKEN (or MXF_TOKEN), --json`;

class UsageError extends Error {}

const OPTIONS = {
  api: { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean' },
  ids: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  note: { type: 'string' },
  to: { type: 'string', multiple: true },
  host: { type: 'string' },
  port: { type: 'string' },
  'require-tls': { type: 'boolean' },
  replace: { type: 'boolean' },
  task: { type: 'string' },
  state: { type: 'string' },
  customer: { type: 'string' },
  status: { type: 'string' },
  recipient: { type: 'string' },
  sender: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
  limit: { type: 'string' },
  cursor: { type: 'string' },
  actor: { type: 'string' },
  action: { type: 'string' },
} as const;

type Options = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>['values'];

function query(params: Record<string, string | undefined>): string {
  const entries = Object.entries(params).filter((e): e is [string, string] => e[1] !== undefined);
  return entries.length ? `?${new URLSearchParams(entries)}` : '';
}

const need = (value: string | undefined, what: string): string => {
  if (!value) throw new UsageError(`missing ${what}`);
  return value;
};
const seg = (value: string | undefined, what: string) => encodeURIComponent(need(value, what));

async function run(
  args: string[],
  opts: Options,
  out: (text: string, json: unknown) => void,
): Promise<number> {
  const config = loadConfigOrExit();
  const api: ApiTarget = { url: opts.api ?? config.api.url, token: opts.token ?? config.api.token };
  const [command, sub, arg, arg2] = args;
  const note = opts.note;

  switch (`${command} ${command === 'instruct' || command === 'call' ? '' : (sub ?? '')}`.trim()) {
    case 'customers': {
      const r = await request<CustomersResponse>(api, 'GET', '/api/customers');
      out(
        table(
          ['CUSTOMER', 'NAME', 'DOMAINS', 'HELD', 'OUTAGE', 'PHASE'],
          r.customers.map((c) => [
            c.id,
            c.name,
            c.domains.join(', '),
            c.heldMessages,
            c.activeOutage?.id,
            c.activeOutage?.phase,
          ]),
        ),
        r,
      );
      return 0;
    }
    case 'outages list': {
      const r = await request<{ outages: OutageSummary[] }>(
        api,
        'GET',
        `/api/outages${query({ state: opts.state, customer: opts.customer })}`,
      );
      out(outagesTable(r.outages), r);
      return 0;
    }
    case 'outages show': {
      const r = await request<OutageView>(api, 'GET', `/api/outages/${seg(arg, 'the outage id')}`);
      out(outageDetail(r), r);
      return 0;
    }
    case 'outages declare': {
      const r = await request<OutageView>(
        api,
        'POST',
        `/api/customers/${seg(arg, 'the customer id')}/outages`,
        {
          note,
        },
      );
      out(`declared. ${outageLine(r)}`, r);
      return 0;
    }
    case 'instruct': {
      const action = need(arg, 'the action: hold, forward, redirect, restore or resolve');
      const body: Record<string, unknown> = { action, note };
      if (action === 'forward') body.to = opts.to ?? [];
      if (action === 'redirect') {
        body.host = opts.host;
        if (opts.port) body.port = Number(opts.port);
        body.requireTls = opts['require-tls'] ?? false;
      }
      const r = await request<OutageView>(
        api,
        'POST',
        `/api/outages/${seg(sub, 'the outage id')}/instructions`,
        body,
      );
      out(outageLine(r), r);
      return 0;
    }
    case 'call': {
      const outcome = need(arg, 'the outcome: reached, no-answer, voicemail or wrong-number');
      const r = await request<OutageView>(api, 'POST', `/api/outages/${seg(sub, 'the outage id')}/calls`, {
        outcome,
        taskId: opts.task,
        note,
      });
      const closed = [...r.callTasks].reverse().find((t) => t.outcome);
      out(`${closed?.id ?? 'call'} recorded: ${closed?.outcome ?? outcome}. ${outageLine(r)}`, r);
      return 0;
    }
    case 'messages list': {
      const r = await request<MessagePage>(
        api,
        'GET',
        `/api/outages/${seg(arg, 'the outage id')}/messages${query({
          status: opts.status,
          recipient: opts.recipient,
          sender: opts.sender,
          since: opts.since,
          until: opts.until,
          limit: opts.limit,
          cursor: opts.cursor,
        })}`,
      );
      const text = table(
        ['ID', 'RECEIVED', 'FROM', 'SUBJECT', 'RECIPIENTS'],
        r.messages.map((m) => [
          m.id,
          when(m.receivedAt),
          m.envelopeFrom || '<>',
          (m.subject ?? '').slice(0, 50),
          m.recipients
            .map((x: { address: string; status: string }) => `${x.address} (${x.status})`)
            .join(', '),
        ]),
      );
      if (opts.ids)
        out(
          r.messages.map((m) => m.id).join('\n'),
          r.messages.map((m) => m.id),
        );
      else out(r.nextCursor ? `${text}\nmore: --cursor ${r.nextCursor}` : text, r);
      return 0;
    }
    case 'messages show': {
      const m = await request<MessageDetail>(api, 'GET', `/api/messages/${seg(arg, 'the message id')}`);
      const c = m.content;
      const text = [
        `Message      ${m.id} (queue id ${m.queueId}), ${m.sizeBytes} bytes, received ${when(m.receivedAt)}`,
        `Envelope     from <${m.envelopeFrom}> to ${m.recipients.map((r) => `<${r.address}>`).join(', ')}`,
        `Client       ${m.clientIp} (${m.helo})${m.tls ? `, ${m.tls}` : ''}`,
        `From         ${c.from ?? '-'}`,
        `To           ${c.to ?? '-'}`,
        `Subject      ${c.subject ?? '-'}`,
        `Date         ${c.date ?? '-'}`,
        '',
        c.text ?? '(no text part)',
        '',
        'Attachments',
        table(
          ['FILENAME', 'TYPE', 'BYTES'],
          c.attachments.map((a) => [a.filename, a.contentType, a.size]),
        ),
      ].join('\n');
      out(text, m);
      return 0;
    }
    case 'messages raw': {
      const raw = await request<Buffer>(
        api,
        'GET',
        `/api/messages/${seg(arg, 'the message id')}/raw`,
        undefined,
        {
          binary: true,
        },
      );
      process.stdout.write(raw);
      return 0;
    }
    case 'audit': {
      const r = await request<{ events: AuditEvent[] }>(
        api,
        'GET',
        `/api/audit${query({ customer: opts.customer, actor: opts.actor, action: opts.action, limit: opts.limit })}`,
      );
      out(
        table(
          ['AT', 'ACTOR', 'ACTION', 'TARGET', 'OUTCOME'],
          r.events.map((e) => [
            when(e.at),
            e.actor,
            e.action,
            e.target,
            `${e.outcome} (${e.statusCode ?? '-'})`,
          ]),
        ),
        r,
      );
      return 0;
    }
    case 'runbooks check':
      return checkRunbooks(resolve(arg ?? config.runbooksDir));
    case 'tokens create':
    case 'tokens revoke': {
      const name = tokenNameSchema.safeParse(arg);
      if (!name.success) throw new UsageError(`token name: ${name.error.issues[0]?.message}`);
      if (sub === 'revoke') return tokensCommand(config, { revoke: name.data });
      const role = roleSchema.safeParse(arg2);
      if (!role.success) throw new UsageError('the role must be viewer, operator or admin');
      return tokensCommand(config, { create: name.data, role: role.data, replace: opts.replace ?? false });
    }
    default:
      throw new UsageError(command ? `unknown command: ${args.join(' ')}` : 'no command given');
  }
}

async function main(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    console.error(`mxf: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  const { values: opts, positionals } = parsed;
  if (opts.help || positionals.length === 0) {
    console.log(USAGE);
    return opts.help ? 0 : 2;
  }
  const out = (text: string, json: unknown) => console.log(opts.json ? JSON.stringify(json, null, 2) : text);
  try {
    return await run(positionals, opts, out);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`mxf: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    if (err instanceof CliApiError) {
      if (opts.json)
        console.log(JSON.stringify({ error: { code: err.code, message: err.message } }, null, 2));
      console.error(`mxf: ${err.code}: ${err.message}`);
      return 1;
    }
    console.error(`mxf: ${(err as Error).message}`);
    return 1;
  }
}

void main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});

import type { listMailboxes, mailboxCounts } from '../store/mailboxes';
import { request } from './api-client';
import { type Command, command, seg, UsageError } from './command';
import { table, when } from './render';

// Temporary mailboxes: who has one and how far they got, and the hand-out of a sign-in (shown once).

type MailboxList = {
  counts: Awaited<ReturnType<typeof mailboxCounts>>;
  mailboxes: Awaited<ReturnType<typeof listMailboxes>>;
};

interface SignIn {
  address: string;
  password: string;
  imap: { host: string; port: number; security: string };
  submission: { host: string; port: number; security: string };
  web: { url: string; link: string; linkExpiresAt: string };
  sent: { channel: string; to: string; ok: boolean; error?: string } | null;
}

const mailboxesList = command({
  name: 'mailboxes list',
  usage: [
    'mailboxes list <outage>                    temporary mailboxes: state, last sign-in, copies, sent',
  ],
  options: {},
  maxArgs: 1,
  async run({ api, out }, [outage]) {
    const r = await request<MailboxList>(
      api,
      'GET',
      `/api/outages/${seg(outage, 'the outage id')}/mailboxes`,
    );
    const c = r.counts;
    const rows = r.mailboxes.map((m) => [
      m.address,
      m.state,
      when(m.lastSignInAt),
      m.copied,
      m.sent,
      when(m.deleteAfter),
    ]);
    out(
      [
        `${c.provisioned} mailbox(es): ${c.signInIssued} handed a sign-in, ${c.signedIn} signed in, ${c.closed} closed`,
        table(['ADDRESS', 'STATE', 'LAST SIGN-IN', 'COPIED', 'SENT', 'DELETED AFTER'], rows),
      ].join('\n'),
      r,
    );
    return 0;
  },
});

const mailboxesSignIn = command({
  name: 'mailboxes sign-in',
  usage: [
    'mailboxes sign-in <outage> <address> [--sms +NUMBER | --email ALTERNATE]',
    '    a new password and a one-time web link, shown once; --sms/--email also send the link (not the password)',
  ],
  options: { sms: { type: 'string' }, email: { type: 'string' }, note: { type: 'string' } },
  maxArgs: 2,
  async run({ api, out }, [outage, address], opts) {
    if (opts.sms && opts.email) throw new UsageError('mailboxes sign-in: --sms or --email, not both');
    const sendLinkTo = opts.sms ? { sms: opts.sms } : opts.email ? { email: opts.email } : undefined;
    const path = `/api/outages/${seg(outage, 'the outage id')}/mailboxes/${seg(address, 'the mailbox address')}/sign-in`;
    const r = await request<SignIn>(api, 'POST', path, { sendLinkTo, note: opts.note });
    const sent = r.sent
      ? [`Link sent by ${r.sent.channel} to ${r.sent.to}: ${r.sent.ok ? 'ok' : r.sent.error}`]
      : [];
    out(
      [
        `Sign-in for ${r.address} (shown once; only hashes are kept):`,
        `  user name   ${r.address}`,
        `  password    ${r.password}`,
        `  IMAP        ${r.imap.host}:${r.imap.port} (${r.imap.security})`,
        `  SMTP        ${r.submission.host}:${r.submission.port} (${r.submission.security}, password sign-in)`,
        `  web inbox   ${r.web.url}`,
        `  one-time link (until ${when(r.web.linkExpiresAt)}): ${r.web.link}`,
        ...sent,
      ].join('\n'),
      r,
    );
    return 0;
  },
});

export const mailboxCommands: Command[] = [mailboxesList, mailboxesSignIn];

import { randomUUID } from 'node:crypto';
import type { AddressObject, ParsedMail } from 'mailparser';
import addressparser from 'nodemailer/lib/addressparser';
import MailComposer from 'nodemailer/lib/mail-composer';

// What the web inbox sends, built here and nowhere else: From is always the signed-in mailbox (a person writing
// from a temporary mailbox sends as themselves, never as anyone else); replies carry In-Reply-To and References so
// the other side's mail app threads them.

export interface Draft {
  to: string;
  cc: string;
  bcc: string;
  subject: string;
  text: string;
  inReplyTo?: string;
  references?: string;
}

export interface Upload {
  filename: string;
  contentType: string;
  content: Buffer;
}

export type ReplyMode = 'reply' | 'all' | 'forward';

interface Recipient {
  name: string;
  address: string;
}

const ADDRESS = /^[^\s@<>(),;:"]+@[^\s@<>(),;:"]+$/;

/** The addresses written in one field; the ones that are not addresses come back apart, to be shown. */
export function parseAddresses(field: string): { ok: Recipient[]; bad: string[] } {
  const ok: Recipient[] = [];
  const bad: string[] = [];
  for (const entry of addressparser(field, { flatten: true })) {
    if (ADDRESS.test(entry.address)) ok.push({ name: entry.name, address: entry.address });
    else bad.push(entry.name || entry.address);
  }
  return { ok, bad };
}

/** Message-IDs only: a References field from a form must not smuggle other header content in. */
const messageIds = (value: string | undefined): string[] => value?.match(/<[^<>\s]+>/g) ?? [];

export interface Built {
  raw: Buffer;
  recipients: string[];
  messageId: string;
}

export async function buildMessage(from: string, draft: Draft, uploads: Upload[]): Promise<Built> {
  const to = parseAddresses(draft.to).ok;
  const cc = parseAddresses(draft.cc).ok;
  const bcc = parseAddresses(draft.bcc).ok;
  const recipients = [...new Set([...to, ...cc, ...bcc].map((r) => r.address.toLowerCase()))];
  const messageId = `<${randomUUID()}@${from.split('@')[1]}>`;
  const composer = new MailComposer({
    from,
    to,
    cc,
    bcc,
    subject: draft.subject.replace(/[\r\n]+/g, ' '),
    text: draft.text.replace(/\r?\n/g, '\r\n'),
    messageId,
    inReplyTo: messageIds(draft.inReplyTo)[0],
    references: messageIds(draft.references),
    attachments: uploads.map((u) => ({
      filename: u.filename.replace(/[\r\n]+/g, ' '),
      contentType: u.contentType || 'application/octet-stream',
      content: u.content,
    })),
    // Nothing a person types may make us read a file or fetch a URL into their message.
    disableFileAccess: true,
    disableUrlAccess: true,
  });
  const raw = await composer.compile().build();
  return { raw, recipients, messageId };
}

const addressList = (field: AddressObject | AddressObject[] | undefined): Recipient[] =>
  [field ?? []].flat().flatMap((a) => a.value.map((v) => ({ name: v.name, address: v.address ?? '' })));

const formatList = (list: Recipient[]) =>
  list.map((r) => (r.name ? `"${r.name.replace(/"/g, "'")}" <${r.address}>` : r.address)).join(', ');

const withPrefix = (prefix: string, subject: string) =>
  new RegExp(`^${prefix}:`, 'i').test(subject.trim()) ? subject : `${prefix}: ${subject}`;

const quoted = (text: string) =>
  text
    .replace(/\r\n/g, '\n')
    .split('\n')
    .map((line) => `> ${line}`.trimEnd())
    .join('\n');

/** The form a reply, a reply to all or a forward of `original` starts from. */
export function replyDraft(original: ParsedMail, mode: ReplyMode, self: string): Draft {
  const from = addressList(original.from);
  const subject = original.subject ?? '';
  const when = original.date ? original.date.toUTCString() : 'an unknown date';
  const who = formatList(from) || 'the sender';
  const body = original.text ?? '';
  if (mode === 'forward') {
    const header = [
      '---------- Forwarded message ----------',
      `From: ${who}`,
      `Date: ${when}`,
      `Subject: ${subject}`,
      `To: ${formatList(addressList(original.to))}`,
    ].join('\n');
    return { to: '', cc: '', bcc: '', subject: withPrefix('Fwd', subject), text: `\n\n${header}\n\n${body}` };
  }
  const replyTo = addressList(original.replyTo);
  const to = replyTo.length ? replyTo : from;
  const me = self.toLowerCase();
  const seen = new Set([me, ...to.map((r) => r.address.toLowerCase())]);
  const others =
    mode === 'all'
      ? [...addressList(original.to), ...addressList(original.cc)].filter((r) => {
          const key = r.address.toLowerCase();
          if (seen.has(key)) return false;
          seen.add(key);
          return true;
        })
      : [];
  const references = [
    ...messageIds([original.references ?? []].flat().join(' ')),
    ...messageIds(original.messageId),
  ];
  return {
    to: formatList(to),
    cc: formatList(others),
    bcc: '',
    subject: withPrefix('Re', subject),
    text: `\n\nOn ${when}, ${who} wrote:\n${quoted(body)}\n`,
    inReplyTo: original.messageId,
    references: references.join(' '),
  };
}

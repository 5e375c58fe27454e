import type { FetchMessageObject, ImapFlow, SearchObject } from 'imapflow';
import { folderNotFound, messageNotFound } from './errors';
import type { Folder } from './views/layout';

// Every read and every flag change goes through IMAP, never our database: a phone's mail app and the web inbox
// then agree on what is read, where it is and what exists. Each request signs in for itself (src/mailbox/imap.ts),
// so nothing here outlives a request.

export const PAGE_SIZE = 25;

const SPECIAL_ORDER = ['\\Inbox', '\\Sent', '\\Junk'];
const SPECIAL_NAMES: Record<string, string> = { '\\Inbox': 'Inbox', '\\Sent': 'Sent', '\\Junk': 'Junk' };

/** Inbox, Sent, Junk first, then whatever else the mailbox holds, by name; with their unread counts. */
export async function listFolders(imap: ImapFlow): Promise<Folder[]> {
  const listed = await imap.list({ statusQuery: { unseen: true } });
  const rank = (special?: string) => {
    const i = special ? SPECIAL_ORDER.indexOf(special) : -1;
    return i < 0 ? SPECIAL_ORDER.length : i;
  };
  return listed
    .filter((f) => !f.flags.has('\\Noselect') && !f.flags.has('\\NonExistent'))
    .sort((a, b) => rank(a.specialUse) - rank(b.specialUse) || a.path.localeCompare(b.path))
    .map((f) => ({
      path: f.path,
      name: (f.specialUse && SPECIAL_NAMES[f.specialUse]) ?? f.path,
      unseen: f.status?.unseen,
    }));
}

export function requireFolder(folders: Folder[], path: string): Folder {
  const folder = folders.find((f) => f.path === path);
  if (!folder) throw folderNotFound();
  return folder;
}

/** Runs `fn` with `path` selected; a folder that vanished since the LIST reads as not found. */
export async function inFolder<T>(imap: ImapFlow, path: string, fn: () => Promise<T>): Promise<T> {
  const lock = await imap.getMailboxLock(path).catch(() => {
    throw folderNotFound();
  });
  try {
    return await fn();
  } finally {
    lock.release();
  }
}

export type SearchField = 'all' | 'from' | 'subject' | 'body';

export interface ListQuery {
  page: number;
  q?: string;
  field: SearchField;
}

export interface MessageSummary {
  uid: number;
  from: string;
  subject: string;
  date?: Date;
  seen: boolean;
}

export interface MessagePage {
  items: MessageSummary[];
  total: number;
  page: number;
  pages: number;
}

function searchObject(q: string, field: SearchField): SearchObject {
  if (field === 'all') return { or: [{ from: q }, { subject: q }, { body: q }] };
  return { [field]: q };
}

const dateOf = (value: Date | string | undefined) => (value === undefined ? undefined : new Date(value));

const summary = (m: FetchMessageObject): MessageSummary => {
  const from = m.envelope?.from?.[0];
  return {
    uid: m.uid,
    from: from?.name || from?.address || '(no sender)',
    subject: m.envelope?.subject || '(no subject)',
    date: dateOf(m.envelope?.date ?? m.internalDate),
    seen: m.flags?.has('\\Seen') ?? false,
  };
};

const SUMMARY_QUERY = { uid: true, envelope: true, flags: true, internalDate: true } as const;

/**
 * One page of the selected folder, newest first: without a search by sequence number (the order mail arrived in,
 * which a client cannot reorder), with one the matching UIDs from IMAP SEARCH, highest first.
 */
export async function listMessages(imap: ImapFlow, query: ListQuery): Promise<MessagePage> {
  const exists = imap.mailbox ? imap.mailbox.exists : 0;
  if (query.q) {
    const uids = ((await imap.search(searchObject(query.q, query.field), { uid: true })) || []).sort(
      (a, b) => b - a,
    );
    const pages = Math.max(1, Math.ceil(uids.length / PAGE_SIZE));
    const page = Math.min(query.page, pages);
    const slice = uids.slice((page - 1) * PAGE_SIZE, page * PAGE_SIZE);
    const fetched = slice.length ? await imap.fetchAll(slice.join(','), SUMMARY_QUERY, { uid: true }) : [];
    const items = fetched.sort((a, b) => b.uid - a.uid).map(summary);
    return { items, total: uids.length, page, pages };
  }
  const pages = Math.max(1, Math.ceil(exists / PAGE_SIZE));
  const page = Math.min(query.page, pages);
  const hi = exists - (page - 1) * PAGE_SIZE;
  const lo = Math.max(1, hi - PAGE_SIZE + 1);
  const fetched = hi >= 1 ? await imap.fetchAll(`${lo}:${hi}`, SUMMARY_QUERY) : [];
  return { items: fetched.sort((a, b) => b.seq - a.seq).map(summary), total: exists, page, pages };
}

/** The message's bytes as the IMAP server keeps them (BODY.PEEK: reading the source alone marks nothing). */
export async function messageSource(
  imap: ImapFlow,
  uid: number,
): Promise<{ source: Buffer; subject: string }> {
  const message = await imap.fetchOne(String(uid), { source: true, envelope: true }, { uid: true });
  if (message === false || !message.source) throw messageNotFound();
  return { source: message.source, subject: message.envelope?.subject ?? '' };
}

export async function setSeen(imap: ImapFlow, uid: number, seen: boolean): Promise<void> {
  if (seen) await imap.messageFlagsAdd(String(uid), ['\\Seen'], { uid: true });
  else await imap.messageFlagsRemove(String(uid), ['\\Seen'], { uid: true });
}

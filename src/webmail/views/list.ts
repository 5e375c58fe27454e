import { type Html, html } from '../html';
import type { ListQuery, MessagePage, MessageSummary, SearchField } from '../mail-store';
import { type Chrome, folderHref, page } from './layout';

// A folder: the search box, one line a message (unread in bold), and the pager.

const FIELDS: [SearchField, string][] = [
  ['all', 'Everywhere'],
  ['from', 'From'],
  ['subject', 'Subject'],
  ['body', 'Message text'],
];

/** Today's mail by its time, older mail by its day: what a glance at a list needs. */
export function shortDate(date: Date | undefined, now = new Date()): string {
  if (!date || Number.isNaN(date.getTime())) return '';
  const sameDay = date.toDateString() === now.toDateString();
  if (sameDay) return date.toLocaleTimeString('en-GB', { hour: '2-digit', minute: '2-digit' });
  const sameYear = date.getFullYear() === now.getFullYear();
  return date.toLocaleDateString('en-GB', {
    day: 'numeric',
    month: 'short',
    ...(sameYear ? {} : { year: 'numeric' }),
  });
}

export const messageHref = (folder: string, uid: number) => `${folderHref(folder)}/${uid}`;

function listQueryString(query: ListQuery, page: number): string {
  const params = new URLSearchParams();
  if (query.q) params.set('q', query.q);
  if (query.q && query.field !== 'all') params.set('in', query.field);
  if (page > 1) params.set('page', String(page));
  const s = params.toString();
  return s ? `?${s}` : '';
}

const row = (folder: string, m: MessageSummary) =>
  html`<li><a href="${messageHref(folder, m.uid)}" class="${m.seen ? '' : 'unread'}">
<span class="from">${m.from}</span><span class="subject">${m.subject}</span><span class="date">${shortDate(m.date)}</span>
</a></li>`;

function searchForm(folder: string, query: ListQuery): Html {
  return html`<form class="search" method="get" action="${folderHref(folder)}" role="search">
<input type="search" name="q" value="${query.q ?? ''}" placeholder="Search this folder" aria-label="Search">
<select name="in" aria-label="Search in">${FIELDS.map(
    ([value, label]) =>
      html`<option value="${value}" ${value === query.field ? 'selected' : ''}>${label}</option>`,
  )}</select>
<button type="submit" class="secondary">Search</button>
</form>`;
}

function pager(folder: string, query: ListQuery, result: MessagePage): Html {
  if (result.pages <= 1) return html``;
  const base = folderHref(folder);
  return html`<div class="pager">
${result.page > 1 ? html`<a href="${base}${listQueryString(query, result.page - 1)}">&larr; Newer</a>` : html`<span></span>`}
<span>Page ${result.page} of ${result.pages}</span>
${result.page < result.pages ? html`<a href="${base}${listQueryString(query, result.page + 1)}">Older &rarr;</a>` : html`<span></span>`}
</div>`;
}

export interface ListView {
  chrome: Chrome;
  folder: { path: string; name: string };
  query: ListQuery;
  result: MessagePage;
  notice?: string;
}

export function listPage(view: ListView): Html {
  const { folder, query, result } = view;
  const empty = query.q
    ? html`<p class="empty">Nothing in ${folder.name} matches “${query.q}”.</p>`
    : html`<p class="empty">${folder.name} is empty.</p>`;
  return page(
    `${folder.name} — ${view.chrome.address}`,
    html`${view.notice ? html`<div class="notice" role="status">${view.notice}</div>` : ''}
<div class="card">
<h1>${folder.name}${query.q ? html` <small>(${result.total} found)</small>` : ''}</h1>
${searchForm(folder.path, query)}
${result.items.length ? html`<ul class="list">${result.items.map((m) => row(folder.path, m))}</ul>` : empty}
${pager(folder.path, query, result)}
</div>`,
    view.chrome,
  );
}

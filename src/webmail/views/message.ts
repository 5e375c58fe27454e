import type { AddressObject, ParsedMail } from 'mailparser';
import { type Html, html, trustedHtml } from '../html';
import type { AttachmentInfo, Body } from '../reading';
import { type Chrome, folderHref, page } from './layout';
import { messageHref } from './list';

// One message: who, when, the body (sanitized HTML or text), its attachments, and what can be done with it.

const addresses = (field: AddressObject | AddressObject[] | undefined): string =>
  [field ?? []]
    .flat()
    .flatMap((a) => a.value.map((v) => (v.name ? `${v.name} <${v.address ?? ''}>` : (v.address ?? ''))))
    .join(', ');

export function humanSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

function bodyHtml(body: Body, imagesHref: string): Html {
  if (body.kind === 'text') return html`<div class="body"><pre class="text">${body.text}</pre></div>`;
  const blocked = body.sanitized.blockedImages;
  return html`${
    blocked
      ? html`<div class="warn">Remote images in this message are not shown, so its sender cannot tell that you opened it. <a href="${imagesHref}">Show remote images</a></div>`
      : ''
  }<div class="body">${trustedHtml(body.sanitized.html)}</div>`;
}

function attachmentList(base: string, attachments: AttachmentInfo[]): Html {
  if (!attachments.length) return html``;
  return html`<h2 style="font-size:1rem;margin-top:1.2rem">Attachments</h2><ul class="attachments">${attachments.map(
    (a) =>
      html`<li><a href="${base}/attachment/${a.index}" download>${a.filename}</a> <small>(${humanSize(a.size)})</small></li>`,
  )}</ul>`;
}

function actions(base: string, folder: string, uid: number, csrf: string): Html {
  const compose = (mode: string) => `/compose?mode=${mode}&folder=${encodeURIComponent(folder)}&uid=${uid}`;
  return html`<div class="actions">
<a class="button" href="${compose('reply')}">Reply</a>
<a class="button secondary" href="${compose('all')}">Reply all</a>
<a class="button secondary" href="${compose('forward')}">Forward</a>
<form class="inline" method="post" action="${base}/unread"><input type="hidden" name="_csrf" value="${csrf}"><button class="secondary" type="submit">Mark unread</button></form>
<a class="button secondary" href="${base}/eml">Download (.eml)</a>
</div>`;
}

export interface MessageView {
  chrome: Chrome;
  folder: { path: string; name: string };
  uid: number;
  parsed: ParsedMail;
  body: Body;
  attachments: AttachmentInfo[];
}

export function messagePage(view: MessageView): Html {
  const { parsed, folder, uid } = view;
  const base = messageHref(folder.path, uid);
  const subject = parsed.subject || '(no subject)';
  const cc = addresses(parsed.cc);
  return page(
    `${subject} — ${view.chrome.address}`,
    html`<div class="card">
<p><a href="${folderHref(folder.path)}">&larr; ${folder.name}</a></p>
<h1>${subject}</h1>
<div class="meta">
<div><strong>From:</strong> ${addresses(parsed.from)}</div>
<div><strong>To:</strong> ${addresses(parsed.to)}</div>
${cc ? html`<div><strong>Cc:</strong> ${cc}</div>` : ''}
<div><strong>Date:</strong> ${parsed.date ? parsed.date.toUTCString() : ''}</div>
</div>
${actions(base, folder.path, uid, view.chrome.csrf)}
${bodyHtml(view.body, `${base}?images=1`)}
${attachmentList(base, view.attachments)}
</div>`,
    view.chrome,
  );
}

import type { Draft } from '../compose-message';
import { type Html, html } from '../html';
import type { AttachmentInfo } from '../reading';
import { type Chrome, page } from './layout';
import { humanSize } from './message';

// The one form for a new message, a reply, a reply to all and a forward. The sender is not a field: it is the
// signed-in mailbox, shown, never chosen. (A textarea drops the newline right after its tag, hence the one we add:
// a reply's text starts with empty lines to write in.)

export interface ComposeView {
  chrome: Chrome;
  draft: Draft;
  /** A forward's original, whose attachments go along. */
  forward?: { folder: string; uid: number; attachments: AttachmentInfo[] };
  error?: string;
}

const field = (name: keyof Draft, label: string, value: string, type = 'text') =>
  html`<label for="${name}">${label}</label><input type="${type}" id="${name}" name="${name}" value="${value}" ${
    type === 'text' ? 'autocomplete="off"' : ''
  }>`;

function forwardedParts(view: ComposeView): Html {
  if (!view.forward) return html``;
  const { folder, uid, attachments } = view.forward;
  return html`<input type="hidden" name="forwardFolder" value="${folder}"><input type="hidden" name="forwardUid" value="${uid}">${
    attachments.length
      ? html`<p>Attachments of the forwarded message, sent along: ${attachments.map(
          (a, i) => html`${i ? ', ' : ''}${a.filename} <small>(${humanSize(a.size)})</small>`,
        )}</p>`
      : ''
  }`;
}

export function composePage(view: ComposeView): Html {
  const { draft } = view;
  return page(
    `${draft.subject || 'New message'} — ${view.chrome.address}`,
    html`<div class="card">
<h1>${draft.subject || 'New message'}</h1>
${view.error ? html`<div class="error" role="alert">${view.error}</div>` : ''}
<form method="post" action="/compose" enctype="multipart/form-data">
<input type="hidden" name="_csrf" value="${view.chrome.csrf}">
<input type="hidden" name="inReplyTo" value="${draft.inReplyTo ?? ''}">
<input type="hidden" name="references" value="${draft.references ?? ''}">
<p class="meta"><strong>From:</strong> ${view.chrome.address}</p>
${field('to', 'To', draft.to)}
${field('cc', 'Cc', draft.cc)}
${field('bcc', 'Bcc', draft.bcc)}
${field('subject', 'Subject', draft.subject)}
<label for="text">Message</label>
<textarea id="text" name="text">
${draft.text}</textarea>
<label for="attachments">Attach files</label>
<input type="file" id="attachments" name="attachments" multiple>
${forwardedParts(view)}
<div class="actions"><button type="submit">Send</button><a class="button secondary" href="/">Cancel</a></div>
</form>
</div>`,
    view.chrome,
  );
}

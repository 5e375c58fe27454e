import { type Html, html } from '../html';
import { type Chrome, page } from './layout';

// The small pages: signing in, a one-time link's confirmation, and what went wrong.

export function signInPage(
  csrf: string,
  opts: { error?: string; address?: string; notice?: string } = {},
): Html {
  return page(
    'Sign in to your temporary mailbox',
    html`<div class="card" style="max-width:26rem;margin:2rem auto">
<h1>Your temporary mailbox</h1>
<p>Your company's mail server is down. Until it is back, your mail arrives here.</p>
${opts.notice ? html`<div class="notice" role="status">${opts.notice}</div>` : ''}
${opts.error ? html`<div class="error" role="alert">${opts.error}</div>` : ''}
<form method="post" action="/signin">
<input type="hidden" name="_csrf" value="${csrf}">
<label for="address">Email address</label>
<input type="email" id="address" name="address" autocomplete="username" required value="${opts.address ?? ''}">
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<p><button type="submit">Sign in</button></p>
</form>
<p><small>No password? Your IT contact can send you a one-time sign-in link.</small></p>
</div>`,
  );
}

/**
 * A one-time link opens this page and is spent only by its button: phones and chat apps fetch a link to preview
 * it, and a plain GET that signed in would spend the link before its owner tapped it.
 */
export function linkPage(csrf: string, token: string): Html {
  return page(
    'Open your temporary mailbox',
    html`<div class="card" style="max-width:26rem;margin:2rem auto">
<h1>Your temporary mailbox</h1>
<p>Your company's mail server is down. Until it is back, your mail arrives here.</p>
<form method="post" action="/link">
<input type="hidden" name="_csrf" value="${csrf}">
<input type="hidden" name="token" value="${token}">
<p><button type="submit">Open my mailbox</button></p>
</form>
<p><small>This link works once. Afterwards, sign in with your password, or ask your IT contact for a new link.</small></p>
</div>`,
  );
}

export function errorPage(
  title: string,
  message: string,
  next: { href: string; label: string },
  chrome?: Chrome,
): Html {
  return page(
    title,
    html`<div class="card"><h1>${title}</h1><p>${message}</p><p><a class="button" href="${next.href}">${next.label}</a></p></div>`,
    chrome,
  );
}

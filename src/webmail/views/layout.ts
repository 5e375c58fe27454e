import { type Html, html, trustedHtml } from '../html';

// The page shell: one stylesheet inline (no second request, nothing to cache wrongly), a header with the signed-in
// address and the actions that need no folder, and the folder list beside the content on a wide screen, above it
// on a phone.

const CSS = trustedHtml(`
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d232a;background:#f4f6f8}
a{color:#0b5cad}
header{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;padding:.6rem 1rem;background:#123a5e;color:#fff}
header .who{flex:1;min-width:12rem;overflow-wrap:anywhere}
header .who small{display:block;opacity:.8}
header a,header button.link{color:#fff}
.wrap{display:flex;gap:1rem;max-width:72rem;margin:0 auto;padding:1rem}
nav.folders{flex:0 0 11rem}
nav.folders a{display:flex;justify-content:space-between;gap:.5rem;padding:.35rem .6rem;border-radius:6px;text-decoration:none;color:#1d232a}
nav.folders a.here{background:#dde7f1;font-weight:600}
nav.folders .count{min-width:1.4rem;padding:0 .4rem;border-radius:999px;background:#123a5e;color:#fff;font-size:.8rem;text-align:center;line-height:1.4rem}
main{flex:1;min-width:0}
.card{background:#fff;border:1px solid #d9dee4;border-radius:8px;padding:1rem}
.notice{background:#e7f4e9;border:1px solid #b5dcbc;border-radius:8px;padding:.6rem 1rem;margin-bottom:1rem}
.warn{background:#fff6e0;border:1px solid #ecd28f;border-radius:8px;padding:.6rem 1rem;margin-bottom:1rem}
.error{background:#fdecea;border:1px solid #f2b8b2;border-radius:8px;padding:.6rem 1rem;margin-bottom:1rem}
form.inline{display:inline}
button,.button{display:inline-block;font:inherit;padding:.4rem .9rem;border-radius:6px;border:1px solid #0b5cad;background:#0b5cad;color:#fff;text-decoration:none;cursor:pointer}
button.secondary,.button.secondary{background:#fff;color:#0b5cad}
button.link{background:none;border:none;padding:0;text-decoration:underline;color:#0b5cad}
input[type=text],input[type=email],input[type=password],input[type=search],textarea{width:100%;font:inherit;padding:.45rem .6rem;border:1px solid #b9c2cc;border-radius:6px}
select{font:inherit;padding:.4rem .5rem;border:1px solid #b9c2cc;border-radius:6px;background:#fff;color:inherit}
textarea{min-height:14rem}
label{display:block;margin:.6rem 0 .2rem;font-weight:600}
.search{display:flex;flex-wrap:wrap;gap:.5rem;margin-bottom:.8rem}
.search input{flex:1 1 12rem}
ul.list{list-style:none;margin:0;padding:0}
ul.list li{border-bottom:1px solid #e3e7ec}
ul.list a{display:grid;grid-template-columns:14rem 1fr auto;gap:.8rem;padding:.55rem .4rem;color:inherit;text-decoration:none}
ul.list a:hover{background:#f0f4f8}
ul.list .unread{font-weight:700}
ul.list .from,ul.list .subject{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
ul.list .date{color:#5b6772;white-space:nowrap}
.pager{display:flex;justify-content:space-between;margin-top:.8rem}
.actions{display:flex;flex-wrap:wrap;gap:.5rem;margin:.8rem 0}
.meta{color:#3c4650;margin:0 0 .8rem;overflow-wrap:anywhere}
.meta div{margin:.1rem 0}
h1{font-size:1.3rem;margin:.2rem 0 .6rem;overflow-wrap:anywhere}
.body{overflow-x:auto;overflow-wrap:anywhere;border-top:1px solid #e3e7ec;padding-top:1rem}
.body img{max-width:100%;height:auto}
pre.text{white-space:pre-wrap;font:inherit;margin:0}
ul.attachments{padding-left:1.2rem}
.empty{color:#5b6772;padding:1rem .4rem}
@media (max-width:600px){
 .wrap{flex-direction:column;padding:.6rem;gap:.6rem}
 nav.folders{flex:none;display:flex;flex-wrap:wrap;gap:.3rem}
 ul.list a{grid-template-columns:1fr auto;grid-template-areas:"from date" "subject subject";gap:.1rem .6rem}
 ul.list .from{grid-area:from}
 ul.list .subject{grid-area:subject}
 ul.list .date{grid-area:date}
}
`);

export interface Folder {
  path: string;
  name: string;
  unseen?: number;
}

export interface Chrome {
  address: string;
  csrf: string;
  folders?: Folder[];
  current?: string;
}

export const folderHref = (path: string) => `/folder/${encodeURIComponent(path)}`;

function folderNav(chrome: Chrome): Html {
  if (!chrome.folders) return html``;
  return html`<nav class="folders" aria-label="Folders">${chrome.folders.map(
    (f) =>
      html`<a href="${folderHref(f.path)}" class="${f.path === chrome.current ? 'here' : ''}"><span>${f.name}</span>${
        f.unseen ? html`<span class="count" title="${f.unseen} unread">${f.unseen}</span>` : ''
      }</a>`,
  )}</nav>`;
}

function topBar(chrome: Chrome): Html {
  return html`<header>
<div class="who">${chrome.address}<small>Temporary mailbox while your company's mail server is down</small></div>
<a class="button" href="/compose">Write</a>
<a href="/export.mbox">Download all mail</a>
<form class="inline" method="post" action="/signout"><input type="hidden" name="_csrf" value="${chrome.csrf}"><button class="link" type="submit">Sign out</button></form>
</header>`;
}

export function page(title: string, content: Html, chrome?: Chrome): Html {
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${title}</title><style>${CSS}</style></head>
<body>${chrome ? topBar(chrome) : ''}
<div class="wrap">${chrome ? folderNav(chrome) : ''}<main>${content}</main></div>
</body></html>`;
}

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { simpleParser } from 'mailparser';
import { withMailbox } from '../src/mailbox/imap';
import { issueSignInLink } from '../src/mailbox/sign-in';
import { mboxrdEntry } from '../src/webmail/mbox';
import { contentDisposition } from '../src/webmail/reading';
import { sanitizeMailHtml } from '../src/webmail/sanitize';
import { ABSOLUTE_MS, IDLE_MS, SessionStore } from '../src/webmail/session';
import { csrfIn, type Sample, startWebmailWorld, WebClient, type WebmailWorld } from './helpers/webmail';
import { banner, evacuationPdf, FLOOD_MAP_URL, floodedOfficeMail } from './helpers/webmail-samples';

// The web inbox over real HTTP, reading a real Dovecot through IMAP, signing in against the stack's PostgreSQL.

let world: WebmailWorld;
let user: { address: string; password: string };
let samples: Sample[];
/** UIDs in INBOX by subject, read through IMAP as our services see them. */
const uids = new Map<string, number>();

before(async () => {
  world = await startWebmailWorld();
  user = await world.mailbox();
  samples = await floodedOfficeMail(user.address);
  for (const s of samples) await world.deliver(user.address, s.raw);
  await withMailbox(world.config, user.address, async (imap) => {
    const lock = await imap.getMailboxLock('INBOX');
    try {
      for await (const m of imap.fetch('1:*', { envelope: true, uid: true }))
        uids.set(m.envelope!.subject!, m.uid);
    } finally {
      lock.release();
    }
  });
});
after(() => world?.stop());

const uidOf = (subject: string) => uids.get(subject)!;
const flood = () => samples.find((s) => s.subject.startsWith('Ground floor'))!;

async function signedIn(who = user): Promise<WebClient> {
  const client = new WebClient(world.url);
  const res = await client.signIn(who.address, who.password);
  assert.equal(res.status, 303, await res.text());
  return client;
}

async function imapFlags(subject: string): Promise<Set<string>> {
  return withMailbox(world.config, user.address, async (imap) => {
    const lock = await imap.getMailboxLock('INBOX');
    try {
      const m = await imap.fetchOne(String(uidOf(subject)), { flags: true }, { uid: true });
      return m ? (m.flags ?? new Set()) : new Set();
    } finally {
      lock.release();
    }
  });
}

describe('signing in', () => {
  test('a password signs in; a wrong one is refused with what to do; the cookie is HttpOnly, SameSite=Lax', async () => {
    const client = new WebClient(world.url);
    const wrong = await client.signIn(user.address, `${user.password}x`);
    assert.equal(wrong.status, 401);
    assert.match(await wrong.text(), /ask your IT contact for a new sign-in link/i);
    const res = await client.signIn(user.address, user.password);
    assert.equal(res.status, 303);
    assert.equal(res.headers.get('location'), '/');
    const cookie = res.headers.getSetCookie().join('\n');
    assert.match(cookie, /HttpOnly/i);
    assert.match(cookie, /SameSite=Lax/i);
    assert.doesNotMatch(cookie, /Secure/i, 'plain http on loopback: the URL is not https');
    const inbox = await client.get('/folder/INBOX');
    assert.equal(inbox.status, 200);
    assert.match(await inbox.text(), /Ground floor flooded/);
  });

  test('five wrong passwords lock the web sign-in, even with the right one afterwards', async () => {
    const victim = await world.mailbox();
    const client = new WebClient(world.url);
    for (let i = 0; i < 5; i++) assert.equal((await client.signIn(victim.address, 'guess')).status, 401);
    const locked = await client.signIn(victim.address, victim.password);
    assert.equal(locked.status, 429);
    assert.match(await locked.text(), /locked for 15 minutes/);
  });

  test('a one-time link signs in once, through its button; a second use is refused', async () => {
    const token = await issueSignInLink(world.sql, user.address);
    const first = new WebClient(world.url);
    // Opening the link (what a chat app's preview does) spends nothing.
    const landing = await first.get(`/link/${token}`);
    assert.equal(landing.status, 200);
    const again = await new WebClient(world.url).get(`/link/${token}`);
    assert.equal(again.status, 200);
    const res = await first.post('/link', { _csrf: csrfIn(await landing.text()), token });
    assert.equal(res.status, 303);
    assert.equal((await first.get('/folder/INBOX')).status, 200);

    const second = new WebClient(world.url);
    const page = await second.get(`/link/${token}`);
    const refused = await second.post('/link', { _csrf: csrfIn(await page.text()), token });
    assert.equal(refused.status, 403);
    assert.match(await refused.text(), /ask your IT contact for a new sign-in link/);
  });

  test('signing in replaces the session id; signing out ends it', async () => {
    const client = new WebClient(world.url);
    await client.get('/signin');
    const before = [...client.cookies.values()][0];
    await client.signIn(user.address, user.password);
    const after = [...client.cookies.values()][0];
    assert.notEqual(after, before, 'a new id at sign-in');
    const csrf = await client.csrf('/folder/INBOX');
    assert.equal((await client.post('/signout', { _csrf: csrf })).status, 303);
    const stale = new WebClient(world.url);
    stale.cookies.set('mxf_webmail', after!);
    const res = await stale.get('/folder/INBOX');
    assert.equal(res.status, 303);
    assert.equal(res.headers.get('location'), '/signin');
  });
});

describe('forms', () => {
  test('a POST without the session CSRF token, or with another one, is refused with 403', async () => {
    const client = await signedIn();
    const other = await signedIn();
    const path = `/folder/INBOX/${uidOf(flood().subject)}/unread`;
    assert.equal((await client.post(path, {})).status, 403);
    assert.equal((await client.post(path, { _csrf: await other.csrf('/folder/INBOX') })).status, 403);
    assert.equal((await client.post(path, { _csrf: await client.csrf('/folder/INBOX') })).status, 303);
    // A form with files is checked the same way.
    const upload = new FormData();
    upload.set('to', 'someone@elsewhere.example');
    upload.set('attachments', new Blob(['x']), 'x.txt');
    assert.equal((await client.postForm('/compose', upload)).status, 403);
    // Before sign-in too: nobody can sign a victim's browser in to their own mailbox.
    const anon = new WebClient(world.url);
    const res = await anon.post('/signin', { address: user.address, password: user.password });
    assert.equal(res.status, 403);
    // And before sign-in nobody can upload anything: there is no parser for files there.
    const form = new FormData();
    form.set('_csrf', await anon.csrf());
    form.set('big', new Blob([Buffer.alloc(1024 * 1024)]), 'big.bin');
    assert.equal((await anon.postForm('/signin', form)).status, 400);
    assert.equal((await new WebClient(world.url).postForm('/compose', form)).status, 401);
  });

  test('every page carries the security headers; the policy allows no script and only our images', async () => {
    const client = await signedIn();
    const anonymous = new WebClient(world.url);
    for (const path of ['/signin', '/folder/INBOX', `/folder/INBOX/${uidOf(flood().subject)}`]) {
      const res = await (path === '/signin' ? anonymous : client).get(path);
      assert.equal(res.status, 200, path);
      assert.match(res.headers.get('content-type') ?? '', /^text\/html; charset=utf-8/);
      const csp = res.headers.get('content-security-policy') ?? '';
      assert.match(csp, /default-src 'none'/, path);
      assert.match(csp, /img-src 'self'(;|$)/, path);
      assert.match(csp, /frame-ancestors 'none'/, path);
      assert.doesNotMatch(csp, /script-src/, path);
      assert.equal(res.headers.get('x-frame-options'), 'DENY');
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(res.headers.get('referrer-policy'), 'no-referrer');
    }
  });
});

describe('reading', () => {
  test('folders from LIST; the inbox newest first, unread in bold; search by from, subject and body', async () => {
    const client = await signedIn();
    const page = await (await client.get('/folder/INBOX')).text();
    for (const folder of ['Inbox', 'Sent', 'Junk']) assert.match(page, new RegExp(`<span>${folder}</span>`));
    const order = samples.map((s) => page.indexOf(s.subject.replace(/&/g, '&amp;')));
    assert.ok(
      order.every((i) => i > 0),
      'every message listed',
    );
    assert.deepEqual(
      [...order].sort((a, b) => b - a),
      order,
      'newest first',
    );
    assert.match(page, /class="unread">\s*<span class="from">IT Service Desk/);

    const search = async (q: string, field: string) =>
      (await client.get(`/folder/INBOX?q=${encodeURIComponent(q)}&in=${field}`)).text();
    const bySubject = await search('Rotterdam', 'subject');
    assert.match(bySubject, /Q3 shipment/);
    assert.doesNotMatch(bySubject, /Ground floor flooded/);
    assert.match(await search('northgate', 'from'), /Claim HL-2026-0412/);
    const byBody = await search('Felixstowe', 'body');
    assert.match(byBody, /Q3 shipment/);
    assert.match(byBody, /\(1 found\)/);
    assert.match(await search('Felixstowe', 'all'), /Q3 shipment/);
    assert.match(await search('no such words anywhere', 'all'), /Nothing in Inbox matches/);
  });

  test('pages of 25, newest first', async () => {
    const busy = await world.mailbox();
    for (let i = 1; i <= 30; i++)
      await world.deliver(
        busy.address,
        Buffer.from(`Subject: Pump status report ${i}\r\n\r\nLevel ${i} cm.\r\n`),
      );
    const client = await signedIn(busy);
    const first = await (await client.get('/folder/INBOX')).text();
    assert.equal(first.match(/Pump status report \d+/g)?.length, 25);
    assert.match(first, /Pump status report 30<\/span>/);
    assert.doesNotMatch(first, /Pump status report 5<\/span>/);
    assert.match(first, /Page 1 of 2/);
    const second = await (await client.get('/folder/INBOX?page=2')).text();
    assert.deepEqual(
      second.match(/Pump status report \d+/g),
      [5, 4, 3, 2, 1].map((n) => `Pump status report ${n}`),
    );
  });

  test('an HTML message: sanitized, its remote image blocked until asked, its cid: image served; opening marks it \\Seen', async () => {
    const client = await signedIn();
    const uid = uidOf(flood().subject);
    await client.post(`/folder/INBOX/${uid}/unread`, { _csrf: await client.csrf('/folder/INBOX') });
    assert.ok(!(await imapFlags(flood().subject)).has('\\Seen'));
    const res = await client.get(`/folder/INBOX/${uid}`);
    const page = await res.text();
    assert.match(page, /40&nbsp;cm of water|40\u00a0cm of water/);
    assert.ok(!page.includes(FLOOD_MAP_URL), 'the remote address is not in the page');
    assert.match(page, /Show remote images/);
    assert.doesNotMatch(page, /<script|onclick|track\(/i);
    assert.match(res.headers.get('content-security-policy') ?? '', /img-src 'self';/);
    assert.ok((await imapFlags(flood().subject)).has('\\Seen'), 'opening it marked it read, in IMAP');

    const cid = /src="(\/folder\/INBOX\/\d+\/cid\/[^"]+)"/.exec(page)?.[1];
    assert.ok(cid, 'the inline banner points at us');
    const image = await client.get(cid);
    assert.equal(image.headers.get('content-type'), 'image/png');
    assert.ok(Buffer.from(await image.arrayBuffer()).equals(banner));

    const shown = await client.get(`/folder/INBOX/${uid}?images=1`);
    assert.ok((await shown.text()).includes(`src="${FLOOD_MAP_URL}"`));
    assert.match(shown.headers.get('content-security-policy') ?? '', /img-src 'self' https:/);

    await client.post(`/folder/INBOX/${uid}/unread`, { _csrf: await client.csrf('/folder/INBOX') });
    assert.ok(!(await imapFlags(flood().subject)).has('\\Seen'), 'Mark unread cleared \\Seen in IMAP');
  });

  test('an attachment downloads byte for byte, as an attachment of its own type', async () => {
    const client = await signedIn();
    const page = await (await client.get(`/folder/INBOX/${uidOf(flood().subject)}`)).text();
    const href = /href="([^"]+\/attachment\/\d+)"[^>]*>evacuation-and-reentry-plan\.pdf/.exec(page)?.[1];
    assert.ok(href, 'the PDF is listed');
    assert.doesNotMatch(page, />banner\.png</, 'the inline image is not listed as an attachment');
    const res = await client.get(href);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/pdf');
    assert.match(
      res.headers.get('content-disposition') ?? '',
      /^attachment; filename="evacuation-and-reentry-plan\.pdf"/,
    );
    assert.ok(Buffer.from(await res.arrayBuffer()).equals(evacuationPdf));
  });

  test('.eml is the IMAP source byte for byte', async () => {
    const client = await signedIn();
    for (const s of samples) {
      const uid = uidOf(s.subject);
      const res = await client.get(`/folder/INBOX/${uid}/eml`);
      assert.equal(res.headers.get('content-type'), 'message/rfc822');
      assert.match(res.headers.get('content-disposition') ?? '', /^attachment; /);
      const source = await withMailbox(world.config, user.address, async (imap) => {
        const lock = await imap.getMailboxLock('INBOX');
        try {
          return ((await imap.fetchOne(String(uid), { source: true }, { uid: true })) || undefined)?.source;
        } finally {
          lock.release();
        }
      });
      assert.ok(source && Buffer.from(await res.arrayBuffer()).equals(source), s.subject);
    }
  });
});

describe('writing', () => {
  test('a reply: From is the mailbox whatever the form says, In-Reply-To and References set, the attachment carried', async () => {
    const client = await signedIn();
    const original = samples.find((s) => s.subject.startsWith('Q3 shipment'))!;
    const formPage = await (
      await client.get(`/compose?mode=reply&folder=INBOX&uid=${uidOf(original.subject)}`)
    ).text();
    assert.match(
      formPage,
      /value="&quot;Jonas de Vries&quot; &lt;jonas\.devries@vandermolen-logistics\.example&gt;"/,
    );
    assert.match(formPage, /value="Re: Q3 shipment/);
    const field = (name: string) => new RegExp(`name="${name}" value="([^"]*)"`).exec(formPage)?.[1] ?? '';
    const fromHtml = (s: string) =>
      s
        .replace(/&lt;/g, '<')
        .replace(/&gt;/g, '>')
        .replace(/&quot;/g, '"');
    const photo = Buffer.from('seal numbers confirmed: HL-88213, HL-88214\n');
    const form = new FormData();
    form.set('_csrf', csrfIn(formPage));
    form.set('inReplyTo', fromHtml(field('inReplyTo')));
    form.set('references', fromHtml(field('references')));
    form.set('from', 'ceo@harbourline.example');
    form.set('to', fromHtml(field('to')));
    form.set('cc', '');
    form.set('bcc', 'records@harbourline.example');
    form.set('subject', 'Re: Q3 shipment to Rotterdam: revised ETA and manifest');
    form.set('text', 'Seal numbers confirmed, see attached.');
    form.set('attachments', new Blob([photo], { type: 'text/plain' }), 'seals.txt');
    const before = world.submitted.length;
    const res = await client.postForm('/compose', form);
    assert.equal(res.status, 303, await res.text());
    assert.equal(res.headers.get('location'), '/folder/INBOX?notice=sent');

    const sent = world.submitted[before]!;
    assert.equal(sent.mailbox, user.address);
    assert.equal(sent.envelopeFrom, user.address);
    assert.deepEqual(sent.recipients.sort(), [
      'jonas.devries@vandermolen-logistics.example',
      'records@harbourline.example',
    ]);
    const parsed = await simpleParser(sent.raw);
    assert.equal(parsed.from?.value[0]?.address, user.address);
    assert.equal(
      parsed.to && !Array.isArray(parsed.to) ? parsed.to.value[0]?.address : '',
      'jonas.devries@vandermolen-logistics.example',
    );
    assert.equal(parsed.inReplyTo, original.messageId);
    assert.deepEqual([parsed.references ?? []].flat(), [original.messageId]);
    assert.equal(parsed.headers.get('bcc'), undefined, 'Bcc is not in the message');
    assert.equal(parsed.attachments[0]?.filename, 'seals.txt');
    assert.ok(parsed.attachments[0]?.content.equals(photo));
  });

  test('reply all leaves us out; forward carries the original attachments; a refusal keeps the text and says why', async () => {
    const client = await signedIn();
    const original = samples.find((s) => s.subject.startsWith('Q3 shipment'))!;
    const all = await (
      await client.get(`/compose?mode=all&folder=INBOX&uid=${uidOf(original.subject)}`)
    ).text();
    assert.match(all, /name="cc" value="planning@harbourline\.example"/);
    assert.ok(!all.includes(`value="${user.address}"`));

    const fwd = await (
      await client.get(`/compose?mode=forward&folder=INBOX&uid=${uidOf(flood().subject)}`)
    ).text();
    assert.match(fwd, /evacuation-and-reentry-plan\.pdf/);
    const form = new FormData();
    for (const [k, v] of [
      ['_csrf', csrfIn(fwd)],
      ['forwardFolder', 'INBOX'],
      ['forwardUid', String(uidOf(flood().subject))],
      ['to', 'home.account@personal.example'],
      ['subject', 'Fwd: Ground floor flooded'],
      ['text', 'For the family group.'],
    ] as const)
      form.set(k, v);
    const before = world.submitted.length;
    assert.equal((await client.postForm('/compose', form)).status, 303);
    const parsed = await simpleParser(world.submitted[before]!.raw);
    const pdf = parsed.attachments.find((a) => a.filename === 'evacuation-and-reentry-plan.pdf');
    assert.ok(pdf?.content.equals(evacuationPdf), 'the original PDF went along');

    world.refuseNext.message = 'the address home.account@personal.example refuses mail from us';
    const refused = await client.postForm('/compose', form);
    assert.equal(refused.status, 422);
    const page = await refused.text();
    assert.match(page, /Your message was not sent: the address home\.account@personal\.example refuses mail/);
    assert.match(page, /For the family group\./);

    const bad = new FormData();
    bad.set('_csrf', csrfIn(fwd));
    bad.set('to', 'not an address');
    bad.set('text', 'x');
    const badRes = await client.postForm('/compose', bad);
    assert.equal(badRes.status, 422);
    assert.match(await badRes.text(), /These are not email addresses: not an address/);
  });
});

describe('export', () => {
  test('the mbox holds every message of every folder, mboxrd-quoted, and undoes to the IMAP source', async () => {
    const sentCopy = Buffer.from(
      `From: ${user.address}\r\nTo: jonas.devries@vandermolen-logistics.example\r\nSubject: Seal numbers\r\nMessage-ID: <sent-1@harbourline.example>\r\n\r\nFrom the depot: both seals checked.\r\n`,
    );
    await withMailbox(world.config, user.address, (imap) => imap.append('Sent', sentCopy, ['\\Seen']));
    const client = await signedIn();
    const res = await client.get('/export.mbox');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/mbox');
    assert.match(res.headers.get('content-disposition') ?? '', /^attachment; filename=".+\.mbox"/);
    const mbox = Buffer.from(await res.arrayBuffer()).toString('latin1');
    const entries = mbox.split(/^(?=From \S+ \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}$)/m).filter(Boolean);
    assert.equal(entries.length, samples.length + 1);
    const unquote = (entry: string) =>
      entry
        .replace(/^From .*\n/, '')
        .replace(/^X-Folder: .*\n/, '')
        .replace(/^>(>*From )/gm, '$1')
        .replace(/\n\n$/, '\n');
    const bodies = entries.map(unquote);
    for (const s of samples) {
      const lf = `Return-Path: <sender@elsewhere.example>\n${s.raw.toString('latin1').replace(/\r\n/g, '\n')}`;
      assert.ok(bodies.includes(lf.endsWith('\n') ? lf : `${lf}\n`), `${s.subject} in the mbox`);
    }
    assert.ok(bodies.includes(sentCopy.toString('latin1').replace(/\r\n/g, '\n')), 'the Sent copy too');
    assert.match(mbox, /^>From your phone/m, 'a body line starting with "From " is quoted');
    assert.match(mbox, /^X-Folder: Sent$/m);
    assert.match(mbox, /^From sender@elsewhere\.example /m, 'separators carry the envelope sender');
  });
});

describe('closing', () => {
  test('a mailbox closed while someone is signed in signs them out, and refuses sign-in', async () => {
    const closing = await world.mailbox();
    const client = await signedIn(closing);
    assert.equal((await client.get('/folder/INBOX')).status, 200);
    await world.sql`update mailbox set sign_in_allowed = false where address = ${closing.address}`;
    const res = await client.get('/folder/INBOX');
    assert.equal(res.status, 403);
    assert.match(await res.text(), /temporary mailbox is closed/);
    const after = await client.get('/folder/INBOX');
    assert.equal(after.status, 303, 'the session is gone');
    assert.equal((await new WebClient(world.url).signIn(closing.address, closing.password)).status, 403);
  });
});

describe('pieces', () => {
  test('sessions expire after 30 idle minutes and after 12 hours whatever happens', () => {
    let now = 0;
    const store = new SessionStore(() => now);
    const idle = store.create('a@x.example');
    now += IDLE_MS + 1;
    assert.equal(store.get(idle.id), undefined);
    const busy = store.create('a@x.example');
    while (now < ABSOLUTE_MS) {
      now += IDLE_MS - 1;
      if (now - busy.createdAt <= ABSOLUTE_MS) assert.ok(store.get(busy.id));
    }
    now = busy.createdAt + ABSOLUTE_MS + 1;
    assert.equal(store.get(busy.id), undefined);
  });

  test('mboxrd quotes "From " lines, already quoted ones again, and leaves others alone', () => {
    const source = Buffer.from('Subject: x\r\n\r\nFrom here\r\n>From there\r\nFromage\r\n');
    const out = mboxrdEntry({ source, date: new Date(Date.UTC(2026, 10, 9, 14, 2, 11)), folder: 'INBOX' });
    assert.equal(
      out.toString(),
      'From MAILER-DAEMON Mon Nov  9 14:02:11 2026\nX-Folder: INBOX\nSubject: x\n\n>From here\n>>From there\nFromage\n\n',
    );
  });

  test('sanitizer: no script, handler, javascript: link, <style>, or style that fetches', () => {
    const { html, blockedImages } = sanitizeMailHtml(
      '<style>body{display:none}</style><p style="color:red;background-image:url(https://t.example/p.gif);position:fixed">hi</p><img src="//t.example/x.gif"><img src="data:image/png;base64,AAAA"><a href="javascript:x()" onmouseover="y()">l</a><iframe src="https://x.example"></iframe><form action="https://x.example"><input name="p"></form>',
      { remoteImages: false, cidUrl: (c) => `/cid/${c}` },
    );
    assert.doesNotMatch(html, /style>|url\(|position|javascript|onmouseover|iframe|<form|<input|t\.example/);
    assert.match(html, /style="color:red"/);
    assert.equal(blockedImages, 2);
    const mailto = sanitizeMailHtml('<a href="mailto:claims@northgate-mutual.example?subject=x">write</a>', {
      remoteImages: false,
      cidUrl: (c) => c,
    });
    assert.match(
      mailto.html,
      /href="\/compose\?to=claims%40northgate-mutual\.example"/,
      'mailto: writes from here',
    );
    const cid = sanitizeMailHtml('<img src="cid:logo%40harbourline">', {
      remoteImages: false,
      cidUrl: (c) => `/cid/${c}`,
    });
    assert.match(cid.html, /src="\/cid\/logo@harbourline"/, 'a cid: URL is percent-decoded (RFC 2392)');
  });

  test('downloads name their file for old and new browsers, whatever characters it has', () => {
    assert.equal(
      contentDisposition('Schaden (Fotos) "Erdgeschoss".pdf'),
      `attachment; filename="Schaden (Fotos) _Erdgeschoss_.pdf"; filename*=UTF-8''Schaden%20%28Fotos%29%20%22Erdgeschoss%22.pdf`,
    );
    assert.match(
      contentDisposition('plan-étage.pdf'),
      /filename="plan-_tage\.pdf"; filename\*=UTF-8''plan-%C3%A9tage\.pdf$/,
    );
  });
});

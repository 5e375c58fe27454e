import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { simpleParser } from 'mailparser';
import type { Browser, BrowserContext, Download, Page } from 'playwright-core';
import { downloadsDir, launchChromium } from './helpers/browser';
import { type MailboxWorld, startMailboxWorld } from './helpers/mailbox-world';
import { testTmp } from './helpers/stack';
import { evacuationPdf, FLOOD_MAP_URL, floodedOfficeMail } from './helpers/webmail-samples';

// The web inbox in a real browser, as someone whose office is under water uses it: a one-time link from an SMS on
// a phone, then a laptop: open the facilities notice, save its PDF, reply to a customer with a file attached,
// find the reply in Sent and at the receiver it was sent to, and take the whole mailbox home as an mbox file. The
// two screenshots in docs/ come from
// this test.

// The committed screenshots are rewritten only on request (UPDATE_SCREENSHOTS=1 npm test -- this file): their
// clock times change every run, and a test run should not leave the working tree changed.
const SHOTS = process.env.UPDATE_SCREENSHOTS === '1' ? join(__dirname, '..', 'docs') : testTmp();
const PHONE = { viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true };
const DESKTOP = { viewport: { width: 1280, height: 860 }, deviceScaleFactor: 1 };

/**
 * Everything the browser walks through, as production runs it (test/helpers/mailbox-world.ts): held mail filled
 * into Maria's temporary mailbox by the mailboxes instruction, her sign-in link handed out through the ops API, the
 * web inbox and submission relay in the mailbox service's own process, and her reply leaving through our outbound
 * path to a local SMTP receiver.
 */
type BrowserWorld = MailboxWorld;

const setUpWorld = () => startMailboxWorld('maria.okafor', 'harbourline.example', floodedOfficeMail);

let world: BrowserWorld;
let browser: Browser;
let downloads: ReturnType<typeof downloadsDir>;

before(async () => {
  world = await setUpWorld();
  browser = await launchChromium();
  downloads = downloadsDir();
});
after(async () => {
  await laptop?.close().catch(() => {});
  await browser?.close();
  downloads?.remove();
  await world?.stop();
});

async function download(page: Page, click: () => Promise<void>): Promise<{ file: Download; bytes: Buffer }> {
  const [file] = await Promise.all([page.waitForEvent('download'), click()]);
  const path = join(downloads.dir, file.suggestedFilename());
  await file.saveAs(path);
  return { file, bytes: readFileSync(path) };
}

const folder = (page: Page, name: string) => page.locator('nav.folders a', { hasText: name });

const subjectOf = (prefix: string) => world.samples.find((s) => s.subject.startsWith(prefix))!;

let laptop: BrowserContext;
let page: Page;

test('on a phone: the one-time link opens the inbox, newest first, with no sideways scrolling', async () => {
  const phone = await browser.newContext({ ...PHONE, acceptDownloads: true });
  const mobile = await phone.newPage();
  await mobile.goto(await world.signInLink());
  await mobile.getByRole('button', { name: 'Open my mailbox' }).click();
  await mobile.waitForURL(/\/folder\/INBOX$/);
  for (const s of world.samples) await mobile.getByText(s.subject).waitFor();
  const rows = await mobile.locator('ul.list .subject').allTextContents();
  assert.deepEqual(
    rows,
    [...world.samples].reverse().map((s) => s.subject),
    'newest first',
  );
  const width = await mobile.evaluate<number>('document.documentElement.scrollWidth');
  assert.ok(width <= PHONE.viewport.width, `no sideways scrolling on a phone (page is ${width}px wide)`);
  await mobile.screenshot({ path: join(SHOTS, 'webmail-inbox.png') });
  // Later on a laptop, still signed in: the same browser session, carried over.
  laptop = await browser.newContext({
    ...DESKTOP,
    acceptDownloads: true,
    storageState: await phone.storageState(),
  });
  await phone.close();
  page = await laptop.newPage();
});

test('on a laptop: the flood notice, its remote image blocked, its PDF saved byte for byte', async () => {
  await page.goto(`${world.url}/`);
  await page.getByText(subjectOf('Ground floor').subject).click();
  await page.getByRole('heading', { name: 'The Quay Street office is closed' }).waitFor();
  await page.getByText('Remote images in this message are not shown').waitFor();
  assert.equal(await page.locator(`img[src="${FLOOD_MAP_URL}"]`).count(), 0, 'the remote image is blocked');
  // The inline image is a second request: wait for it to load (or fail) before measuring it.
  const bannerWidth = await page
    .locator('.body img')
    .first()
    .evaluate(
      (img) =>
        new Promise<number>((resolve) => {
          const image = img as unknown as {
            complete: boolean;
            naturalWidth: number;
            addEventListener(type: string, fn: () => void): void;
          };
          if (image.complete) return resolve(image.naturalWidth);
          image.addEventListener('load', () => resolve(image.naturalWidth));
          image.addEventListener('error', () => resolve(0));
        }),
    );
  assert.equal(bannerWidth, 480, 'the inline (cid:) banner is shown');
  await page.screenshot({ path: join(SHOTS, 'webmail-message.png'), fullPage: true });

  const pdf = await download(page, () =>
    page.getByRole('link', { name: 'evacuation-and-reentry-plan.pdf' }).click(),
  );
  assert.equal(pdf.file.suggestedFilename(), 'evacuation-and-reentry-plan.pdf');
  assert.ok(pdf.bytes.equals(evacuationPdf), 'the attachment arrives byte for byte');
});

test('a reply with a file: from the mailbox, threaded, quoting the original, and in Sent', async () => {
  await folder(page, 'Inbox').click();
  const shipment = subjectOf('Q3 shipment');
  await page.getByText(shipment.subject).click();
  await page.getByRole('link', { name: 'Reply', exact: true }).click();
  await page.locator('#text').press('Control+Home');
  await page
    .locator('#text')
    .pressSequentially('Seals HL-88213 and HL-88214 confirmed; our depot log is attached.');
  const log = Buffer.from('2026-11-28 07:10 MSKU 481220-7 seal HL-88213 intact\n');
  await page
    .locator('#attachments')
    .setInputFiles({ name: 'depot-log.txt', mimeType: 'text/plain', buffer: log });
  await page.getByRole('button', { name: 'Send' }).click();
  await page.getByText('Your message is on its way').waitFor();

  const reply = await world.sentReply(`Re: ${shipment.subject}`);
  assert.deepEqual(reply.recipients, ['jonas.devries@vandermolen-logistics.example']);
  const parsed = await simpleParser(reply.raw);
  assert.equal(parsed.from?.value[0]?.address, world.address);
  assert.equal(parsed.inReplyTo, shipment.messageId);
  assert.match(parsed.text ?? '', /^Seals HL-88213 and HL-88214 confirmed/);
  assert.match(parsed.text ?? '', /> The vessel is held at Felixstowe/);
  assert.ok(parsed.attachments.find((a) => a.filename === 'depot-log.txt')?.content.equals(log));

  await folder(page, 'Sent').click();
  await page.getByText(`Re: ${shipment.subject}`).click();
  await page.getByText('Seals HL-88213 and HL-88214 confirmed').waitFor();
});

test('the whole mailbox, every folder, as one mbox file', async () => {
  const mbox = await download(page, () => page.getByRole('link', { name: 'Download all mail' }).click());
  assert.match(mbox.file.suggestedFilename(), /^maria\.okafor@harbourline\.example-\d{4}-\d\d-\d\d\.mbox$/);
  const text = mbox.bytes.toString('latin1');
  for (const s of world.samples) assert.ok(text.includes(`Message-ID: ${s.messageId}`), s.subject);
  assert.ok(text.includes(`In-Reply-To: ${subjectOf('Q3 shipment').messageId}`), 'the reply, from Sent');
  await laptop.close();
});

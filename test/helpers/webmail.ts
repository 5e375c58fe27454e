import { randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateSync } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import nodemailer from 'nodemailer';
import MailComposer from 'nodemailer/lib/mail-composer';
import { generate } from 'selfsigned';
import type { Config } from '../../src/config';
import { createLogger } from '../../src/log';
import { withMailbox } from '../../src/mailbox/imap';
import { hashMailboxPassword, newMailboxPassword } from '../../src/mailbox/password';
import { startDovecot } from '../../src/stack/dovecot';
import type { ManagedProcess } from '../../src/stack/process';
import { createSql, type Sql } from '../../src/store/db';
import { buildWebmail, type WebmailDeps } from '../../src/webmail/app';
import { freePort } from './ports';
import { testConfig, testTmp } from './stack';

// The web inbox's world for its tests: a Dovecot of the test's own (with the master user our services sign in
// with), the stack's PostgreSQL, mail put in over LMTP as the mailbox filler does, and the web inbox listening on
// a free port. `submit` records what the web inbox hands over; the real submission path is tested on its own.

export type Submitted = Parameters<WebmailDeps['submit']>[1] & { mailbox: string };

export interface WebmailWorld {
  config: Config;
  sql: Sql;
  url: string;
  app: FastifyInstance;
  submitted: Submitted[];
  /** What the next submit throws, once (a refusal the form has to show). */
  refuseNext: { message?: string };
  /** A new mailbox; `localPart` for a readable address in screenshots (unique per run, the database is new). */
  mailbox(localPart?: string): Promise<{ address: string; password: string }>;
  deliver(address: string, raw: Buffer, envelopeFrom?: string): Promise<void>;
  stop(): Promise<void>;
}

async function startTestDovecot(): Promise<{ dovecot: ManagedProcess; env: Record<string, string> }> {
  const ports = { imap: await freePort(), lmtp: await freePort() };
  const dir = join(testTmp(), `webmail-dovecot-${randomUUID()}`);
  const pair = await generate([{ name: 'commonName', value: 'imap.failover.test' }], { keySize: 2048 });
  const tls = { cert: `${dir}-cert.pem`, key: `${dir}-key.pem` };
  writeFileSync(tls.cert, pair.cert);
  writeFileSync(tls.key, pair.private, { mode: 0o600 });
  const masterSecret = randomBytes(24).toString('hex');
  const dovecot = await startDovecot({
    dir,
    ports,
    masterSecret,
    databaseUrl: testConfig().database.url,
    tls,
    logFile: `${dir}.log`,
  });
  const env = {
    MXF_IMAP_PORT: String(ports.imap),
    MXF_LMTP_PORT: String(ports.lmtp),
    MXF_DOVECOT_MASTER_SECRET: masterSecret,
  };
  return { dovecot, env };
}

export interface WorldOptions {
  /** File each submitted message in the sender's Sent folder over IMAP, as the real submit does. */
  fileInSent?: boolean;
}

export async function startWebmailWorld(opts: WorldOptions = {}): Promise<WebmailWorld> {
  const { dovecot, env } = await startTestDovecot();
  const webPort = await freePort();
  const config = testConfig({ ...env, MXF_WEBMAIL_PORT: String(webPort) });
  const sql = createSql(config);
  const submitted: Submitted[] = [];
  const refuseNext: { message?: string } = {};
  const submit: WebmailDeps['submit'] = async (mailbox, message) => {
    if (refuseNext.message) {
      const message = refuseNext.message;
      refuseNext.message = undefined;
      throw new Error(message);
    }
    submitted.push({ mailbox, ...message });
    if (opts.fileInSent)
      await withMailbox(config, mailbox, (imap) => imap.append('Sent', message.raw, ['\\Seen']));
    return { messageId: `<${randomUUID()}@test>` };
  };
  const app = await buildWebmail({ config, sql, log: createLogger(config, 'webmail'), submit });
  await app.listen({ host: '127.0.0.1', port: webPort });
  const lmtp = nodemailer.createTransport({
    lmtp: true,
    host: '127.0.0.1',
    port: config.mailbox.lmtpPort,
    name: 'mx.failover.test',
    tls: { rejectUnauthorized: false },
  });
  return {
    config,
    sql,
    app,
    url: `http://127.0.0.1:${webPort}`,
    submitted,
    refuseNext,
    async mailbox(localPart = `staff-${randomUUID().slice(0, 8)}`) {
      const address = `${localPart}@harbourline.example`;
      const password = newMailboxPassword();
      await sql`insert into mailbox (address, customer_id, password_hash)
                values (${address}, 'harbourline', ${hashMailboxPassword(password)})`;
      return { address, password };
    },
    async deliver(address, raw, envelopeFrom = 'sender@elsewhere.example') {
      await lmtp.sendMail({ envelope: { from: envelopeFrom, to: [address] }, raw });
    },
    async stop() {
      await app.close();
      lmtp.close();
      await dovecot.stop();
      await sql.end();
    },
  };
}

/** A browser without a browser: fetch with a cookie jar, redirects left to the caller. */
export class WebClient {
  readonly cookies = new Map<string, string>();
  constructor(readonly base: string) {}

  async request(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.cookies.size) headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    const res = await fetch(this.base + path, { ...init, headers, redirect: 'manual' });
    for (const line of res.headers.getSetCookie()) {
      const [pair = '', ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => /^\s*expires=/i.test(a) && Date.parse(a.split('=')[1]!) < Date.now());
      if (!value || expired) this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    return res;
  }

  get = (path: string) => this.request(path);

  post(path: string, fields: Record<string, string>): Promise<Response> {
    return this.request(path, { method: 'POST', body: new URLSearchParams(fields) });
  }

  postForm(path: string, form: FormData): Promise<Response> {
    return this.request(path, { method: 'POST', body: form });
  }

  /** The CSRF token of the signed-in (or anonymous) session, read from a page as a browser would have it. */
  async csrf(path = '/signin'): Promise<string> {
    return csrfIn(await (await this.get(path)).text());
  }

  async signIn(address: string, password: string): Promise<Response> {
    const csrf = await this.csrf('/signin');
    return this.post('/signin', { _csrf: csrf, address, password });
  }
}

export function csrfIn(page: string): string {
  const match = /name="_csrf" value="([^"]+)"/.exec(page);
  if (!match) throw new Error(`no CSRF token in the page:\n${page.slice(0, 500)}`);
  return match[1]!;
}

// A small PNG made here (a solid banner), so the sample newsletter has a real inline image to show.
const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const byte of buf) c = CRC_TABLE[(c ^ byte) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type: string, data: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const out = Buffer.alloc(8 + data.length + 4);
  out.writeUInt32BE(data.length, 0);
  body.copy(out, 4);
  out.writeUInt32BE(crc32(body), 8 + data.length);
  return out;
}
export function pngBanner(width: number, height: number, rgb: [number, number, number]): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8);
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array.from({ length: width }, () => rgb).flat())]);
  const pixels = Buffer.concat(Array.from({ length: height }, () => row));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(pixels)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** A one-page PDF with a line of text: enough for a viewer to open, and its bytes to compare. */
export function tinyPdf(line: string): Buffer {
  const text = `BT /F1 14 Tf 72 720 Td (${line.replace(/[()\\]/g, '')}) Tj ET`;
  const objects = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>',
    `<< /Length ${text.length} >>\nstream\n${text}\nendstream`,
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
  ];
  let out = '%PDF-1.4\n';
  const offsets: number[] = [];
  objects.forEach((o, i) => {
    offsets.push(out.length);
    out += `${i + 1} 0 obj\n${o}\nendobj\n`;
  });
  const xref = out.length;
  out += `xref\n0 ${objects.length + 1}\n0000000000 65535 f \n`;
  for (const off of offsets) out += `${String(off).padStart(10, '0')} 00000 n \n`;
  out += `trailer\n<< /Size ${objects.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(out, 'latin1');
}

export interface Sample {
  raw: Buffer;
  messageId: string;
  subject: string;
  from: string;
}

export async function composeRaw(mail: ConstructorParameters<typeof MailComposer>[0]): Promise<Buffer> {
  return new MailComposer({ ...mail, disableFileAccess: true, disableUrlAccess: true }).compile().build();
}

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import nodemailer from 'nodemailer';
import pino from 'pino';
import { createIngestMetrics, type RejectReason } from '../src/ingest/metrics';
import { createSmtpServer, MAX_RECIPIENTS } from '../src/ingest/smtp';
import { loadTls } from '../src/ingest/tls';
import type { BodyWriter } from '../src/store/objects';
import { readHeld, startIngest, type TestIngest, uniqueRunbook } from './helpers/ingest';
import { freePort } from './helpers/ports';
import { RawSmtp, transaction } from './helpers/smtp-client';

const law = uniqueRunbook('harborview-law');
const freight = uniqueRunbook('meridian-freight');
const lawDomain = law.domains[0]!;
const reception = (law.recipients as string[])[0]!;
const anyFreight = (local: string) => `${local}@${freight.domains[0]}`;
let ingest: TestIngest;

before(async () => {
  ingest = await startIngest([law, freight], { env: { MXF_SMTP_MAX_SIZE: String(64 * 1024) } });
});
after(() => ingest.close());

const queueIdOf = (reply: string) => /queued as ([0-9A-Z]+)/.exec(reply)?.[1];

async function heldRow(queueId: string) {
  const [row] = await ingest.sql<
    {
      id: string;
      object_key: string;
      body_offset: string;
      sha256: Buffer;
      size_bytes: string;
      message_id: string;
      subject: string;
      tls: string | null;
      helo: string;
      envelope_from: string;
    }[]
  >`select * from held_message where queue_id = ${queueId}`;
  return row;
}

async function heldCount(): Promise<number> {
  const [row] = await ingest.sql<{ n: number }[]>`
    select count(distinct message_id)::int as n from held_recipient where customer_id in (${law.id}, ${freight.id})`;
  return row!.n;
}

test('EHLO advertises what an MX should, and neither AUTH nor DSN', async () => {
  const { client, greeting } = await RawSmtp.open(ingest.port);
  const ehlo = await client.send('EHLO client.test\r\n');
  client.close();
  assert.match(greeting, /^220 mx\.failover\.test /);
  for (const ext of ['PIPELINING', '8BITMIME', 'SMTPUTF8', 'SIZE 65536', 'ENHANCEDSTATUSCODES', 'STARTTLS']) {
    assert.match(ehlo, new RegExp(`^250[- ]${ext}$`, 'm'), ext);
  }
  for (const ext of ['AUTH', 'DSN', 'REQUIRETLS'])
    assert.doesNotMatch(ehlo, new RegExp(`^250[- ]${ext}`, 'm'), ext);
});

test('nodemailer: the stored object is the sent bytes plus our Received header, and the rows are committed', async () => {
  const raw = Buffer.from(
    [
      'From: Court Clerk <clerk@court.example>',
      `To: ${reception}`,
      'Subject: =?UTF-8?Q?Hearing_moved_to_Tuesday_=E2=80=93_room_4?=',
      'Message-ID: <hearing-42@court.example>',
      'Date: Fri, 27 Nov 2026 09:00:00 +0000',
      'DKIM-Signature: v=1; a=rsa-sha256; d=court.example; s=s1; bh=x; b=y',
      '',
      'The hearing is moved. Caf\u00e9 downstairs.',
      '.leading dot line',
      '',
    ].join('\r\n'),
    'utf8',
  );
  const transport = nodemailer.createTransport({
    host: '127.0.0.1',
    port: ingest.port,
    secure: false,
    ignoreTLS: true,
  });
  const info = await transport.sendMail({ envelope: { from: 'clerk@court.example', to: [reception] }, raw });
  const queueId = queueIdOf(info.response);
  assert.ok(queueId, info.response);
  assert.match(info.response, /^250 2\.0\.0 Ok: queued as /);

  const row = await heldRow(queueId);
  assert.ok(row, 'held_message row');
  const stored = await readHeld(ingest, row);
  const headerEnd = stored.indexOf('\r\n', stored.indexOf('; ')) + 2;
  const received = stored.subarray(0, headerEnd).toString();
  assert.ok(
    stored.subarray(headerEnd).equals(raw),
    'the message bytes are stored unchanged after our header',
  );
  assert.match(
    received,
    /^Received: from \S+ \(\[127\.0\.0\.1\]\)\r\n\tby mx\.failover\.test \(MX Failover\) with ESMTP id /,
  );
  assert.ok(received.includes(`id ${queueId}`));
  assert.ok(received.includes(`for <${reception}>;`));
  assert.equal(row.sha256.toString('hex'), createHash('sha256').update(stored).digest('hex'));
  assert.equal(Number(row.size_bytes), stored.length);
  assert.equal(row.message_id, '<hearing-42@court.example>');
  assert.equal(row.subject, 'Hearing moved to Tuesday \u2013 room 4');
  assert.equal(row.envelope_from, 'clerk@court.example');
  assert.equal(row.tls, null);
  const recipients =
    await ingest.sql`select recipient, customer_id from held_recipient where message_id = ${row.id}`;
  assert.deepEqual([...recipients], [{ recipient: reception, customer_id: law.id }]);
  assert.ok(ingest.rings.includes(law.id), 'the doorbell is rung after the commit');
});

// swaks runs asynchronously: the server under test lives in this process and must keep answering.
function swaks(...args: string[]): Promise<{ status: number; stdout: string }> {
  const base = [
    '--server',
    `127.0.0.1:${ingest.port}`,
    '--helo',
    'client.test',
    '--from',
    'sender@elsewhere.example',
  ];
  return new Promise((resolve) => {
    execFile('swaks', [...base, ...args], { timeout: 30_000 }, (err, stdout) =>
      resolve({ status: err ? Number(err.code ?? 1) : 0, stdout }),
    );
  });
}

test('swaks over STARTTLS: accepted, and the TLS version and cipher are recorded', async () => {
  const run = await swaks('--tls', '--to', reception, '--header', 'Subject: over tls');
  assert.equal(run.status, 0, run.stdout);
  const queueId = queueIdOf(run.stdout);
  assert.ok(queueId, run.stdout);
  const row = await heldRow(queueId);
  assert.match(row!.tls ?? '', /^version=TLSv1\.[23] cipher=TLS_/);
});

test('RCPT: a foreign domain is relay denied, an unlisted mailbox is unknown, both at RCPT time', async () => {
  const r = await transaction(ingest.port, {
    from: 'spammer@bad.example',
    to: ['victim@gmail.example', `partner@${lawDomain}`, reception],
  });
  assert.match(r.rcpts[0]!, /^550 5\.7\.1 Relaying denied/);
  assert.match(r.rcpts[1]!, /^550 5\.1\.1 /);
  assert.match(r.rcpts[2]!, /^250 /);
});

test('RCPT: swaks to a foreign domain is refused with 550 5.7.1', async () => {
  const run = await swaks('--to', 'someone@foreign.example');
  assert.notEqual(run.status, 0);
  assert.match(run.stdout, /<\*\* 550 5\.7\.1 Relaying denied/);
});

// The replies the README promises, written out here rather than taken from src/ingest/replies.ts, so that a changed
// reply fails the test instead of changing what it expects.
const RELAY_DENIED = '550 5.7.1 Relaying denied: this server is not a mail exchanger for that domain';
const ADDRESS_TRICK =
  '550 5.7.1 Relaying denied: %, !, @ and source routes in the local part are not accepted';
const UNKNOWN_RECIPIENT = '550 5.1.1 No such recipient here';
const BARE_CR = '550 5.6.0 Message refused: bare CR in the data; lines must end with CRLF (RFC 5321 2.3.8)';
const NUL = '550 5.6.0 Message refused: NUL byte in the data (RFC 5321 2.3.8)';
const LOCAL_ERROR = '451 4.3.0 Local error in processing; the message was not stored, please try again later';

/** mxf_smtp_rejected_total by reason, as the ingest's registry holds it now. */
async function refusals(on: TestIngest): Promise<Record<string, number>> {
  const { values } = await on.metrics.rejected.get();
  return Object.fromEntries(values.map((v) => [String(v.labels.reason), v.value]));
}

/** What changed between two readings of refusals(), reasons that did not move left out. */
function moved(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  return Object.fromEntries(
    Object.entries(after)
      .map(([reason, n]) => [reason, n - (before[reason] ?? 0)] as const)
      .filter(([, d]) => d !== 0),
  );
}

test('RCPT: each address trick aimed at a foreign domain gets the reply the README promises, even on a recipients: any domain', async () => {
  const ours = freight.domains[0]!;
  const trick = { reply: ADDRESS_TRICK, reason: 'address_trick' } as const;
  const denied = { reply: RELAY_DENIED, reason: 'relay_denied' } as const;
  const tricks: { what: string; address: string; reply: string; reason?: RejectReason }[] = [
    { what: 'percent hack', address: anyFreight('nobody%foreign.example'), ...trick },
    { what: 'bang path', address: anyFreight('foreign.example!nobody'), ...trick },
    // RFC 5321 4.1.2 and appendix C: smtp-server accepts a source route and drops it, as it should, so what is
    // left is judged like any address.
    { what: 'source route to a foreign mailbox', address: `@${ours}:nobody@foreign.example`, ...denied },
    // smtp-server's parser refuses it before our code sees it, so it counts under none of our reasons.
    {
      what: 'quoted local part holding @',
      address: `"nobody@foreign.example"@${ours}`,
      reply: '501 5.1.3 Error: Bad recipient address syntax',
    },
    { what: 'IP literal', address: 'nobody@[127.0.0.1]', ...denied },
    { what: 'our domain as a prefix of another', address: `nobody@${ours}.foreign.example`, ...denied },
  ];
  for (const { what, address, reply, reason } of tricks) {
    const before = await refusals(ingest);
    const r = await transaction(ingest.port, { from: 'x@bad.example', to: [address] });
    assert.equal(r.rcpts[0], reply, `${what} (${address})`);
    assert.deepEqual(moved(before, await refusals(ingest)), reason ? { [reason]: 1 } : {}, what);
  }
  const ok = await transaction(ingest.port, { from: 'x@bad.example', to: [anyFreight('Dispatch')] });
  assert.match(ok.rcpts[0]!, /^250 /, 'an ordinary mailbox of a recipients: any domain is accepted');
  const routed = await transaction(ingest.port, {
    from: 'x@bad.example',
    to: [`@foreign.example:dispatch@${ours}`],
  });
  assert.match(
    routed.rcpts[0]!,
    /^250 /,
    'a source route through a foreign host to our mailbox is ignored, not followed',
  );
});

test(`more than ${MAX_RECIPIENTS} recipients: the excess gets 452 4.5.3 and the message is held for the first ${MAX_RECIPIENTS}`, async () => {
  const to = Array.from({ length: MAX_RECIPIENTS + 1 }, (_, i) => anyFreight(`user${i}`));
  const r = await transaction(ingest.port, {
    from: 'list@news.example',
    to,
    data: 'Subject: many\r\n\r\nhi',
  });
  assert.equal(r.rcpts.filter((x) => x.startsWith('250 ')).length, MAX_RECIPIENTS);
  assert.match(r.rcpts[MAX_RECIPIENTS]!, /^452 4\.5\.3 /);
  const queueId = queueIdOf(r.end!);
  assert.ok(queueId, r.end);
  const row = await heldRow(queueId);
  const [{ n }] =
    (await ingest.sql`select count(*)::int as n from held_recipient where message_id = ${row!.id}`) as unknown as [
      { n: number },
    ];
  assert.equal(n, MAX_RECIPIENTS);
});

test('SIZE: a declared size over the limit is refused at MAIL, an undeclared one while streaming, and nothing is kept', async () => {
  const before = await heldCount();
  const { client } = await RawSmtp.open(ingest.port);
  await client.send('EHLO c\r\n');
  assert.match(await client.send('MAIL FROM:<big@sender.example> SIZE=100000\r\n'), /^552 5\.3\.4 /);
  client.close();
  const body = `Subject: big\r\n\r\n${'x'.repeat(998)}\r\n`.repeat(80);
  const r = await transaction(ingest.port, { from: 'big@sender.example', to: [reception], data: body });
  assert.match(r.end!, /^552 5\.3\.4 /);
  assert.equal(await heldCount(), before, 'no row for the oversize message');
});

test('bare LF is normalised to CRLF; bare CR and NUL are refused with 550 5.6.0', async () => {
  const lf = await transaction(ingest.port, {
    from: 'a@b.example',
    to: [reception],
    data: 'Subject: lf\n\nline one\nline two',
  });
  const queueId = queueIdOf(lf.end!);
  assert.ok(queueId, lf.end);
  const stored = await readHeld(ingest, (await heldRow(queueId))!);
  assert.ok(
    stored.toString().endsWith('Subject: lf\r\n\r\nline one\r\nline two\r\n'),
    JSON.stringify(stored.toString()),
  );

  const before = await heldCount();
  const cr = await transaction(ingest.port, {
    from: 'a@b.example',
    to: [reception],
    data: 'Subject: cr\r\n\r\nbad\rline',
  });
  assert.match(cr.end!, /^550 5\.6\.0 .*bare CR/);
  const nul = await transaction(ingest.port, {
    from: 'a@b.example',
    to: [reception],
    data: 'Subject: nul\r\n\r\nbad\0line',
  });
  assert.match(nul.end!, /^550 5\.6\.0 .*NUL/);
  assert.equal(await heldCount(), before);
});

test('SMTP smuggling: each published end-of-data variant gets one outcome, and nothing is smuggled', async () => {
  const smuggled = (eod: string) =>
    `Subject: outer\r\n\r\nhello${eod}MAIL FROM:<ceo@${lawDomain}>\r\nRCPT TO:<${reception}>\r\nDATA\r\nSubject: smuggled\r\n\r\nwire the money`;
  // Only <CRLF>.<CRLF> ends DATA. A variant with bare LFs and no bare CR is a line of text like any other: its LFs
  // are normalised to CRLF and it stays inside the one message, the lone dot included (forwarding dot-stuffs it
  // like any other line that starts with a dot). One with a bare CR or a NUL is refused whole.
  const held = `${smuggled('\r\n.\r\n')}\r\n`; // what follows our Received header
  const vectors: { eod: string; refused?: string }[] = [
    { eod: '\n.\n' },
    { eod: '\n.\r\n' },
    { eod: '\r\n.\n' },
    { eod: '\r.\r\n', refused: BARE_CR },
    { eod: '\r\n.\r', refused: BARE_CR },
    { eod: '\r.\n', refused: BARE_CR },
    { eod: '\n.\r', refused: BARE_CR },
    { eod: '\r\n\x00.\r\n', refused: NUL },
  ];
  for (const { eod, refused } of vectors) {
    const vector = `vector ${JSON.stringify(eod)}`;
    const before = await heldCount();
    const { client } = await RawSmtp.open(ingest.port);
    await client.send('EHLO c\r\n');
    await client.send('MAIL FROM:<a@b.example>\r\n');
    await client.send(`RCPT TO:<${reception}>\r\n`);
    await client.send('DATA\r\n');
    const end = await client.send(`${smuggled(eod)}\r\n.\r\n`);
    // Whatever follows must be a fresh command: a smuggled transaction would have produced more replies.
    const next = await client.send('NOOP\r\n');
    client.close();
    assert.match(next, /^250 /, `${vector}: the session is in command state after one message`);
    if (refused) {
      assert.equal(end, refused, vector);
      assert.equal(await heldCount(), before, `${vector}: nothing held`);
      continue;
    }
    const queueId = queueIdOf(end);
    assert.match(end, /^250 2\.0\.0 Ok: queued as /, vector);
    assert.equal(await heldCount(), before + 1, `${vector}: exactly one message`);
    const bytes = (await readHeld(ingest, (await heldRow(queueId!))!)).toString('latin1');
    const received = bytes.slice(0, bytes.indexOf('Subject: outer'));
    assert.match(
      received,
      /^Received: [^\r\n]*(\r\n\t[^\r\n]*)*\r\n$/,
      `${vector}: our header, then the message`,
    );
    assert.equal(bytes.slice(received.length), held, `${vector}: the stored bytes`);
  }
  const [{ n }] = (await ingest.sql`
    select count(*)::int as n from held_message where envelope_from = ${`ceo@${lawDomain}`}`) as unknown as [
    { n: number },
  ];
  assert.equal(n, 0, 'no message from the smuggled MAIL FROM');
});

test('a large body that goes bad after its first MiB is refused cleanly, and a vanishing client harms nothing', async () => {
  const big = await startIngest([law]);
  try {
    const line = `${'z'.repeat(998)}\r\n`;
    const bad = `Subject: big\r\n\r\n${line.repeat(1500)}oops\rbare${line.repeat(100)}`;
    const r = await transaction(big.port, { from: 'a@b.example', to: [reception], data: bad });
    assert.match(r.end!, /^550 5\.6\.0 .*bare CR/);

    const { client } = await RawSmtp.open(big.port);
    await client.send('EHLO c\r\n');
    await client.send('MAIL FROM:<a@b.example>\r\n');
    await client.send(`RCPT TO:<${reception}>\r\n`);
    await client.send('DATA\r\n');
    client.write(`Subject: gone\r\n\r\n${line.repeat(1500)}`);
    client.destroy();

    const ok = await transaction(big.port, {
      from: 'a@b.example',
      to: [reception],
      data: `Subject: after\r\n\r\n${line.repeat(1500)}`,
    });
    assert.match(ok.end!, /^250 2\.0\.0 /, 'the ingest is still up and stores large bodies');
  } finally {
    await big.close();
  }
});

test('per-IP connection limit answers 421 4.7.0', async () => {
  const limited = await startIngest([law], { env: { MXF_SMTP_MAX_PER_IP: '2' } });
  try {
    const a = await RawSmtp.open(limited.port);
    const b = await RawSmtp.open(limited.port);
    const c = await RawSmtp.open(limited.port);
    assert.match(a.greeting, /^220 /);
    assert.match(b.greeting, /^220 /);
    assert.match(c.greeting, /^421 4\.7\.0 /);
    for (const x of [a, b, c]) x.client.close();
  } finally {
    await limited.close();
  }
});

test('the greeting comes at once by default; with MXF_SMTP_GREET_PAUSE_MS an early talker gets 421', async () => {
  const started = Date.now();
  const { client, greeting } = await RawSmtp.open(ingest.port);
  client.close();
  assert.match(greeting, /^220 /);
  assert.ok(Date.now() - started < 80, `greeting after ${Date.now() - started} ms`);

  const paused = await startIngest([law], { env: { MXF_SMTP_GREET_PAUSE_MS: '400' } });
  try {
    const polite = Date.now();
    const waited = await RawSmtp.open(paused.port);
    assert.match(waited.greeting, /^220 /);
    assert.ok(Date.now() - polite >= 380, 'the greeting waits for the pause');
    waited.client.close();
    const early = await RawSmtp.connectOnly(paused.port);
    const reply = await early.send('EHLO spambot.example\r\n');
    assert.match(reply, /^421 .*talk too soon/);
  } finally {
    await paused.close();
  }
});

test('metrics count accepted messages, bytes and time to 250', async () => {
  const text = await ingest.metrics.registry.metrics();
  const value = (re: RegExp) => Number(re.exec(text)?.[1] ?? 'NaN');
  assert.ok(value(/^mxf_smtp_accepted_total (\d+)/m) >= 3);
  assert.ok(value(/^mxf_smtp_accepted_bytes_total (\d+)/m) > 0);
  assert.ok(value(/^mxf_smtp_time_to_250_seconds_count (\d+)/m) >= 3);
});

test('mxf_smtp_rejected_total: each of the nine reasons counts its own refusal, once, and no other', async () => {
  const limited = await startIngest([law], { env: { MXF_SMTP_MAX_PER_IP: '1' } });
  // A database that refuses connections: the body is stored, the commit fails, the sender is told to retry.
  const noDatabase = await startIngest([law], {
    env: { DATABASE_URL: `postgres://postgres@127.0.0.1:${await freePort()}/nowhere` },
  });
  const rcpt = async (to: string) =>
    (await transaction(ingest.port, { from: 'x@bad.example', to: [to] })).rcpts.at(-1)!;
  const data = async (body: string, on = ingest) =>
    (await transaction(on.port, { from: 'x@bad.example', to: [reception], data: body })).end!;
  const cases: {
    reason: RejectReason;
    what: string;
    on?: TestIngest;
    reply: string | RegExp;
    provoke(): Promise<string>;
  }[] = [
    {
      reason: 'relay_denied',
      what: 'a foreign domain',
      reply: RELAY_DENIED,
      provoke: () => rcpt('x@foreign.example'),
    },
    {
      reason: 'unknown_recipient',
      what: 'an unlisted mailbox',
      reply: UNKNOWN_RECIPIENT,
      provoke: () => rcpt(`partner@${lawDomain}`),
    },
    {
      reason: 'address_trick',
      what: 'a percent hack',
      reply: ADDRESS_TRICK,
      provoke: () => rcpt(anyFreight('x%foreign.example')),
    },
    {
      reason: 'too_many_recipients',
      what: `recipient ${MAX_RECIPIENTS + 1}`,
      reply: /^452 4\.5\.3 /,
      provoke: async () =>
        (
          await transaction(ingest.port, {
            from: 'x@bad.example',
            to: Array.from({ length: MAX_RECIPIENTS + 1 }, (_, i) => anyFreight(`many${i}`)),
          })
        ).rcpts.at(-1)!,
    },
    {
      reason: 'oversize',
      what: 'a SIZE= over the limit at MAIL',
      reply: /^552 5\.3\.4 /,
      provoke: async () => {
        const { client } = await RawSmtp.open(ingest.port);
        await client.send('EHLO c\r\n');
        const reply = await client.send('MAIL FROM:<big@sender.example> SIZE=100000\r\n');
        client.close();
        return reply;
      },
    },
    {
      reason: 'oversize',
      what: 'an undeclared body over the limit',
      reply: /^552 5\.3\.4 /,
      provoke: () => data(`Subject: big\r\n\r\n${'x'.repeat(70_000)}`),
    },
    {
      reason: 'bare_cr',
      what: 'a bare CR',
      reply: BARE_CR,
      provoke: () => data('Subject: cr\r\n\r\nbad\rline'),
    },
    { reason: 'nul', what: 'a NUL', reply: NUL, provoke: () => data('Subject: nul\r\n\r\nbad\0line') },
    {
      reason: 'per_ip_limit',
      what: 'a second connection where one is allowed',
      on: limited,
      reply: /^421 4\.7\.0 Too many connections from your address/,
      provoke: async () => {
        const first = await RawSmtp.open(limited.port);
        const second = await RawSmtp.open(limited.port);
        first.client.close();
        second.client.destroy();
        return second.greeting;
      },
    },
    {
      reason: 'local_error',
      what: 'a commit with the database gone',
      on: noDatabase,
      reply: LOCAL_ERROR,
      provoke: () => data('Subject: db\r\n\r\nhi', noDatabase),
    },
  ];
  try {
    for (const c of cases) {
      const on = c.on ?? ingest;
      const before = await refusals(on);
      const reply = await c.provoke();
      if (typeof c.reply === 'string') assert.equal(reply, c.reply, c.what);
      else assert.match(reply, c.reply, c.what);
      assert.deepEqual(moved(before, await refusals(on)), { [c.reason]: 1 }, c.what);
    }
  } finally {
    await limited.close();
    await noDatabase.close();
  }
  const reasons: RejectReason[] = [
    'relay_denied',
    'unknown_recipient',
    'address_trick',
    'too_many_recipients',
    'per_ip_limit',
    'oversize',
    'bare_cr',
    'nul',
    'local_error',
  ];
  assert.deepEqual(
    [...new Set(cases.map((c) => c.reason))].sort(),
    reasons.sort(),
    'every reason the README lists is provoked',
  );
});

test('an unexpected failure during DATA is logged, counted as local_error and answered 451 4.3.0 without its text', async () => {
  // A body writer that breaks its contract: it reads the body, then resolves without saying where the body went.
  const broken = {
    async put(_key: string, body: Readable) {
      for await (const _ of body);
      return undefined;
    },
  } as unknown as BodyWriter;
  const logged: string[] = [];
  const log = pino({ level: 'error' }, { write: (line: string) => void logged.push(line) });
  const metrics = createIngestMetrics();
  const server = createSmtpServer({
    config: ingest.config,
    runbooks: [law],
    log,
    sql: ingest.sql,
    bodies: broken,
    metrics,
    tls: await loadTls(ingest.config, pino({ level: 'silent' })),
    ring: () => {},
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  try {
    const before = await heldCount();
    const r = await transaction(port, {
      from: 'clerk@court.example',
      to: [reception],
      data: 'Subject: x\r\n\r\nhi',
    });
    assert.equal(
      r.end,
      '451 4.3.0 Local error in processing; the message was not stored, please try again later',
      "our own advice, never smtp-server's 450 with the internal error as its text",
    );
    assert.equal(await heldCount(), before, 'nothing was held');
    const text = await metrics.registry.metrics();
    assert.match(text, /^mxf_smtp_rejected_total\{reason="local_error"\} 1$/m);
    assert.ok(
      logged.some(
        (line) => /failed unexpectedly/.test(line) && /Cannot read properties of undefined/.test(line),
      ),
      `the internal error is in our log:\n${logged.join('')}`,
    );
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

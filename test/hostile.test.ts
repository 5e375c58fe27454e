import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, test } from 'node:test';
import { startApi } from './helpers/api';
import { readHeld, startIngest, type TestIngest, uniqueRunbook } from './helpers/ingest';
import { RawSmtp, transaction } from './helpers/smtp-client';

// Hostile input: malformed MIME, SMTP abuse and API abuse. Each gets a clear, correct reply; the ingest and the
// API stay up; a message held before the abuse is byte-for-byte intact after it. Relay tricks and smuggling
// vectors are in test/ingest.test.ts. At the end the suite prints what it tried.

const law = uniqueRunbook('harborview-law');
const freight = uniqueRunbook('meridian-freight'); // recipients: any, for floods of distinct mailboxes
const to = (law.recipients as string[])[0]!;
let ingest: TestIngest;
let api: Awaited<ReturnType<typeof startApi>>;
const tried: { kind: string; what: string; outcome: string }[] = [];
let reference: { queueId: string; sha256: string };

const queueIdOf = (reply: string | undefined) => /queued as ([0-9A-Z]+)/.exec(reply ?? '')?.[1];

async function held(queueId: string) {
  const [row] = await ingest.sql<
    { id: string; object_key: string; body_offset: string; size_bytes: string; sha256: Buffer }[]
  >`select id::text, object_key, body_offset, size_bytes, sha256 from held_message where queue_id = ${queueId}`;
  assert.ok(row, `held_message ${queueId}`);
  return row;
}

before(async () => {
  ingest = await startIngest([law, freight]);
  api = await startApi(ingest.config, [law, freight]);
  const r = await transaction(ingest.port, {
    from: 'clerk@court.example',
    to: [to],
    data: 'Subject: reference\r\n\r\nThis message must survive everything below.',
  });
  const queueId = queueIdOf(r.end)!;
  reference = { queueId, sha256: (await held(queueId)).sha256.toString('hex') };
});

after(async () => {
  console.log(
    `hostile input tried (${tried.length}):\n${tried.map((t) => `  ${t.kind.padEnd(5)} ${t.what.padEnd(48)} -> ${t.outcome}`).join('\n')}`,
  );
  await api.close();
  await ingest.close();
});

/** What the API shows of a parsed message: the parts a malformed message can get wrong. */
interface Shown {
  subject: string | null;
  text: string | null;
  attachments: string[];
}

// Each case with what the API must show of it. All parse within the 5 s cap here (the 2 MB part in about a
// second on 2 busy cores), so a PARSE_TIMEOUT for any of them is a failure, not an allowed outcome.
const MALFORMED_MIME: Record<string, { mime: string; shown: Partial<Shown> }> = {
  // No boundary, so no part can be found: nothing to show but the headers (the bytes are there through /raw).
  'multipart without a boundary': {
    mime: 'Content-Type: multipart/mixed\r\n\r\n--x\r\nhello\r\n--x--',
    shown: {},
  },
  'unterminated boundary': {
    mime: 'Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nno end in sight',
    shown: { text: 'no end in sight\n' },
  },
  'nesting 300 deep': {
    mime: `${Array.from({ length: 300 }, (_, i) => `Content-Type: multipart/mixed; boundary=b${i}\r\n\r\n--b${i}\r\n`).join('')}Content-Type: text/plain\r\n\r\ndeep`,
    shown: { text: 'deep\n' },
  },
  // 1.5 MB decoded: the text is clipped at a million characters.
  'a 2 MB single-line part': {
    mime: `Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n${Buffer.alloc(1_500_000, 7).toString('base64')}`,
    shown: { text: `${'\x07'.repeat(1_000_000)}\n[clipped]` },
  },
  // Characters outside the alphabet are skipped, as Node's own decoder does; the rest decodes to what it can.
  'broken base64': {
    mime: 'Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n@@@@not*base64!!==\r\n',
    shown: { text: Buffer.from('notbase64', 'base64').toString('utf8') },
  },
  // An escape that is not hex stays as written; the trailing soft break joins nothing.
  'broken quoted-printable': {
    mime: 'Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ=\r\n=',
    shown: { text: '=ZZ' },
  },
  // An unknown charset is read as UTF-8; the Latin-1 byte that is not UTF-8 becomes U+FFFD.
  'unknown charset': {
    mime: 'Content-Type: text/plain; charset=x-no-such-charset\r\n\r\ncaf\xe9',
    shown: { text: 'caf\ufffd\n' },
  },
  'broken encoded-word and raw 8-bit header': {
    mime: 'Subject: =?utf-8?B?####?= caf\xe9\r\n\r\nbody',
    shown: { subject: ' caf\ufffd', text: 'body\n' },
  },
  'attachment with a traversal filename': {
    mime: 'Content-Type: multipart/mixed; boundary=q\r\n\r\n--q\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="../../etc/passwd"\r\n\r\nx\r\n--q--',
    // Reported as the sender named it, never written anywhere.
    shown: { attachments: ['../../etc/passwd application/octet-stream 1 byte(s)'] },
  },
};

test('malformed MIME is held byte for byte, and the API shows what each case holds within its caps', async () => {
  for (const [what, { mime, shown: expected }] of Object.entries(MALFORMED_MIME)) {
    const data = Buffer.from(`From: a@b.example\r\n${mime}`, 'latin1');
    const r = await transaction(ingest.port, { from: 'mime@abuse.example', to: [to], data });
    assert.match(r.end ?? '', /^250 /, `${what}: ${r.end}`);
    const row = await held(queueIdOf(r.end)!);
    const stored = await readHeld(ingest, row);
    const sent = Buffer.concat([data, Buffer.from('\r\n')]); // the CRLF before the final dot is the message's
    assert.ok(stored.subarray(stored.length - sent.length).equals(sent), `${what}: stored as sent`);
    assert.equal(createHash('sha256').update(stored).digest('hex'), row.sha256.toString('hex'));
    const started = Date.now();
    const shown = await api.call('GET', `/api/messages/${row.id}`);
    const took = Date.now() - started;
    assert.equal(shown.status, 200, `${what}: ${shown.text.slice(0, 200)}`);
    const content = shown.json.content;
    assert.equal(content.from, 'a@b.example', what);
    const seen: Shown = {
      subject: content.subject ?? null,
      text: content.text ?? null,
      attachments: content.attachments.map(
        (a: { filename: string; contentType: string; size: number }) =>
          `${a.filename} ${a.contentType} ${a.size} byte(s)`,
      ),
    };
    assert.deepEqual(seen, { subject: null, text: null, attachments: [], ...expected }, what);
    tried.push({ kind: 'mime', what, outcome: `250, API 200 in ${took} ms` });
  }
});

test('a pipelined flood of 1000 RCPTs: 100 accepted, the rest 452 4.5.3, every command answered in order', async () => {
  const { client } = await RawSmtp.open(ingest.port);
  try {
    await client.send('EHLO flood.example\r\n');
    const replies: Promise<string>[] = [client.reply()];
    let batch = 'MAIL FROM:<flood@abuse.example>\r\n';
    for (let i = 0; i < 1000; i++) {
      batch += `RCPT TO:<user${i}@${freight.domains[0]}>\r\n`;
      replies.push(client.reply());
    }
    client.write(batch);
    const answered = await Promise.all(replies);
    assert.match(answered[0]!, /^250 /);
    const rcpts = answered.slice(1);
    assert.ok(rcpts.slice(0, 100).every((r) => r.startsWith('250 ')));
    assert.ok(
      rcpts.slice(100).every((r) => r.startsWith('452 4.5.3')),
      rcpts[100],
    );
    await client.send('DATA\r\n');
    const end = await client.send('Subject: flood\r\n\r\nflood\r\n.\r\n');
    const [count] = await ingest.sql<{ n: number }[]>`
      select count(*)::int as n from held_recipient r join held_message m on m.id = r.message_id
      where m.queue_id = ${queueIdOf(end)!}`;
    assert.equal(count!.n, 100, 'held for the first 100 recipients');
    tried.push({
      kind: 'smtp',
      what: '1000 pipelined RCPTs in one write',
      outcome: '100 x 250, 900 x 452 4.5.3',
    });
    const noops = Array.from({ length: 2000 }, () => client.reply());
    client.write('NOOP\r\n'.repeat(2000));
    assert.equal((await Promise.all(noops)).filter((r) => r.startsWith('250')).length, 2000);
    tried.push({ kind: 'smtp', what: '2000 pipelined NOOPs in one write', outcome: '2000 x 250' });
  } finally {
    client.close();
  }
});

test('an overlong command line closes that session with 421; others carry on', async () => {
  const { client } = await RawSmtp.open(ingest.port);
  await client.send('EHLO long.example\r\n');
  const reply = await client.send(`MAIL FROM:<${'a'.repeat(40_000)}@abuse.example>\r\n`);
  assert.match(reply, /^421 /);
  client.destroy();
  tried.push({ kind: 'smtp', what: 'a 40 KB MAIL FROM line', outcome: reply.slice(0, 40) });
  const ok = await transaction(ingest.port, {
    from: 'after@long.example',
    to: [to],
    data: 'Subject: ok\r\n\r\nok',
  });
  assert.match(ok.end ?? '', /^250 /);
});

test('a slow sender (a byte every 50 ms) blocks nobody, and its message is held whole', async () => {
  const { client } = await RawSmtp.open(ingest.port);
  await client.send('EHLO slow.example\r\n');
  await client.send('MAIL FROM:<slow@abuse.example>\r\n');
  await client.send(`RCPT TO:<${to}>\r\n`);
  await client.send('DATA\r\n');
  const body = 'Subject: slow\r\n\r\nslowly\r\n.\r\n';
  const done = client.reply();
  let others = 0;
  for (const byte of body) {
    client.write(byte);
    await new Promise((r) => setTimeout(r, 50));
    if (others < 3) {
      const fast = await transaction(ingest.port, {
        from: 'fast@ok.example',
        to: [to],
        data: 'Subject: f\r\n\r\nf',
      });
      assert.match(fast.end ?? '', /^250 /);
      others++;
    }
  }
  assert.match(await done, /^250 /);
  client.close();
  tried.push({
    kind: 'smtp',
    what: `${body.length} bytes at 20 bytes/s, 3 others meanwhile`,
    outcome: 'all 250',
  });
});

test('STARTTLS with MAIL and RCPT pipelined after it: they run neither in plaintext nor inside TLS, and nothing is held', async () => {
  const { client } = await RawSmtp.open(ingest.port);
  await client.send('EHLO tls.example\r\n');
  const ready = await client.send(`STARTTLS\r\nMAIL FROM:<injected@abuse.example>\r\nRCPT TO:<${to}>\r\n`);
  assert.match(ready, /^220 /);
  // A reply in plaintext to the injected commands would break the handshake (startTls refuses it too).
  const secure = await client.startTls();
  try {
    // Replies come in order: had the injected MAIL and RCPT run inside TLS (the classic STARTTLS injection), their
    // 250s would be the first replies read here, and a transaction would be open for DATA.
    assert.match(await secure.send('EHLO tls.example\r\n'), /^250-mx\.failover\.test /);
    assert.match(await secure.send('DATA\r\n'), /^503 /, 'no MAIL or RCPT was carried into the session');
    assert.match(await secure.send(`RCPT TO:<${to}>\r\n`), /^503 /, 'no MAIL was carried into the session');
    // The session is real: a message sent in it is held, with its TLS recorded.
    assert.match(await secure.send('MAIL FROM:<tls@ok.example>\r\n'), /^250 /);
    assert.match(await secure.send(`RCPT TO:<${to}>\r\n`), /^250 /);
    assert.match(await secure.send('DATA\r\n'), /^354 /);
    const end = await secure.send('Subject: inside tls\r\n\r\nok\r\n.\r\n');
    const [row] = await ingest.sql<{ envelope_from: string; tls: string | null }[]>`
      select envelope_from, tls from held_message where queue_id = ${queueIdOf(end) ?? ''}`;
    assert.equal(row?.envelope_from, 'tls@ok.example', end);
    assert.match(row.tls ?? '', /^version=TLSv1\.[23] /);
  } finally {
    secure.close();
  }
  const [{ n }] = (await ingest.sql`
    select count(*)::int as n from held_message where envelope_from = 'injected@abuse.example'`) as unknown as [
    { n: number },
  ];
  assert.equal(n, 0, 'nothing from the injected MAIL is held');
  tried.push({
    kind: 'smtp',
    what: 'STARTTLS + pipelined MAIL/RCPT',
    outcome: '220, then discarded (EHLO first inside TLS, DATA 503, none held)',
  });
});

test('API abuse: deep JSON, prototype pollution, odd ids and query strings get 4xx with a code', async () => {
  const path = `/api/outages/${law.id}/instructions`;
  const cases: [string, Parameters<typeof api.call>, number][] = [
    [
      'JSON nested 10,000 deep',
      ['POST', path, { rawBody: `${'['.repeat(10_000)}${']'.repeat(10_000)}` }],
      400,
    ],
    [
      '__proto__ in the body',
      ['POST', path, { rawBody: '{"action":"hold","__proto__":{"admin":true}}' }],
      400,
    ],
    ['a 1 MB body', ['POST', path, { rawBody: `{"action":"hold","note":"${'n'.repeat(1 << 20)}"}` }], 413],
    ['id with ../', ['GET', '/api/messages/..%2F..%2Fsecret'], 400],
    ['id with unicode', ['GET', '/api/outages/%E2%80%AEharborview'], 400],
    ['id with a visibility-query quote', ['GET', '/api/outages/x%22%20OR%20%22a'], 400],
    ['customer filter with a quote', ['GET', '/api/outages?customer=a%22%20OR%20WorkflowId%3D%22b'], 400],
    ['limit out of range', ['GET', `/api/outages/${law.id}/messages?limit=100000`], 400],
    ['cursor that is not a number', ['GET', `/api/outages/${law.id}/messages?cursor=1;drop`], 400],
    ['message id past bigint', ['GET', '/api/messages/99999999999999999999'], 400],
  ];
  for (const [what, args, status] of cases) {
    const r = await api.call(...args);
    assert.equal(r.status, status, `${what}: ${r.text.slice(0, 200)}`);
    assert.ok(r.json?.error?.code, `${what}: a JSON error with a code`);
    assert.ok(!/\.ts:\d+|node_modules/.test(r.text), `${what}: no stack trace`);
    tried.push({ kind: 'api', what, outcome: `${r.status} ${r.json.error.code}` });
  }
  assert.equal(({} as Record<string, unknown>).admin, undefined, 'no prototype was polluted');
});

test('after all of it: the ingest and the API answer, and the reference message is intact', async () => {
  const ok = await transaction(ingest.port, {
    from: 'after@all.example',
    to: [to],
    data: 'Subject: ok\r\n\r\nok',
  });
  assert.match(ok.end ?? '', /^250 /);
  assert.equal((await api.call('GET', '/healthz', { as: 'none' })).status, 200);
  const row = await held(reference.queueId);
  const stored = await readHeld(ingest, row);
  assert.equal(createHash('sha256').update(stored).digest('hex'), reference.sha256);
});

import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import type { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { BatchBodies } from '../src/activities/body-reader';
import { createDeliveryActivities } from '../src/activities/deliver';
import { probeMx } from '../src/activities/probe';
import {
  DELIVERY_DEFERRED,
  type DeliveryBatchResult,
  type DeliveryStopped,
  type DeliveryTarget,
  targetKey,
} from '../src/domain/delivery';
import type { Runbook } from '../src/domain/runbook';
import { parseReturnPath, returnPathSecret, targetHashOf } from '../src/mail/return-path';
import { createSql } from '../src/store/db';
import { countHeldMessages } from '../src/store/held';
import { commitHeldMessage } from '../src/store/messages';
import { BodyWriter, createObjectStore } from '../src/store/objects';
import { arcSealedBy, stripArcSet } from './helpers/arc-set';
import { startCatcher } from './helpers/catcher';
import { FORWARDING_DOMAIN, GMAIL_DOMAIN } from './helpers/dns-zone';
import { heldMessage } from './helpers/fixtures';
import { startGmail } from './helpers/gmail';
import { markScoredClean } from './helpers/held';
import { uniqueRunbook } from './helpers/ingest';
import { freePort } from './helpers/ports';
import { testConfig } from './helpers/stack';

const sql = createSql(testConfig());
const objects = createObjectStore(testConfig());
after(() => sql.end());

/** Holds a message as ingest would: the body in object storage, the rows in PostgreSQL. */
async function hold(runbook: Runbook, recipients: string[], subject: string, padding = ''): Promise<Buffer> {
  const config = testConfig();
  const raw = Buffer.from(
    `Received: from test\r\nSubject: ${subject}\r\nMessage-ID: <${randomUUID()}@test>\r\n\r\nbody of ${subject}\r\n${padding}`,
  );
  const ref = await new BodyWriter(objects, config.s3.bucket).put(
    `held/test/${randomUUID()}.eml`,
    Readable.from([raw]),
    1 << 20,
  );
  const id = await commitHeldMessage(
    sql,
    heldMessage(runbook.id, recipients, {
      objectKey: ref.objectKey,
      bodyOffset: ref.offset,
      sizeBytes: ref.length,
      sha256: createHash('sha256').update(raw).digest('hex'),
      envelopeFrom: 'sender@origin.example',
    }),
  );
  await markScoredClean(sql, [id]); // these tests call the deliver activity alone, without the scorer
  return raw;
}

function deliverBatch(
  runbook: Runbook,
  target: DeliveryTarget,
  env: Record<string, string> = {},
): Promise<DeliveryBatchResult> {
  const config = testConfig(env);
  const activities = createDeliveryActivities({ sql, objects, config });
  return new MockActivityEnvironment().run(activities.deliverBatch, {
    runbook,
    target,
    limit: 100,
  }) as Promise<DeliveryBatchResult>;
}

/** A batch's counts, which most tests assert on. */
async function deliver(runbook: Runbook, target: DeliveryTarget, env: Record<string, string> = {}) {
  const { delivered, failed, remaining } = await deliverBatch(runbook, target, env);
  return { delivered, failed, remaining };
}

function withPrimary(runbook: Runbook, port: number): Runbook {
  return { ...runbook, primary: [{ host: '127.0.0.1', port }] };
}

test('probe: a live SMTP server answers; a closed port fails at connect', async () => {
  const server = await startCatcher();
  try {
    const up = await probeMx(
      { name: '127.0.0.1', address: '127.0.0.1', port: server.port },
      'mx.failover.test',
    );
    assert.equal(up.ok, true);
    assert.equal(up.stage, 'done');
  } finally {
    await server.close();
  }
  const down = await probeMx(
    { name: '127.0.0.1', address: '127.0.0.1', port: await freePort() },
    'mx.failover.test',
  );
  assert.equal(down.ok, false);
  assert.equal(down.stage, 'connect');
});

test('restore to the primary: original bytes and envelope, in arrival order, each once', async () => {
  const primary = await startCatcher();
  const base = uniqueRunbook('harborview-law');
  const runbook = withPrimary(base, primary.port);
  const [a, b] = base.recipients as string[];
  try {
    const first = await hold(runbook, [a!], 'first');
    const second = await hold(runbook, [a!, b!], 'second');
    const result = await deliver(runbook, { kind: 'primary' });
    assert.deepEqual(result, { delivered: 3, failed: 0, remaining: 0 });
    assert.equal(primary.caught.length, 2);
    assert.ok(primary.caught[0]!.raw.equals(first), 'byte for byte');
    assert.ok(primary.caught[1]!.raw.equals(second));
    assert.equal(primary.caught[1]!.from, 'sender@origin.example');
    assert.deepEqual(primary.caught[1]!.to.sort(), [a, b].sort());
    assert.deepEqual(await deliver(runbook, { kind: 'primary' }), { delivered: 0, failed: 0, remaining: 0 });
    assert.equal(primary.caught.length, 2, 'a second run sends nothing again');
  } finally {
    await primary.close();
  }
});

test('a 5xx for one recipient is recorded as failed and not retried; the other is delivered', async () => {
  const base = uniqueRunbook('harborview-law');
  const [a, b] = base.recipients as string[];
  const primary = await startCatcher({ refuse: (rcpt) => (rcpt === b ? 550 : undefined) });
  const runbook = withPrimary(base, primary.port);
  try {
    await hold(runbook, [a!, b!], 'partial');
    const result = await deliverBatch(runbook, { kind: 'primary' });
    assert.deepEqual(
      { ...result, refused: result.refused.map((r) => `${r.recipient}: ${r.reply}`) },
      { delivered: 1, failed: 1, remaining: 0, refused: [`${b}: 550 refused by test`], deferred: null },
    );
    const rows =
      await sql`select recipient, outcome from delivery_ledger d join held_recipient r using (message_id, recipient)
                           where r.customer_id = ${runbook.id} order by recipient`;
    assert.deepEqual(
      rows.map((r) => `${r.recipient}:${r.outcome}`),
      [`${a}:delivered`, `${b}:failed`].sort(),
    );
  } finally {
    await primary.close();
  }
});

test('a primary that is down stops the batch with the network error for the workflow, recording nothing', async () => {
  const port = await freePort();
  const runbook = withPrimary(uniqueRunbook('harborview-law'), port);
  await hold(runbook, [(runbook.recipients as string[])[0]!], 'waiting');
  await assert.rejects(deliver(runbook, { kind: 'primary' }), (err: ApplicationFailure) => {
    // The workflow schedules the next try and shows why; the activity does not retry a target that is down.
    assert.equal(err.type, DELIVERY_DEFERRED);
    assert.equal(err.nonRetryable, true);
    const stopped = err.details?.[0] as DeliveryStopped;
    assert.match(stopped.error.message, new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${port}`));
    assert.equal(stopped.error.replyCode, null);
    assert.equal(stopped.delivered, 0);
    return true;
  });
  const [{ n }] =
    (await sql`select count(*)::int as n from delivery_ledger d join held_recipient r using (message_id, recipient)
                             where r.customer_id = ${runbook.id}`) as unknown as [{ n: number }];
  assert.equal(n, 0);
});

test('forward: one copy per message to the mailbox, our signed return path, our ARC set, then the original bytes', async () => {
  const gmail = await startCatcher();
  const runbook = uniqueRunbook('harborview-law');
  const [a, b] = runbook.recipients as string[];
  try {
    const raw = await hold(runbook, [a!, b!], 'forwarded');
    const env = { MXF_SMTP_RELAY: `127.0.0.1:${gmail.port}` };
    const target: DeliveryTarget = { kind: 'forward', to: ['harborview.backup@gmail.example'] };
    assert.deepEqual(await deliver(runbook, target, env), { delivered: 2, failed: 0, remaining: 0 });
    assert.equal(gmail.caught.length, 1);
    const copy = gmail.caught[0]!;
    assert.ok(arcSealedBy(copy.raw, FORWARDING_DOMAIN), 'sealed by our forwarding domain');
    assert.ok(stripArcSet(copy.raw).equals(raw), 'the stored bytes, unchanged, after the ARC set');
    const [{ id }] =
      (await sql`select m.id::text as id from held_message m join held_recipient r on r.message_id = m.id
                                where r.customer_id = ${runbook.id}`) as unknown as [{ id: string }];
    const key = { domain: FORWARDING_DOMAIN, secret: returnPathSecret(testConfig()) };
    assert.deepEqual(parseReturnPath(key, copy.from), {
      ok: true,
      messageId: id,
      targetHash: targetHashOf(targetKey(target, runbook)),
    });
    assert.deepEqual(gmail.caught[0]!.to, ['harborview.backup@gmail.example']);
    // Delivered by forwarding, it is no longer held: a later restore does not send it again.
    const primary = await startCatcher();
    try {
      assert.deepEqual(await deliver(withPrimary(runbook, primary.port), { kind: 'primary' }), {
        delivered: 0,
        failed: 0,
        remaining: 0,
      });
    } finally {
      await primary.close();
    }
  } finally {
    await gmail.close();
  }
});

test('redirect: another server gets the original envelope and bytes; the ledger names it as the target', async () => {
  const dr = await startCatcher();
  const runbook = uniqueRunbook('harborview-law');
  const [a] = runbook.recipients as string[];
  try {
    const raw = await hold(runbook, [a!], 'redirected');
    const target: DeliveryTarget = { kind: 'redirect', host: '127.0.0.1', port: dr.port, requireTls: false };
    assert.deepEqual(await deliver(runbook, target), { delivered: 1, failed: 0, remaining: 0 });
    assert.ok(dr.caught[0]!.raw.equals(raw));
    assert.equal(dr.caught[0]!.from, 'sender@origin.example');
    assert.deepEqual(dr.caught[0]!.to, [a]);
    const [row] =
      await sql`select target from delivery_ledger d join held_recipient r using (message_id, recipient)
                            where r.customer_id = ${runbook.id}`;
    assert.equal(row!.target, `redirect:127.0.0.1:${dr.port}`);
  } finally {
    await dr.close();
  }
});

test('recipients are matched as stored, whatever form the server reports them in; a refused one is no longer held', async () => {
  const primary = await startCatcher({ refuse: (rcpt) => (rcpt.startsWith('gone') ? 550 : undefined) });
  const base = uniqueRunbook('meridian-freight'); // recipients: any
  const runbook = withPrimary(base, primary.port);
  const domain = base.domains[0]!;
  const mixed = `Dispatch@${domain.toUpperCase()}`;
  try {
    await hold(runbook, [mixed, `gone@${domain}`], 'case');
    assert.deepEqual(await deliver(runbook, { kind: 'primary' }), { delivered: 1, failed: 1, remaining: 0 });
    assert.deepEqual(await deliver(runbook, { kind: 'primary' }), { delivered: 0, failed: 0, remaining: 0 });
    assert.equal(primary.caught.length, 1, 'sent once');
    assert.equal(await countHeldMessages(sql, runbook.id), 0, 'delivered or refused for good: nothing held');
  } finally {
    await primary.close();
  }
});

test('a 4xx for one recipient: the other goes through and the deferral is reported; alone, it stops the batch', async () => {
  const base = uniqueRunbook('harborview-law');
  const [a, b] = base.recipients as string[];
  const primary = await startCatcher({ refuse: (rcpt) => (rcpt === b ? 450 : undefined) });
  const runbook = withPrimary(base, primary.port);
  try {
    await hold(runbook, [a!, b!], 'greylisted');
    const first = await deliverBatch(runbook, { kind: 'primary' });
    assert.equal(first.delivered, 1);
    assert.equal(first.failed, 0);
    assert.equal(first.remaining, 1, 'the deferred recipient is still held');
    assert.equal(first.deferred?.recipients, 1);
    assert.equal(first.deferred?.error.replyCode, 450);
    await assert.rejects(deliverBatch(runbook, { kind: 'primary' }), (err: ApplicationFailure) => {
      const stopped = err.details?.[0] as DeliveryStopped;
      assert.equal(err.type, DELIVERY_DEFERRED);
      assert.equal(stopped.error.replyCode, 450);
      assert.match(stopped.error.message, /^450 /);
      return true;
    });
  } finally {
    await primary.close();
  }
});

test('a batch keeps one segment in memory at a time: a segment is dropped once its last message is read', async () => {
  const config = testConfig();
  const bodies = ['one', 'two', 'three', 'four'].map((w) => Buffer.from(`Subject: ${w}\r\n\r\n${w}\r\n`));
  const segment = async (parts: Buffer[]) => {
    const key = `held/test/segment-${randomUUID()}`;
    const whole = Buffer.concat(parts);
    await objects.putObject(config.s3.bucket, key, whole, whole.length);
    let offset = 0;
    return parts.map((p) => {
      const ref = { object_key: key, body_offset: String(offset), size_bytes: String(p.length) };
      offset += p.length;
      return ref;
    });
  };
  const batch = [...(await segment(bodies.slice(0, 3))), ...(await segment(bodies.slice(3)))];
  const reader = new BatchBodies(objects, config.s3.bucket, batch);
  const read: Buffer[] = [];
  const held: number[] = [];
  for (const m of batch) {
    read.push(await reader.read(m));
    held.push(reader.segmentsInMemory);
  }
  assert.deepEqual(read.map(String), bodies.map(String), 'each body, byte for byte');
  // The first segment stays while two of its messages are unread, and goes with its last; the second segment
  // holds one message and is read by itself.
  assert.deepEqual(held, [1, 1, 0, 0]);
});

test("forward by MX: a message over the receiver's SIZE is reported there and stays held for the customer's server", async () => {
  const gmail = await startGmail({ size: 4_000 });
  const runbook = uniqueRunbook('harborview-law');
  const [a] = runbook.recipients as string[];
  try {
    await hold(runbook, [a!], 'small');
    await hold(runbook, [a!], 'large', `${'x'.repeat(998)}\r\n`.repeat(10));
    const target: DeliveryTarget = { kind: 'forward', to: [`it@${GMAIL_DOMAIN}`] };
    const result = await deliverBatch(runbook, target);
    assert.equal(result.delivered, 1);
    assert.equal(result.failed, 1);
    assert.match(result.refused[0]!.reply, /size/i, 'the reason says it is too big');
    assert.deepEqual(
      gmail.kept.map((k) => /Subject: (\w+)/.exec(k.raw.toString())?.[1]),
      ['small'],
    );
    assert.equal(await countHeldMessages(sql, runbook.id), 1, 'the large one waits for the restore');
  } finally {
    await gmail.close();
  }
});

import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import pino from 'pino';
import { outageWorkflowId } from '../src/domain/outage';
import { ORPHAN_AGE_MS, sweepOrphanBodies } from '../src/ingest/reconciler';
import { startMinio } from '../src/stack/minio';
import { ensureDatabase, startPrivatePostgres } from '../src/stack/postgres';
import type { ManagedProcess } from '../src/stack/process';
import { startTemporalDevServer } from '../src/stack/temporal';
import { createSql } from '../src/store/db';
import { migrate } from '../src/store/migrate';
import { createObjectStore, ensureBucket, type ObjectStore } from '../src/store/objects';
import { statusQuery } from '../src/workflows/messages';
import { eventually } from './helpers/eventually';
import { readHeld, startIngest, type TestIngest, uniqueRunbook } from './helpers/ingest';
import { freePort } from './helpers/ports';
import { descendants } from './helpers/procs';
import { transaction } from './helpers/smtp-client';
import { testConfig, testTmp } from './helpers/stack';
import { withWorker } from './helpers/temporal';

// Each fault gets components of its own, so stopping or killing one does not disturb the rest of the suite.
const running: ManagedProcess[] = [];
after(() => Promise.all(running.map((p) => p.stop())));

const runbook = uniqueRunbook('harborview-law');
const to = [(runbook.recipients as string[])[0]!];
const send = (port: number) =>
  transaction(port, { from: 'sender@example.net', to, data: 'Subject: fault\r\n\r\nhello' });
const dir = (name: string) => {
  const path = join(testTmp(), `${name}-${randomUUID().slice(0, 8)}`);
  mkdirSync(path, { recursive: true });
  return path;
};
const LOCAL_ERROR = '451 4.3.0 Local error in processing; the message was not stored, please try again later';
const queueIdOf = (reply: string) => /queued as ([0-9A-Z]+)/.exec(reply)?.[1];

async function objectCount(objects: ObjectStore, bucket: string): Promise<number> {
  let n = 0;
  for await (const _ of objects.listObjectsV2(bucket, 'held/', true)) n++;
  return n;
}

/** A component of the test's own, which it stops or kills and then starts again on the same data. */
interface Own {
  port: number;
  proc: ManagedProcess;
  restart(): Promise<void>;
}

async function own(port: number, start: () => Promise<ManagedProcess>): Promise<Own> {
  const component: Own = {
    port,
    proc: await start(),
    async restart() {
      component.proc = await start();
      running.push(component.proc);
    },
  };
  running.push(component.proc);
  return component;
}

/** A private PostgreSQL with a migrated database `faults`; `ephemeral` is npm test's fsync off. */
async function ownPostgres(opts: { ephemeral: boolean }) {
  const pgDir = dir('pg');
  const port = await freePort();
  const pg = await own(port, () =>
    startPrivatePostgres({ dir: pgDir, port, logFile: join(pgDir, 'pg.log'), ephemeral: opts.ephemeral }),
  );
  const url = (database: string) => `postgres://postgres@127.0.0.1:${port}/${database}`;
  await ensureDatabase(url('postgres'), 'faults');
  const setup = createSql(testConfig({ DATABASE_URL: url('faults') }), { max: 1 });
  await migrate(setup).finally(() => setup.end());
  return Object.assign(pg, { url: url('faults') }); // the same object: restart() replaces its proc
}

/** A private MinIO with the test bucket in it. */
async function ownMinio() {
  const minioDir = dir('minio');
  const [port, consolePort] = [await freePort(), await freePort()];
  const { s3 } = testConfig();
  const minio = await own(port, () =>
    startMinio({
      dir: minioDir,
      port,
      consolePort,
      accessKey: s3.accessKey,
      secretKey: s3.secretKey,
      logFile: join(minioDir, 'minio.log'),
    }),
  );
  const config = testConfig({ MXF_S3_ENDPOINT: `http://127.0.0.1:${port}` });
  await ensureBucket(createObjectStore(config), config);
  return minio;
}

/** kill -9 of a server and of every process it started (PostgreSQL's backends), as a crash would take them. */
async function crash(proc: ManagedProcess): Promise<void> {
  // A kill that hits nothing proves nothing (and the pid of a process gone may belong to someone else by now).
  assert.ok(proc.child.exitCode === null && proc.child.signalCode === null, `${proc.name} is not running`);
  const root = proc.child.pid!;
  // The server first, at once; then what it started, which reading /proc takes a few milliseconds to find.
  const family = [root];
  for (let i = 0; i < family.length; i++) {
    try {
      process.kill(family[i]!, 'SIGKILL');
    } catch {
      // gone already
    }
    if (i === 0) family.push(...descendants(root));
  }
  await proc.exited;
}

interface Sent {
  messageId: string;
  data: Buffer;
  reply: string;
}

/** A message with a Message-ID of its own, by which its row is found even when its sender got no queue id. */
function uniqueMessage(label: string, bodyBytes = 0): Omit<Sent, 'reply'> {
  const messageId = `<${label}-${randomUUID()}@faults.test>`;
  const line = `${'x'.repeat(998)}\r\n`;
  const body = bodyBytes > 0 ? line.repeat(Math.ceil(bodyBytes / line.length)) : `${label}\r\n`;
  return { messageId, data: Buffer.from(`Message-ID: ${messageId}\r\nSubject: ${label}\r\n\r\n${body}`) };
}

/**
 * The promise, checked from storage: each 250 has its row; each row of these messages has its body, which reads
 * back as our Received header followed by exactly the bytes sent. A row for a message that got a 4xx is allowed
 * (the database committed and died before the ingest heard of it): the sender's retry is a second copy, never a
 * loss. Returns the counts, for the caller to say which of them it expects.
 */
async function verifyHeld(ingest: TestIngest, sent: Sent[]) {
  const rows = await ingest.sql<
    {
      queue_id: string;
      message_id: string;
      object_key: string;
      body_offset: string;
      size_bytes: string;
      sha256: Buffer;
    }[]
  >`select queue_id, message_id, object_key, body_offset, size_bytes, sha256 from held_message
    where message_id in ${ingest.sql(sent.map((m) => m.messageId))}`;
  let refusedButHeld = 0;
  for (const m of sent) {
    const mine = rows.filter((r) => r.message_id === m.messageId);
    assert.ok(mine.length <= 1, `${m.messageId}: one row at most, got ${mine.length}`);
    const row = mine[0];
    const acknowledged = m.reply.startsWith('250 ');
    if (acknowledged) assert.equal(row?.queue_id, queueIdOf(m.reply), `${m.messageId}: the 250's row`);
    if (!row) continue;
    if (!acknowledged) refusedButHeld++;
    const stored = await readHeld(ingest, row);
    assert.equal(
      createHash('sha256').update(stored).digest('hex'),
      row.sha256.toString('hex'),
      `${m.messageId}: the bytes match the row's SHA-256`,
    );
    const sentBytes = Buffer.concat([m.data, Buffer.from('\r\n')]); // the CRLF before the final dot is the message's
    const received = stored.subarray(0, Math.max(0, stored.length - sentBytes.length)).toString('latin1');
    assert.match(received, /^Received: [^\r\n]*(\r\n\t[^\r\n]*)*\r\n$/, `${m.messageId}: our header first`);
    assert.ok(stored.subarray(received.length).equals(sentBytes), `${m.messageId}: then the bytes sent`);
  }
  const acknowledged = sent.filter((m) => m.reply.startsWith('250 ')).length;
  return { acknowledged, held: rows.length, refusedButHeld };
}

test('PostgreSQL down: 451 4.3.0 and no half-stored message; back up: accepted again', async () => {
  const pg = await ownPostgres({ ephemeral: true });
  const bucket = `faults-${randomUUID().slice(0, 8)}`;
  const env = { DATABASE_URL: pg.url, MXF_S3_BUCKET: bucket };
  const config = testConfig(env);
  const objects = createObjectStore(config);
  await ensureBucket(objects, config);
  const ingest = await startIngest([runbook], { env });
  try {
    assert.match((await send(ingest.port)).end!, /^250 /);
    await pg.proc.stop();
    const down = await send(ingest.port);
    assert.equal(down.end, LOCAL_ERROR, 'a temporary failure, never a 5xx');
    await pg.restart();
    assert.match((await send(ingest.port)).end!, /^250 /);
    const [{ n }] = (await ingest.sql`select count(*)::int as n from held_message`) as unknown as [
      { n: number },
    ];
    assert.equal(n, 2, 'exactly the two acknowledged messages are held');
    // The refused message's body was stored before its commit failed; the orphan sweep removes it.
    assert.equal(await objectCount(objects, bucket), 3);
    const later = Date.now() + ORPHAN_AGE_MS + 60_000;
    const swept = await sweepOrphanBodies(
      { sql: ingest.sql, objects, config, log: pino({ level: 'silent' }) },
      later,
    );
    assert.deepEqual(swept, { skipped: false, removed: 1 });
    assert.equal(await objectCount(objects, bucket), 2);
  } finally {
    await ingest.close();
  }
});

test('MinIO down: 451 4.3.0 and no row; back up: accepted again, and each accepted body reads back as sent', async () => {
  const minio = await ownMinio();
  const faultRunbook = uniqueRunbook('harborview-law');
  const faultTo = [(faultRunbook.recipients as string[])[0]!];
  const ingest = await startIngest([faultRunbook], {
    env: { MXF_S3_ENDPOINT: `http://127.0.0.1:${minio.port}` },
  });
  const held = async () => {
    const [{ n }] = (await ingest.sql`
      select count(*)::int as n from held_recipient where customer_id = ${faultRunbook.id}`) as unknown as [
      { n: number },
    ];
    return n;
  };
  const sent: Sent[] = [];
  const sendHere = async (label: string) => {
    const message = uniqueMessage(label);
    const r = await transaction(ingest.port, { from: 'a@example.net', to: faultTo, data: message.data });
    sent.push({ ...message, reply: r.end! });
    return r.end!;
  };
  try {
    assert.match(await sendHere('before'), /^250 /);
    await minio.proc.stop();
    assert.equal(await sendHere('down'), LOCAL_ERROR);
    assert.equal(await held(), 1, 'no row for a body that was not stored');
    await minio.restart();
    assert.match(await sendHere('after'), /^250 /);
    assert.equal(await held(), 2);
    // Each 250's body, read back from the restarted MinIO, is what was sent.
    assert.deepEqual(await verifyHeld(ingest, sent), { acknowledged: 2, held: 2, refusedButHeld: 0 });
  } finally {
    await ingest.close();
  }
});

/**
 * A TCP relay in front of PostgreSQL or MinIO that times a kill to a moment inside a commit. `arm` names bytes to
 * watch for in one direction (`up`, from the ingest; `down`, to it) and what to do once they pass: with `pass` they
 * reach the server first (the statement or upload has arrived), without it they are held back (the request never
 * arrives, or the server's answer never reaches the ingest). The relay never changes a byte it passes on.
 */
class Relay {
  private armed?: { direction: 'up' | 'down'; pattern: Buffer; pass: boolean; fire: () => void };

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(targetPort: number): Promise<Relay> {
    const port = await freePort();
    let relay: Relay | undefined;
    const server = createServer((client) => relay!.join(client, connect(targetPort, '127.0.0.1')));
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    relay = new Relay(server, port);
    return relay;
  }

  /** Resolves once `action` has run, after the bytes were seen; `action` usually kills the server. */
  arm(
    direction: 'up' | 'down',
    pattern: string,
    opts: { pass: boolean },
    action: () => Promise<void>,
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      this.armed = {
        direction,
        pattern: Buffer.from(pattern),
        pass: opts.pass,
        fire: () => action().then(resolve, reject),
      };
    });
  }

  private join(client: Socket, upstream: Socket) {
    const end = () => {
      client.destroy();
      upstream.destroy();
    };
    for (const s of [client, upstream]) s.on('error', end).on('close', end);
    this.pipe(client, upstream, 'up');
    this.pipe(upstream, client, 'down');
  }

  private pipe(from: Socket, to: Socket, direction: 'up' | 'down') {
    let tail = Buffer.alloc(0); // the end of the last chunk, so that a pattern split across two is still seen
    from.on('data', (chunk: Buffer) => {
      const seen = Buffer.concat([tail, chunk]);
      tail = seen.subarray(-256);
      const trap = this.armed;
      // Only a match that reaches into this chunk: one wholly in the tail was passed on before.
      const start = Math.max(0, seen.length - chunk.length - (trap?.pattern.length ?? 0) + 1);
      if (trap?.direction !== direction || seen.indexOf(trap.pattern, start) === -1) {
        to.write(chunk);
        return;
      }
      this.armed = undefined;
      if (trap.pass) to.write(chunk, () => trap.fire());
      else trap.fire();
    });
  }

  close() {
    this.server.close();
  }
}

test('kill -9 of PostgreSQL or MinIO inside a commit: a 250 only for a committed message, and no row without its body', async () => {
  // PostgreSQL with fsync on (npm test's own runs with it off), and a MinIO of the test's own, each behind a relay.
  const pg = await ownPostgres({ ephemeral: false });
  const minio = await ownMinio();
  const pgRelay = await Relay.start(pg.port);
  const s3Relay = await Relay.start(minio.port);
  const env = {
    DATABASE_URL: `postgres://postgres@127.0.0.1:${pgRelay.port}/faults`,
    MXF_S3_ENDPOINT: `http://127.0.0.1:${s3Relay.port}`,
  };
  const bucket = testConfig(env).s3.bucket;
  // Each case: where the kill is timed (the relay, the bytes and whether they pass first), whom it kills, the reply
  // the sender must get and whether the message is held afterwards (undefined: either, for the one real race).
  const commitStatement = 'insert into held_message';
  const cases: {
    what: string;
    bodyBytes?: number;
    at: [Relay, 'up' | 'down', string, { pass: boolean }];
    kill: Own;
    reply?: string | RegExp;
    held?: boolean;
  }[] = [
    {
      what: 'PostgreSQL killed, the commit statement held back',
      at: [pgRelay, 'up', commitStatement, { pass: false }],
      kill: pg,
      reply: LOCAL_ERROR,
      held: false,
    },
    // The race every database client has: the statement arrived, and the kill lands before, during or after its
    // commit. The reply may be 451 or 250, and verifyHeld holds either to its promise.
    {
      what: 'PostgreSQL killed as the commit statement arrived',
      at: [pgRelay, 'up', commitStatement, { pass: true }],
      kill: pg,
    },
    // PostgreSQL sends "INSERT 0 1" with ReadyForQuery, once the implicit transaction has committed. The ingest
    // cannot know that it did, so it may not promise; the sender's retry will be a second copy, never a loss. With
    // synchronous_commit off (npm test's PostgreSQL) this commit is lost: held is then false, and the case fails.
    {
      what: 'PostgreSQL killed after it committed, its answer held back',
      at: [pgRelay, 'down', 'INSERT 0 1\0', { pass: false }],
      kill: pg,
      reply: LOCAL_ERROR,
      held: true,
    },
    // 512 KiB, so that the PUT is still arriving when MinIO dies: it cannot have answered.
    {
      what: "MinIO killed as the start of the body's PUT arrived",
      bodyBytes: 512 * 1024,
      at: [s3Relay, 'up', `PUT /${bucket}/held/`, { pass: true }],
      kill: minio,
      reply: LOCAL_ERROR,
      held: false,
    },
    {
      what: 'MinIO killed as part 2 of a 12 MiB upload arrived',
      bodyBytes: 12 * 1024 * 1024,
      at: [s3Relay, 'up', 'partNumber=2', { pass: true }],
      kill: minio,
      reply: LOCAL_ERROR,
      held: false,
    },
    // MinIO acknowledged the body (after fdatasync) before the commit began, so the commit goes on without it.
    {
      what: 'MinIO killed as the commit statement reached PostgreSQL',
      at: [pgRelay, 'up', commitStatement, { pass: true }],
      kill: minio,
      reply: /^250 2\.0\.0 Ok: queued as /,
      held: true,
    },
  ];
  const sent: Sent[] = [];
  try {
    for (const c of cases) {
      const [relay, direction, pattern, opts] = c.at;
      const message = uniqueMessage(c.what.replace(/\W+/g, '-'), c.bodyBytes);
      // A fresh ingest, so that its first commit opens a connection and sends the statement's text (later commits
      // on that connection would send only the prepared statement's name).
      const ingest = await startIngest([runbook], { env });
      try {
        const killed = relay.arm(direction, pattern, opts, () => crash(c.kill.proc));
        // A kill that fails (nothing to kill) fails the case at once, instead of leaving the ingest to wait on a
        // relay that holds back its bytes.
        const r = await Promise.race([
          transaction(ingest.port, { from: 'sender@example.net', to, data: message.data }),
          killed.then(() => new Promise<never>(() => {})),
        ]);
        sent.push({ ...message, reply: r.end! });
        const fired = await Promise.race([killed.then(() => true), sleep(10_000).then(() => false)]);
        assert.ok(fired, `${c.what}: the kill was never triggered (reply ${r.end})`);
        if (typeof c.reply === 'string') assert.equal(r.end, c.reply, c.what);
        else if (c.reply) assert.match(r.end!, c.reply, c.what);
      } finally {
        await ingest.close();
        await c.kill.restart();
      }
    }

    // Everything restarted: the ingest takes mail again, and storage keeps each promise.
    const ingest = await startIngest([runbook], { env });
    try {
      const last = uniqueMessage('after-all');
      const r = await transaction(ingest.port, { from: 'sender@example.net', to, data: last.data });
      assert.match(r.end!, /^250 /);
      sent.push({ ...last, reply: r.end! });
      const held = await Promise.all(
        cases.map(async (_, i) => {
          const rows = await ingest.sql`select 1 from held_message where message_id = ${sent[i]!.messageId}`;
          return rows.length;
        }),
      );
      const table = cases.map(
        (c, i) => `  ${c.what}: ${sent[i]!.reply.slice(0, 9)}, ${held[i] ? 'held' : 'no row'}`,
      );
      console.log(`kill -9 inside a commit (each row's body read back and compared):\n${table.join('\n')}`);
      for (const [i, c] of cases.entries())
        if (c.held !== undefined) assert.equal(held[i], c.held ? 1 : 0, `${c.what}: held`);
      await verifyHeld(ingest, sent);
    } finally {
      await ingest.close();
    }
  } finally {
    pgRelay.close();
    s3Relay.close();
  }
});

test('Temporal down: mail is still accepted, and the outage workflow learns of it once Temporal is back', async () => {
  const temporalPort = await freePort();
  const address = `127.0.0.1:${temporalPort}`;
  const logs = dir('temporal');
  const startTemporal = () =>
    startTemporalDevServer({ port: temporalPort, namespace: 'default', logFile: join(logs, 'temporal.log') });
  const env = { TEMPORAL_ADDRESS: address, MXF_TASK_QUEUE: `faults-${randomUUID()}`, MXF_DOORBELL_MS: '100' };
  const config = testConfig(env);
  const client = new Client({ connection: Connection.lazy({ address }), namespace: 'default' });
  const ingest = await startIngest([runbook], { env, temporal: client });
  const doorbell = ingest.doorbell!;
  try {
    const started = Date.now();
    assert.match((await send(ingest.port)).end!, /^250 /, 'accepted with Temporal unreachable');
    assert.ok(Date.now() - started < 2_000, 'the 250 does not wait for Temporal');
    await eventually(
      'the doorbell keeps the ring pending',
      async () => doorbell.unsent(),
      (u) => u.includes(runbook.id),
    );

    running.push(await startTemporal());
    await withWorker(
      { address, namespace: 'default', taskQueue: config.temporal.taskQueue, sql: ingest.sql },
      async () => {
        const handle = client.workflow.getHandle(outageWorkflowId(runbook.id));
        const status = await eventually(
          'the workflow counts the held mail',
          () => handle.query(statusQuery),
          (s) => s.heldMessages >= 1,
          60_000,
        );
        assert.equal(status.customerId, runbook.id);
        await handle.terminate('test finished');
      },
    );
  } finally {
    await ingest.close();
    await client.connection.close();
  }
});

import { createHash, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { HeldMessage } from '../../src/domain/message';
import type { Sql } from '../../src/store/db';
import { commitHeldMessage } from '../../src/store/messages';
import { BodyWriter, createObjectStore } from '../../src/store/objects';
import { heldMessage } from './fixtures';
import { testConfig } from './stack';

/** A backlog held as ingest holds it (bodies in MinIO, rows in PostgreSQL), without going through SMTP. */
export interface Backlog {
  /** Message-ID header of each message, in arrival order. */
  messageIds: string[];
  /** Message-ID header by held_message id, to tell which message the ledger records. */
  byRowId: Map<string, string>;
}

/**
 * Holds `count` small messages for `recipients`, each with its own Message-ID, in arrival order. Bodies go up a
 * few at a time so that BodyWriter packs them into shared segments, as it does under load. They are held as the
 * scorer leaves clean mail (scored, score 0), so that tests of delivery do not wait for the filter; `unscored`
 * holds them as ingest leaves them.
 */
export async function holdBacklog(
  sql: Sql,
  customerId: string,
  recipients: string[],
  count: number,
  opts: {
    unscored?: boolean;
    /** The stored bytes of message i (our Received header first, as ingest stores them); a bare one by default. */
    compose?: (i: number, messageId: string) => Promise<Buffer>;
    /** The SMTP session that brought them (sender authentication is judged on it). */
    origin?: Partial<Pick<HeldMessage, 'envelopeFrom' | 'clientIp' | 'helo'>>;
  } = {},
): Promise<Backlog> {
  const config = testConfig();
  const bodies = new BodyWriter(createObjectStore(config), config.s3.bucket);
  const messageIds = Array.from({ length: count }, (_, i) => `backlog-${i}-${randomUUID()}@test`);
  const stored = [];
  const AT_ONCE = 25;
  for (let start = 0; start < count; start += AT_ONCE) {
    const group = messageIds.slice(start, start + AT_ONCE).map(async (messageId, i) => {
      const raw = opts.compose
        ? await opts.compose(start + i, messageId)
        : Buffer.from(`Subject: backlog ${start + i}\r\nMessage-ID: <${messageId}>\r\n\r\nheld\r\n`);
      const ref = await bodies.put(`held/test/${randomUUID()}.eml`, Readable.from([raw]), 1 << 20);
      return { ref, sha256: createHash('sha256').update(raw).digest('hex') };
    });
    stored.push(...(await Promise.all(group)));
  }
  const byRowId = new Map<string, string>();
  // Committed one by one, in order: the ledger and delivery follow the row ids.
  for (const [i, { ref, sha256 }] of stored.entries()) {
    const id = await commitHeldMessage(
      sql,
      heldMessage(customerId, recipients, {
        objectKey: ref.objectKey,
        bodyOffset: ref.offset,
        sizeBytes: ref.length,
        sha256,
        ...opts.origin,
      }),
    );
    byRowId.set(String(id), messageIds[i]!);
  }
  if (!opts.unscored) await markScoredClean(sql, [...byRowId.keys()]);
  return { messageIds, byRowId };
}

/** Held messages as the scorer leaves clean mail, for tests of delivery that do not run the scorer. */
export async function markScoredClean(sql: Sql, ids: (string | number | bigint)[]): Promise<void> {
  if (ids.length === 0) return;
  await sql`update held_message set scored_at = now(), spam_verdict = 'clean', spam_score = 0,
              spam_action = 'no action' where id in ${sql(ids.map(String))}`;
}

import type { HeldMessage } from '../domain/message';
import type { Sql } from './db';

/**
 * A commit still queued or running after this is cancelled (the ingest answers 451). Far under the orphan sweep's
 * age, so the sweep never removes a body whose row is about to commit.
 */
export const COMMIT_TIMEOUT_MS = 30_000;

/**
 * The message and its recipients, atomically: one statement (a data-modifying CTE is one implicit transaction),
 * one round trip instead of BEGIN, two INSERTs and COMMIT. A 250 follows only when this resolves.
 */
export async function commitHeldMessage(
  sql: Sql,
  m: HeldMessage,
  timeoutMs = COMMIT_TIMEOUT_MS,
): Promise<string> {
  const query = sql<{ message_id: string }[]>`
    with message as (
      insert into held_message (queue_id, envelope_from, size_bytes, sha256, object_key, body_offset, received_at,
                                client_ip, helo, tls, message_id, subject)
      values (${m.queueId}, ${m.envelopeFrom}, ${m.sizeBytes}, ${Buffer.from(m.sha256, 'hex')}, ${m.objectKey},
              ${m.bodyOffset}, ${m.receivedAt}, ${m.clientIp}, ${m.helo}, ${m.tls}, ${m.messageId}, ${m.subject})
      returning id)
    insert into held_recipient (message_id, recipient, customer_id)
    select message.id, r.address, r."customerId"
    from message, jsonb_to_recordset(${sql.json(m.recipients)}) as r (address text, "customerId" text)
    returning message_id`;
  // statement_timeout cannot cover a query still waiting for a pooled connection; cancel covers both.
  const timer = setTimeout(() => query.cancel(), timeoutMs);
  try {
    const [row] = await query;
    return row!.message_id;
  } finally {
    clearTimeout(timer);
  }
}

/** Of these object keys, the ones no held message points at. */
export async function unreferencedObjectKeys(sql: Sql, keys: string[]): Promise<string[]> {
  if (keys.length === 0) return [];
  const rows = await sql<
    { object_key: string }[]
  >`select object_key from held_message where object_key = any(${keys})`;
  const referenced = new Set(rows.map((r) => r.object_key));
  return keys.filter((k) => !referenced.has(k));
}

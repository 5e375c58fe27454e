import type { HeldMessage } from '../domain/message';
import type { Sql } from './db';

/**
 * The message and its recipients, atomically: one statement (a data-modifying CTE is one implicit transaction),
 * one round trip instead of BEGIN, two INSERTs and COMMIT. A 250 follows only when this resolves.
 */
/**
 * A commit still queued or running after this is cancelled (the ingest answers 451). Far under the orphan sweep's
 * age, so the sweep never removes a body whose row is about to commit.
 */
export const COMMIT_TIMEOUT_MS = 30_000;

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

// Held: neither delivered anywhere nor refused for good (a 5xx, listed in the outage's failed count). A recipient
// the primary refuses permanently must not keep an outage open, nor make the reconciler ring for ever.
const undelivered = (sql: Sql) => sql`
  not exists (select 1 from delivery_ledger d where d.message_id = r.message_id and d.recipient = r.recipient)`;

/** Held messages of a customer that still have a recipient no delivery has taken care of. */
export async function countHeldMessages(sql: Sql, customerId: string): Promise<number> {
  const [row] = await sql<{ n: number }[]>`
    select count(distinct r.message_id)::int as n from held_recipient r
    where r.customer_id = ${customerId} and ${undelivered(sql)}`;
  return row?.n ?? 0;
}

/** Customers with at least one recipient that no delivery has taken care of yet. */
export async function customersWithHeldMail(sql: Sql): Promise<string[]> {
  const rows = await sql<{ customer_id: string }[]>`
    select distinct r.customer_id from held_recipient r where ${undelivered(sql)}`;
  return rows.map((r) => r.customer_id);
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

/** Held messages per customer, for the customers' overview. */
export async function heldCountsByCustomer(sql: Sql): Promise<Map<string, number>> {
  const rows = await sql<{ customer_id: string; n: number }[]>`
    select r.customer_id, count(distinct r.message_id)::int as n from held_recipient r
    where ${undelivered(sql)} group by r.customer_id`;
  return new Map(rows.map((r) => [r.customer_id, r.n]));
}

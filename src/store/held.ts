import { PRIMARY_TARGET_KEY_SQL_PREFIX, primaryTargetKey } from '../domain/delivery';
import type { Sql } from './db';

// The one definition of "held" (DESIGN 4). A recipient of a held message is held for a target until a copy of it
// has been delivered anywhere, or that target has refused it for good (a 5xx, recorded as failed there). What a
// forward mailbox or a redirect server refused is still held for the customer's own server, so a later restore
// takes it there; what the customer's own server (the primary) refused is held nowhere any more. The status's
// count, the reconciler, the customers' overview and every delivery batch use this fragment and nothing else.

/** For an outage: held for this target key (the primary's when no instruction sends mail anywhere). */
export type HeldFor = { targetKey: string } | 'each-customers-primary';

/** The condition on a `held_recipient r` row. */
export function heldRecipient(sql: Sql, target: HeldFor) {
  const key =
    target === 'each-customers-primary'
      ? sql`${PRIMARY_TARGET_KEY_SQL_PREFIX} || r.customer_id`
      : sql`${target.targetKey}`;
  return sql`not exists (
    select 1 from delivery_ledger d
    where d.message_id = r.message_id and d.recipient = r.recipient
      and (d.outcome = 'delivered' or d.target = ${key}))`;
}

/** Held messages of a customer for a target: what the next delivery there would send. */
export async function countHeldMessages(sql: Sql, customerId: string, targetKey?: string): Promise<number> {
  const held = heldRecipient(sql, { targetKey: targetKey ?? primaryTargetKey(customerId) });
  const [row] = await sql<{ n: number }[]>`
    select count(distinct r.message_id)::int as n from held_recipient r
    where r.customer_id = ${customerId} and ${held}`;
  return row?.n ?? 0;
}

/** Customers with mail held for their own servers: the reconciler rings each one's outage. */
export async function customersWithHeldMail(sql: Sql): Promise<string[]> {
  const rows = await sql<{ customer_id: string }[]>`
    select distinct r.customer_id from held_recipient r where ${heldRecipient(sql, 'each-customers-primary')}`;
  return rows.map((r) => r.customer_id);
}

/** Messages held for each customer's own servers, for the customers' overview. */
export async function heldCountsByCustomer(sql: Sql): Promise<Map<string, number>> {
  const rows = await sql<{ customer_id: string; n: number }[]>`
    select r.customer_id, count(distinct r.message_id)::int as n from held_recipient r
    where ${heldRecipient(sql, 'each-customers-primary')} group by r.customer_id`;
  return new Map(rows.map((r) => [r.customer_id, r.n]));
}

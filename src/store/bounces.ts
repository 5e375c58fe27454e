import type { Sql } from './db';

// Bounces of forwarded copies, in the delivery ledger. A bounce turns the copy's 'delivered' rows into 'failed'
// ones at that target, which by store/held.ts's definition holds the message again for the customer's own
// server: the restore takes it there. Nothing is deleted.

/** The targets the ledger has rows for, for a held message; null when there is no such message. */
export async function ledgerTargetsOf(sql: Sql, messageId: string): Promise<string[] | null> {
  const rows = await sql<{ target: string | null }[]>`
    select distinct d.target from held_message m left join delivery_ledger d on d.message_id = m.id
    where m.id = ${messageId}`;
  if (rows.length === 0) return null;
  return rows.flatMap((r) => (r.target === null ? [] : [r.target]));
}

/**
 * Marks the copies of a message delivered at these targets as failed, with what the bounce said. Rows already
 * failed keep their first reason, so a bounce sent twice changes nothing. Returns the customers whose rows changed.
 */
export async function recordBounce(
  sql: Sql,
  messageId: string,
  targets: string[],
  smtpResponse: string,
): Promise<string[]> {
  if (targets.length === 0) return [];
  const changed = await sql<{ customer_id: string }[]>`
    update delivery_ledger d set outcome = 'failed', smtp_response = ${smtpResponse}, recorded_at = now()
    from held_recipient r
    where d.message_id = ${messageId} and d.target = any(${targets}::text[]) and d.outcome = 'delivered'
      and r.message_id = d.message_id and r.recipient = d.recipient
    returning r.customer_id`;
  return [...new Set(changed.map((c) => c.customer_id))];
}

import { PRIMARY_TARGET_KEY_SQL_PREFIX, primaryTargetKey } from '../domain/delivery';
import type { Runbook } from '../domain/runbook';
import { SCORE_ATTEMPTS, type SpamCounts, type SpamGate, spamPolicySchema } from '../domain/spam';
import type { Sql } from './db';

// The one definition of "held" (DESIGN 4). A recipient of a held message is held for a target until a copy of it
// has been delivered anywhere, or that target has refused it for good (a 5xx, recorded as failed there). What a
// forward mailbox or a redirect server refused is still held for the customer's own server, so a later restore
// takes it there; what the customer's own server (the primary) refused is held nowhere any more. The status's
// count, the reconciler, the customers' overview and every delivery batch use these fragments and nothing else.
//
// Spam narrows it per message (src/domain/spam.ts): an outside target (forward, redirect) takes only scored mail
// that is not quarantined, unless the instruction lets unscored mail go; the customer's own servers take unscored
// mail (their own filter sees it as it would without us) and quarantined mail only under restoreQuarantined
// 'deliver-tagged'. Mail an operator marked as spam goes nowhere, ever; released mail is clean.

/** For an outage: held for this target key (the primary's when no instruction sends mail anywhere). */
export type HeldFor = { targetKey: string } | 'each-customers-primary';

/** The condition on a `held_recipient r` row. */
export function heldRecipient(sql: Sql, target: HeldFor) {
  const key =
    target === 'each-customers-primary'
      ? sql`${PRIMARY_TARGET_KEY_SQL_PREFIX} || r.customer_id`
      : sql`${target.targetKey}`;
  // A temporary mailbox holds copies of what is held for the customer's own servers: what their server refused for
  // good is not copied either (target mailbox:<customer>, never a delivery; see migrations/006).
  return sql`not exists (
    select 1 from delivery_ledger d
    where d.message_id = r.message_id and d.recipient = r.recipient
      and (d.outcome = 'delivered' or d.target = ${key}
           or (${key} like 'mailbox:%' and d.target = ${PRIMARY_TARGET_KEY_SQL_PREFIX} || r.customer_id)))`;
}

/**
 * The operator's review overrides the filter's verdict. On a `held_message m` row. Never null (unscored, unreviewed
 * rows have nulls in both columns), so that `not` of it means "not quarantined".
 */
export const quarantinedMessage = (sql: Sql) =>
  sql`(m.spam_review is not distinct from 'spam'
       or (m.spam_verdict is not distinct from 'quarantined' and m.spam_review is null))`;

/** The spam condition on a `held_message m` row: may this delivery take it? */
export function deliverable(sql: Sql, gate: SpamGate) {
  const quarantined = quarantinedMessage(sql);
  // What people wrote in temporary mailboxes is held for their own servers (their sent copies, colleagues' mail):
  // never forwarded or redirected to an outside mailbox.
  const notSubmitted = sql`not exists (select 1 from submission s where s.message_id = m.id)`;
  if (gate.outside)
    return gate.deliverUnscored
      ? sql`(not ${quarantined} and ${notSubmitted})`
      : sql`((m.scored_at is not null or m.spam_review is not distinct from 'released') and not ${quarantined}
             and ${notSubmitted})`;
  if (gate.waitForScore)
    // A message the scorer gave up on waits no longer: it goes in unscored, as it would to the primary.
    return sql`((m.scored_at is not null or m.score_attempts >= ${SCORE_ATTEMPTS}
                 or m.spam_review is not distinct from 'released')
                and coalesce(m.spam_review, '') <> 'spam')`;
  return gate.keepQuarantined ? sql`not ${quarantined}` : sql`coalesce(m.spam_review, '') <> 'spam'`;
}

/** Held messages of a customer for a target: what the next delivery there would send. */
export async function countHeldMessages(
  sql: Sql,
  customerId: string,
  targetKey?: string,
  gate: SpamGate = { outside: false },
): Promise<number> {
  const held = heldRecipient(sql, { targetKey: targetKey ?? primaryTargetKey(customerId) });
  const [row] = await sql<{ n: number }[]>`
    select count(distinct r.message_id)::int as n from held_recipient r join held_message m on m.id = r.message_id
    where r.customer_id = ${customerId} and ${held} and ${deliverable(sql, gate)}`;
  return row?.n ?? 0;
}

/** What waits beside the held mail: quarantined, not yet reviewed, not yet scored; and the filter's state. */
export async function countSpam(sql: Sql, customerId: string): Promise<SpamCounts> {
  const held = heldRecipient(sql, { targetKey: primaryTargetKey(customerId) });
  const [counts] = await sql<{ quarantined: number; unreviewed: number; unscored: number }[]>`
    select count(distinct m.id) filter (where ${quarantinedMessage(sql)})::int as quarantined,
           count(distinct m.id) filter (where ${quarantinedMessage(sql)} and m.spam_review is null
             and m.scored_at > coalesce((select q.reviewed_at from quarantine_review q
                                         where q.customer_id = ${customerId}), '-infinity'))::int as unreviewed,
           count(distinct m.id) filter (where m.scored_at is null)::int as unscored
    from held_recipient r join held_message m on m.id = r.message_id
    where r.customer_id = ${customerId} and ${held}`;
  const [filter] = await sql<{ checked_at: Date; failing_since: Date | null; last_error: string | null }[]>`
    select checked_at, failing_since, last_error from filter_health`;
  return {
    quarantined: counts?.quarantined ?? 0,
    unreviewed: counts?.unreviewed ?? 0,
    unscored: counts?.unscored ?? 0,
    filter: filter
      ? {
          checkedAt: filter.checked_at.toISOString(),
          failingSince: filter.failing_since?.toISOString() ?? null,
          lastError: filter.last_error,
        }
      : null,
  };
}

// The reconciler and the overview count what would go to each customer's own servers, as a restore would: marked
// spam never, quarantined mail only where the runbook delivers it tagged. Where a runbook keeps it, ringing for it
// every minute would start an outage that has nothing to deliver.
const primaryHeld = (sql: Sql, keepQuarantined: string[]) =>
  sql`${heldRecipient(sql, 'each-customers-primary')} and coalesce(m.spam_review, '') <> 'spam'
      and not (r.customer_id = any(${keepQuarantined}::text[]) and ${quarantinedMessage(sql)})`;

/** Customers whose runbook keeps quarantined mail from their own servers (spam.restoreQuarantined: keep). */
export const keepingQuarantine = (runbooks: Runbook[]) =>
  runbooks.filter((rb) => spamPolicySchema.parse(rb.spam).restoreQuarantined === 'keep').map((rb) => rb.id);

/** Customers with mail held for their own servers: the reconciler rings each one's outage. */
export async function customersWithHeldMail(sql: Sql, keepQuarantined: string[] = []): Promise<string[]> {
  const rows = await sql<{ customer_id: string }[]>`
    select distinct r.customer_id from held_recipient r join held_message m on m.id = r.message_id
    where ${primaryHeld(sql, keepQuarantined)}`;
  return rows.map((r) => r.customer_id);
}

/** Messages held for each customer's own servers, for the customers' overview. */
export async function heldCountsByCustomer(
  sql: Sql,
  keepQuarantined: string[] = [],
): Promise<Map<string, number>> {
  const rows = await sql<{ customer_id: string; n: number }[]>`
    select r.customer_id, count(distinct r.message_id)::int as n
    from held_recipient r join held_message m on m.id = r.message_id
    where ${primaryHeld(sql, keepQuarantined)} group by r.customer_id`;
  return new Map(rows.map((r) => [r.customer_id, r.n]));
}

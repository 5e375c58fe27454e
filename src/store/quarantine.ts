import { primaryTargetKey } from '../domain/delivery';
import { SCORE_ATTEMPTS, type SenderAuth, type SpamSymbol } from '../domain/spam';
import type { Sql } from './db';
import { heldRecipient, quarantinedMessage } from './held';

// What operators read and decide about spam: a message's score as the scorer stored it, a customer's quarantine,
// and the operator's word on one message (released, or spam). Which mail is held, and which held mail is
// quarantined, come from src/store/held.ts and nowhere else. Nothing here deletes a message or bounces one.

/** The sender authentication the scorer stored, and why its verdict was taken (null for clean mail). */
export type StoredAuth = SenderAuth & { verdictReason?: string | null };

/** A held message's spam columns, as stored. */
export interface StoredSpam {
  scoredAt: string | null;
  verdict: 'clean' | 'quarantined' | null;
  score: number | null;
  action: string | null;
  symbols: Record<string, SpamSymbol> | null;
  auth: StoredAuth | null;
  review: 'released' | 'spam' | null;
  reviewedBy: string | null;
  reviewedAt: string | null;
}

/** The spam columns of a `held_message m` row as one JSON object (a StoredSpam). */
export const storedSpam = (sql: Sql) => sql`jsonb_build_object(
  'scoredAt', to_json(m.scored_at)#>>'{}', 'verdict', m.spam_verdict, 'score', m.spam_score,
  'action', m.spam_action, 'symbols', m.spam_symbols, 'auth', m.auth, 'review', m.spam_review,
  'reviewedBy', m.reviewed_by, 'reviewedAt', to_json(m.reviewed_at)#>>'{}')`;

export interface QuarantinedRow {
  id: string;
  receivedAt: string;
  envelopeFrom: string;
  subject: string | null;
  /** This customer's recipients that still hold it. */
  recipients: string[];
  spam: StoredSpam;
}

/**
 * A customer's quarantined mail that is still held (delivered nowhere, and not refused by their own servers),
 * newest first, paged on the message id; and the record that `actor` has now seen it. Quarantined means what
 * quarantinedMessage says: by the filter's verdict with no review yet, or marked as spam by an operator.
 *
 * The review (quarantine_review.reviewed_at: the newest score shown) means that quarantined mail scored up to then
 * no longer stands in the way of resolving the outage (countSpam's `unreviewed`).
 */
export async function reviewQuarantine(
  sql: Sql,
  q: { customerId: string; cursor?: string; limit: number; actor: string },
): Promise<QuarantinedRow[]> {
  const held = heldRecipient(sql, { targetKey: primaryTargetKey(q.customerId) });
  return sql.begin(async (tx) => {
    const rows = await tx<QuarantinedRow[]>`
      select m.id::text, to_json(m.received_at)#>>'{}' as "receivedAt", m.envelope_from as "envelopeFrom",
             m.subject, array_agg(r.recipient order by r.recipient) as recipients, ${storedSpam(sql)} as spam
      from held_recipient r join held_message m on m.id = r.message_id
      where r.customer_id = ${q.customerId} and ${held} and ${quarantinedMessage(sql)}
        ${q.cursor ? sql`and m.id < ${q.cursor}` : sql``}
      group by m.id
      order by m.id desc
      limit ${q.limit}`;
    // The review reaches as far as the newest score this page showed, never further: a message quarantined after
    // the first page was read (a higher id, a later score) is not on a later page, so it stays unreviewed.
    const shown = rows.map((r) => r.id);
    if (shown.length > 0)
      await tx`
        insert into quarantine_review (customer_id, reviewed_at, actor)
        select ${q.customerId}, max(scored_at), ${q.actor} from held_message where id in ${tx(shown)}
        on conflict (customer_id) do update
          set reviewed_at = greatest(quarantine_review.reviewed_at, excluded.reviewed_at), actor = excluded.actor`;
    return [...rows];
  });
}

export type Review = 'released' | 'spam';

export type ReviewOutcome =
  /** The review is recorded (changed), or was already (unchanged: a retry, or a second operator). */
  | { kind: 'changed' | 'unchanged'; spam: StoredSpam; customerIds: string[] }
  /** Delivered already (or refused for good by the customer's own servers): there is nothing to decide. */
  | { kind: 'not-held'; spam: StoredSpam; customerIds: string[] }
  /** A release of a message that is not quarantined: clean, or not scored yet. */
  | { kind: 'not-quarantined'; spam: StoredSpam; customerIds: string[] };

/**
 * The operator's word on one message, under a row lock so that two reviews of one message never interleave.
 * A release applies only to quarantined mail (by the filter, or marked as spam); marking as spam applies to any
 * message still held. Either is refused once no recipient holds the message any more. Undefined: no such message.
 */
export async function reviewMessage(
  sql: Sql,
  id: string,
  review: Review,
  actor: string,
): Promise<ReviewOutcome | undefined> {
  const heldAnywhere = heldRecipient(sql, 'each-customers-primary');
  return sql.begin(async (tx) => {
    const [m] = await tx<
      { spam: StoredSpam; quarantined: boolean; abandoned: boolean; held: boolean; customerIds: string[] }[]
    >`
      select ${storedSpam(sql)} as spam, ${quarantinedMessage(sql)} as quarantined,
             (m.scored_at is null and m.score_attempts >= ${SCORE_ATTEMPTS}) as abandoned,
             exists (select 1 from held_recipient r where r.message_id = m.id and ${heldAnywhere}) as held,
             array(select distinct r.customer_id from held_recipient r where r.message_id = m.id
                   order by r.customer_id) as "customerIds"
      from held_message m where m.id = ${id}
      for update of m`;
    if (!m) return undefined;
    // A retried request answers as the first did, also once the released message has gone on its way.
    const { spam, customerIds } = m;
    if (spam.review === review) return { kind: 'unchanged', spam, customerIds };
    if (!m.held) return { kind: 'not-held', spam, customerIds };
    // Mail the scorer gave up on (unscored after its attempts) can be released too: an operator's word is its way
    // out. Mail still waiting for its score is not released blind.
    if (review === 'released' && !m.quarantined && !m.abandoned)
      return { kind: 'not-quarantined', spam, customerIds };
    const [row] = await tx<{ spam: StoredSpam }[]>`
      update held_message m set spam_review = ${review}, reviewed_by = ${actor}, reviewed_at = now()
      where m.id = ${id}
      returning ${storedSpam(sql)} as spam`;
    return { kind: 'changed', spam: row!.spam, customerIds };
  });
}

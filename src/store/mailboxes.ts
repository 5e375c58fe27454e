import { type MailboxCounts, mailboxTargetKey } from '../domain/delivery';
import type { Sql } from './db';
import { heldRecipient, quarantinedMessage } from './held';

// Temporary mailboxes as operators see them: counts in the outage's status, one row per person in the API.

export async function mailboxCounts(sql: Sql, customerId: string): Promise<MailboxCounts> {
  const [row] = await sql<MailboxCounts[]>`
    select count(*)::int as provisioned,
           count(*) filter (where password_set_at is not null)::int as "signInIssued",
           count(*) filter (where last_sign_in_at is not null)::int as "signedIn",
           count(*) filter (where not sign_in_allowed)::int as closed
    from mailbox where customer_id = ${customerId} and deleted_at is null`;
  return row ?? { provisioned: 0, signInIssued: 0, signedIn: 0, closed: 0 };
}

export interface MailboxRow {
  address: string;
  outageId: string | null;
  state: 'provisioned' | 'sign-in issued' | 'signed in' | 'closed' | 'deleted';
  createdAt: string;
  passwordSetAt: string | null;
  lastSignInAt: string | null;
  closedAt: string | null;
  deleteAfter: string | null;
  copied: number;
  sent: number;
}

/** Each mailbox of a customer, with what it holds: copies of held mail, and mail its user sent. */
export async function listMailboxes(sql: Sql, customerId: string): Promise<MailboxRow[]> {
  return sql<MailboxRow[]>`
    select b.address, b.outage_id as "outageId",
      case when b.deleted_at is not null then 'deleted' when not b.sign_in_allowed then 'closed'
           when b.last_sign_in_at is not null then 'signed in'
           when b.password_set_at is not null then 'sign-in issued' else 'provisioned' end as state,
      to_json(b.created_at)#>>'{}' as "createdAt", to_json(b.password_set_at)#>>'{}' as "passwordSetAt",
      to_json(b.last_sign_in_at)#>>'{}' as "lastSignInAt", to_json(b.closed_at)#>>'{}' as "closedAt",
      to_json(b.closed_at + b.retention)#>>'{}' as "deleteAfter",
      (select count(*)::int from delivery_ledger d
        where d.target = ${mailboxTargetKey(customerId)} and d.outcome = 'copied' and lower(d.recipient) = b.address
          and not exists (select 1 from submission s where s.message_id = d.message_id and s.mailbox = b.address))
        as copied,
      (select count(*)::int from submission s where s.mailbox = b.address) as sent
    from mailbox b where b.customer_id = ${customerId} order by b.address`;
}

/**
 * Mailboxes past their retention, none of whose mail (copies of held mail, mail its user sent) is still held for
 * the customer's own servers: deleting them loses nothing that is not on the customer's server already.
 */
export async function expiredMailboxes(sql: Sql): Promise<{ address: string; customer_id: string }[]> {
  return sql`
    select b.address, b.customer_id from mailbox b
    where b.deleted_at is null and b.closed_at + b.retention <= now()
      and not exists (
        select 1 from held_recipient r join held_message m on m.id = r.message_id
        where r.customer_id = b.customer_id
          and ${heldRecipient(sql, 'each-customers-primary')}
          -- quarantined (or marked spam): the mailbox's copy is in Junk, and the message may wait for an operator
          -- for ever (restoreQuarantined: keep); it holds nothing back
          and not ${quarantinedMessage(sql)}
          and (lower(r.recipient) = b.address
               or exists (select 1 from delivery_ledger c where c.message_id = r.message_id
                          and c.target = 'mailbox:' || b.customer_id and lower(c.recipient) = b.address)))`;
}

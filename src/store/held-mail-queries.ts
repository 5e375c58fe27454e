import type { Sql } from './db';
import { type StoredSpam, storedSpam } from './quarantine';

// What operators read about held mail: pages of an outage's messages, and one message's envelope. Keyset paging
// on the message id keeps a page's cost flat however much is held.

export type RecipientStatus = 'held' | 'delivered' | 'failed';

export interface MessageFilter {
  customerId: string;
  /** Include what is still held (an active outage); delivered/failed rows count when recorded in the window. */
  includeHeld: boolean;
  window: { from: Date; to: Date };
  recipient?: string;
  sender?: string;
  status?: RecipientStatus;
  since?: Date;
  until?: Date;
  cursor?: string;
  limit: number;
}

export interface MessageRow {
  id: string;
  queueId: string;
  receivedAt: string;
  envelopeFrom: string;
  subject: string | null;
  messageId: string | null;
  sizeBytes: number;
  recipients: { address: string; status: RecipientStatus; target: string | null; at: string | null }[];
}

export async function listOutageMessages(sql: Sql, f: MessageFilter): Promise<MessageRow[]> {
  return sql<MessageRow[]>`
    select m.id::text, m.queue_id as "queueId", to_json(m.received_at)#>>'{}' as "receivedAt",
           m.envelope_from as "envelopeFrom", m.subject, m.message_id as "messageId", m.size_bytes::int as "sizeBytes",
           jsonb_agg(jsonb_build_object('address', r.recipient, 'status', coalesce(l.outcome, 'held'),
                                        'target', l.target, 'at', l.recorded_at) order by r.recipient) as recipients
    from held_recipient r
    join held_message m on m.id = r.message_id
    left join lateral (
      select d.outcome, d.target, d.recorded_at from delivery_ledger d
      where d.message_id = r.message_id and d.recipient = r.recipient
        -- a copy in a temporary mailbox is not a delivery: the message is still held
        and d.outcome in ('delivered', 'failed')
      order by d.recorded_at desc limit 1) l on true
    where r.customer_id = ${f.customerId}
      and ((${f.includeHeld} and l.outcome is null) or l.recorded_at between ${f.window.from} and ${f.window.to})
      ${f.recipient ? sql`and strpos(r.recipient, lower(${f.recipient})) > 0` : sql``}
      ${f.sender ? sql`and strpos(lower(m.envelope_from), lower(${f.sender})) > 0` : sql``}
      ${f.status ? sql`and coalesce(l.outcome, 'held') = ${f.status}` : sql``}
      ${f.since ? sql`and m.received_at >= ${f.since}` : sql``}
      ${f.until ? sql`and m.received_at < ${f.until}` : sql``}
      ${f.cursor ? sql`and r.message_id < ${f.cursor}` : sql``}
    group by m.id
    order by m.id desc
    limit ${f.limit}`;
}

export interface StoredMessage {
  id: string;
  queueId: string;
  envelopeFrom: string;
  sizeBytes: number;
  sha256: string;
  objectKey: string;
  bodyOffset: number;
  receivedAt: string;
  clientIp: string;
  helo: string;
  tls: string | null;
  recipients: { address: string; customerId: string }[];
  /** The spam columns as the scorer (and an operator's review) left them. */
  spam: StoredSpam;
}

export async function findMessage(sql: Sql, id: string): Promise<StoredMessage | undefined> {
  const [row] = await sql<StoredMessage[]>`
    select m.id::text, m.queue_id as "queueId", m.envelope_from as "envelopeFrom", m.size_bytes::int as "sizeBytes",
           encode(m.sha256, 'hex') as sha256, m.object_key as "objectKey", m.body_offset::int as "bodyOffset",
           to_json(m.received_at)#>>'{}' as "receivedAt", host(m.client_ip) as "clientIp", m.helo, m.tls,
           (select jsonb_agg(jsonb_build_object('address', r.recipient, 'customerId', r.customer_id)
                             order by r.recipient)
            from held_recipient r where r.message_id = m.id) as recipients,
           ${storedSpam(sql)} as spam
    from held_message m where m.id = ${id}`;
  return row;
}

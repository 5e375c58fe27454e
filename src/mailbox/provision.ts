import { randomBytes } from 'node:crypto';
import { primaryTargetKey } from '../domain/delivery';
import type { Runbook } from '../domain/runbook';
import type { Sql } from '../store/db';
import { heldRecipient } from '../store/held';
import { hashMailboxPassword } from './password';

// One temporary mailbox per recipient: the runbook's listed recipients (so each can sign in and write before any
// mail arrives for them), and every recipient of mail held for the customer's own servers (with `recipients: any`
// that is everyone who gets mail). A new mailbox has a password nobody knows, until an operator hands out a sign-in
// (src/mailbox/sign-in.ts). A mailbox kept from an earlier outage of the customer is opened again for this one.

export async function provisionMailboxes(
  sql: Sql,
  runbook: Runbook,
  outageId: string | null,
): Promise<number> {
  const listed = runbook.recipients === 'any' ? [] : runbook.recipients.map((r) => r.toLowerCase());
  const held = heldRecipient(sql, { targetKey: primaryTargetKey(runbook.id) });
  const rows = await sql<{ address: string }[]>`
    with wanted as (
      select unnest(${listed}::text[]) as address
      union
      select distinct lower(r.recipient) from held_recipient r where r.customer_id = ${runbook.id} and ${held}
    )
    insert into mailbox (address, customer_id, outage_id, password_hash)
    select address, ${runbook.id}, ${outageId}, ${hashMailboxPassword(randomBytes(32).toString('hex'))} from wanted
    on conflict (address) do update
      set outage_id = excluded.outage_id, sign_in_allowed = true, closed_at = null, deleted_at = null
      where mailbox.customer_id = excluded.customer_id
        and (mailbox.outage_id is distinct from excluded.outage_id or not mailbox.sign_in_allowed)
    returning address`;
  return rows.length;
}

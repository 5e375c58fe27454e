import { randomBytes } from 'node:crypto';
import { primaryTargetKey } from '../domain/delivery';
import type { Runbook } from '../domain/runbook';
import type { Sql } from '../store/db';
import { heldRecipient, quarantinedMessage } from '../store/held';
import { hashMailboxPassword } from './password';

// One temporary mailbox per recipient: the runbook's listed recipients (so each can sign in and write before any
// mail arrives for them), and every recipient of mail held for the customer's own servers (with `recipients: any`
// that is everyone who gets mail). A new mailbox has a password nobody knows, until an operator hands out a sign-in
// (src/mailbox/sign-in.ts). A mailbox kept from an earlier outage of the customer is opened again for this one,
// with nothing of that outage's sign-ins.

export async function provisionMailboxes(
  sql: Sql,
  runbook: Runbook,
  outageId: string | null,
): Promise<number> {
  const listed = runbook.recipients === 'any' ? [] : runbook.recipients.map((r) => r.toLowerCase());
  const held = heldRecipient(sql, { targetKey: primaryTargetKey(runbook.id) });
  const rows = await sql<{ address: string; reopened: boolean }[]>`
    with wanted as (
      select unnest(${listed}::text[]) as address
      union
      -- Mail only the filter quarantined (a dictionary attack on recipients: any) makes nobody a mailbox.
      select distinct lower(r.recipient) from held_recipient r join held_message m on m.id = r.message_id
      where r.customer_id = ${runbook.id} and ${held} and not ${quarantinedMessage(sql)}
    )
    insert into mailbox (address, customer_id, outage_id, password_hash)
    select address, ${runbook.id}, ${outageId}, ${hashMailboxPassword(randomBytes(32).toString('hex'))} from wanted
    on conflict (address) do update
      -- Reopened for a new outage: nothing of the last one signs in (its password, links, lock), all handed out anew.
      set outage_id = excluded.outage_id, sign_in_allowed = true, closed_at = null, deleted_at = null,
          password_hash = excluded.password_hash, password_set_at = null, last_sign_in_at = null,
          failed_sign_ins = 0, locked_until = null
      where mailbox.customer_id = excluded.customer_id
        and (mailbox.outage_id is distinct from excluded.outage_id or not mailbox.sign_in_allowed)
    returning address, (xmax <> 0) as reopened`;
  const reopened = rows.filter((r) => r.reopened).map((r) => r.address);
  if (reopened.length) await sql`delete from mailbox_sign_in_link where address = any(${reopened}::text[])`;
  return rows.length;
}

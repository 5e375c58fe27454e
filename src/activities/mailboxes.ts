import type { Config } from '../config';
import type { MailboxCounts } from '../domain/delivery';
import { durationMs, mailboxRetention, type Runbook } from '../domain/runbook';
import type { Logger } from '../log';
import { kickMailboxes } from '../mailbox/doveadm';
import { withMailbox } from '../mailbox/imap';
import type { Sql } from '../store/db';
import { expiredMailboxes, mailboxCounts } from '../store/mailboxes';

// The end of temporary mailboxes: closed when the outage is (sign-in refused from then on), and deleted once the
// runbook's retention has passed, but never while mail they copy is still held for the customer's own servers.

export function createMailboxActivities(deps: { sql: Sql; config: Config; log: Logger }) {
  const { sql, config, log } = deps;
  return {
    async closeMailboxes(runbook: Runbook): Promise<MailboxCounts> {
      const retentionMs = durationMs(mailboxRetention(runbook));
      const closed = await sql<{ address: string }[]>`
        update mailbox set sign_in_allowed = false, closed_at = now(),
                           retention = ${retentionMs} * interval '1 millisecond'
        where customer_id = ${runbook.id} and closed_at is null and deleted_at is null
        returning address`;
      // Open sessions end too: a phone in IDLE would otherwise go on reading after the outage closed.
      await kickMailboxes(
        config,
        closed.map((c) => c.address),
      ).catch((err) => log.warn({ err }, 'could not end the open sessions of closed mailboxes'));
      if (closed.length)
        await sql`insert into audit_event (actor, action, customer_id, detail)
          values ('outage workflow', 'mailboxes.closed', ${runbook.id},
                  ${sql.json({ mailboxes: closed.length, retention: mailboxRetention(runbook) })})`;
      return mailboxCounts(sql, runbook.id);
    },

    /** Empties and marks deleted every mailbox past its retention whose copies were all restored. */
    async expireMailboxes(): Promise<number> {
      let deleted = 0;
      for (const { address, customer_id } of await expiredMailboxes(sql)) {
        try {
          await withMailbox(config, address, emptyMailbox);
        } catch (err) {
          // One mailbox Dovecot will not open must not keep every other one past its retention.
          log.error({ err, address }, 'could not empty an expired temporary mailbox; trying again next hour');
          continue;
        }
        await sql.begin(async (tx) => {
          // Still closed and expired: a new outage may have opened it again meanwhile.
          const [row] = await tx`update mailbox set deleted_at = now() where address = ${address}
            and closed_at is not null and closed_at + retention <= now() returning address`;
          if (!row) return;
          await tx`insert into audit_event (actor, action, customer_id, detail)
            values ('retention', 'mailbox.deleted', ${customer_id}, ${tx.json({ address })})`;
          deleted++;
        });
        log.info({ address, customerId: customer_id }, 'temporary mailbox deleted after its retention');
      }
      return deleted;
    },
  };
}

/** Every message in every folder goes; folders people made go too (the special ones come back empty at sign-in). */
async function emptyMailbox(imap: import('imapflow').ImapFlow) {
  for (const folder of await imap.list()) {
    if (folder.flags.has('\\Noselect')) continue;
    const lock = await imap.getMailboxLock(folder.path);
    try {
      await imap.messageDelete('1:*');
    } finally {
      lock.release();
    }
    if (!folder.specialUse && folder.path !== 'INBOX') await imap.mailboxDelete(folder.path);
  }
}

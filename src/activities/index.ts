import type { Logger } from '../log';
import type { Sql } from '../store/db';

export interface ActivityDeps {
  sql: Sql;
  log: Logger;
}

// Activities get their dependencies injected, so tests run them against the same real services with their own
// connections (the activities-dependency-injection sample).
export function createActivities({ sql }: ActivityDeps) {
  return {
    /** Held messages of a customer that no delivery has taken care of yet. */
    async countHeldMessages(customerId: string): Promise<number> {
      const [row] = await sql<{ n: number }[]>`
        select count(*)::int as n from held_message m
        where m.customer_id = ${customerId}
          and exists (
            select 1 from held_recipient r
            where r.message_id = m.id
              and not exists (select 1 from delivery_ledger d
                              where d.message_id = r.message_id and d.recipient = r.recipient and d.outcome = 'delivered'))`;
      return row?.n ?? 0;
    },
  };
}

export type Activities = ReturnType<typeof createActivities>;

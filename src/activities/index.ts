import type { Logger } from '../log';
import type { Sql } from '../store/db';
import { countHeldMessages } from '../store/messages';

export interface ActivityDeps {
  sql: Sql;
  log: Logger;
}

// Activities get their dependencies injected, so tests run them against the same real services with their own
// connections (the activities-dependency-injection sample).
export function createActivities({ sql }: ActivityDeps) {
  return {
    /** Held messages of a customer that no delivery has taken care of yet. */
    countHeldMessages(customerId: string): Promise<number> {
      return countHeldMessages(sql, customerId);
    },
  };
}

export type Activities = ReturnType<typeof createActivities>;

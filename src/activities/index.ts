import type { Client } from '@temporalio/client';
import type { Config } from '../config';
import type { ProbeResult } from '../domain/delivery';
import { describePrimary, type Runbook } from '../domain/runbook';
import type { HeldCount, SpamGate } from '../domain/spam';
import type { Logger } from '../log';
import type { Sql } from '../store/db';
import { countHeldMessages, countSpam } from '../store/held';
import type { ObjectStore } from '../store/objects';
import { ringOutage } from '../temporal';
import { createDeliveryActivities } from './deliver';
import { createMailboxActivities } from './mailboxes';
import { createNotifyActivities } from './notify';
import { probeMx } from './probe';
import { checkRoute, destinationOf } from './route';
import { createSubmissionActivities } from './submission';

export interface ActivityDeps {
  sql: Sql;
  objects: ObjectStore;
  config: Config;
  log: Logger;
  /** For the monitor's ring; a lazy connection, so the worker starts whatever Temporal's state. */
  client: Client;
}

// Activities get their dependencies injected, so tests run them against the same real services with their own
// connections (the activities-dependency-injection sample).
export function createActivities(deps: ActivityDeps) {
  const { sql, config } = deps;
  return {
    ...createDeliveryActivities(deps),
    ...createNotifyActivities(deps),
    ...createMailboxActivities(deps),
    ...createSubmissionActivities(deps),

    /** The monitor found the primary silent: start or join the outage, as held mail would. */
    async ringOutage(runbook: Runbook): Promise<void> {
      await ringOutage(deps.client, config.temporal.taskQueue, runbook, 0);
    },

    /**
     * Probes every primary MX host of the runbook, in preference order: the hosts a restore would use (its `primary`,
     * or its domain's MX below ours). No route (a loop, DNS failing) is a failed probe that says why.
     */
    async probePrimary(runbook: Runbook): Promise<ProbeResult[]> {
      const route = await checkRoute(config, destinationOf(config, { kind: 'primary' }, runbook));
      if (!route.ok)
        return [
          {
            host: describePrimary(runbook),
            port: 0,
            ok: false,
            stage: 'connect',
            latencyMs: 0,
            error: route.reason,
          },
        ];
      return Promise.all(route.hosts.map((h) => probeMx(h, config.hostname)));
    },

    /**
     * Held messages of a customer for a target (src/store/held.ts): what a delivery there would send; and beside
     * them what is quarantined or waits for a score. Histories recorded before spam scoring hold a bare number.
     */
    async countHeldMessages(customerId: string, targetKey?: string, gate?: SpamGate): Promise<HeldCount> {
      const [held, spam] = await Promise.all([
        countHeldMessages(sql, customerId, targetKey, gate),
        countSpam(sql, customerId),
      ]);
      return { held, spam };
    },
  };
}

export type Activities = ReturnType<typeof createActivities>;

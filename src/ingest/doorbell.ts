import type { Client } from '@temporalio/client';
import type { Config } from '../config';
import type { Runbook } from '../domain/runbook';
import type { Logger } from '../log';
import { ringOutage } from '../temporal';
import type { IngestMetrics } from './metrics';

// The doorbell tells a customer's outage workflow that held mail arrived: signalWithStart, debounced per customer,
// so a flood of mail sends at most one signal per customer per MXF_DOORBELL_MS. It runs after the 250 and never
// delays it: if Temporal is down, the count stays pending and is retried with backoff, and the reconciler rings
// every customer with held mail periodically, which also covers a crash of this process.

const MAX_BACKOFF_MS = 60_000;

export class Doorbell {
  private readonly pending = new Map<string, { count: number; timer?: NodeJS.Timeout; failures: number }>();
  private readonly runbooks: Map<string, Runbook>;

  constructor(
    private readonly deps: {
      client: Client;
      config: Config;
      runbooks: Runbook[];
      log: Logger;
      metrics: IngestMetrics;
    },
  ) {
    this.runbooks = new Map(deps.runbooks.map((rb) => [rb.id, rb]));
  }

  /** Records `accepted` new messages for the customer; `0` just makes sure the workflow hears from us. */
  ring(customerId: string, accepted = 1): void {
    const entry = this.pending.get(customerId) ?? { count: 0, failures: 0 };
    entry.count += accepted;
    this.pending.set(customerId, entry);
    if (!entry.timer)
      entry.timer = setTimeout(() => void this.flush(customerId), this.deps.config.smtp.doorbellMs);
  }

  private async flush(customerId: string): Promise<void> {
    const entry = this.pending.get(customerId);
    const runbook = this.runbooks.get(customerId);
    if (!entry) return;
    if (!runbook) {
      // Held mail of a customer whose runbook was removed: an operator's matter, not the doorbell's.
      this.pending.delete(customerId);
      this.deps.log.error(
        { customerId },
        'held mail for a customer with no runbook; restore the runbook to release it',
      );
      return;
    }
    const count = entry.count;
    entry.count = 0;
    try {
      await this.signal(runbook, count);
      this.deps.metrics.doorbell.inc({ outcome: 'ok' });
      entry.timer = undefined;
      entry.failures = 0;
      if (entry.count === 0) this.pending.delete(customerId);
      else this.ring(customerId, 0);
    } catch (err) {
      this.deps.metrics.doorbell.inc({ outcome: 'failed' });
      entry.count += count;
      entry.failures++;
      const delay = Math.min(this.deps.config.smtp.doorbellMs * 2 ** entry.failures, MAX_BACKOFF_MS);
      this.deps.log.warn(
        { customerId, err: (err as Error).message, retryInMs: delay },
        'doorbell failed; mail is held, will retry',
      );
      entry.timer = setTimeout(() => void this.flush(customerId), delay);
    }
  }

  private signal(runbook: Runbook, accepted: number) {
    return ringOutage(this.deps.client, this.deps.config.temporal.taskQueue, runbook, accepted);
  }

  /** Customers whose ring has not reached Temporal yet. */
  unsent(): string[] {
    return [...this.pending.keys()];
  }

  close(): void {
    for (const entry of this.pending.values()) clearTimeout(entry.timer);
  }
}

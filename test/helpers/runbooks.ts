import { type Runbook, runbookSchema } from '../../src/domain/runbook';
import { uniqueRunbook } from './ingest';

/**
 * A customer of its own whose primary is at `primaryPort` on loopback, with timings for tests: probes every
 * second, no default instruction for an hour, one call task at once, restores by approval and unpaced.
 * `overrides` replace whole sections.
 */
export function runbookWithPrimaryAt(primaryPort: number, overrides: Partial<Runbook> = {}): Runbook {
  return runbookSchema.parse({
    ...uniqueRunbook('harborview-law'),
    primary: [{ host: '127.0.0.1', port: primaryPort }],
    detection: { probeInterval: '1s', confirmAfter: '1s' },
    notify: [{ after: '0s', channels: ['ops-call'] }],
    instructions: { default: { after: '1h', action: 'hold' } },
    restore: { mode: 'approval', ratePerSecond: 1000 },
    ...overrides,
  });
}

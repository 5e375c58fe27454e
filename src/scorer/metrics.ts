import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';

// The worker's own metrics: the scorer's. Labels stay low-cardinality (no customers, no symbols).
export function createScorerMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'mxf_worker_' });
  return {
    registry,
    scored: new Counter({
      name: 'mxf_spam_scored_total',
      help: 'Held messages scored, by verdict (clean, quarantined)',
      labelNames: ['verdict'] as const,
      registers: [registry],
    }),
    latency: new Histogram({
      name: 'mxf_spam_scoring_seconds',
      help: "One message's round trip to the filter (rspamd /checkv2)",
      buckets: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    errors: new Counter({
      name: 'mxf_spam_filter_errors_total',
      help: 'Scoring batches that failed: the filter unreachable or without a result',
      registers: [registry],
    }),
  };
}

export type ScorerMetrics = ReturnType<typeof createScorerMetrics>;

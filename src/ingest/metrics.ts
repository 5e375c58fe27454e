import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';

// Labels stay low-cardinality: no domains, addresses or customers.
export type RejectReason =
  | 'relay_denied'
  | 'unknown_recipient'
  | 'address_trick'
  | 'too_many_recipients'
  | 'per_ip_limit'
  | 'oversize'
  | 'bare_cr'
  | 'nul'
  | 'local_error'
  // RCPT to our return-path domain (bounces of forwarded copies)
  | 'bad_return_path'
  | 'expired_return_path'
  | 'bounced_message_gone'
  | 'bounce_too_early'
  | 'bounce_not_alone';

/** What became of a bounce's DATA: recorded as a failure in the ledger, or read and dropped (a delay warning). */
export type BounceResult = 'recorded' | 'not_a_failure';

export function createIngestMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'mxf_ingest_' });
  return {
    registry,
    accepted: new Counter({
      name: 'mxf_smtp_accepted_total',
      help: 'Messages answered 250',
      registers: [registry],
    }),
    acceptedBytes: new Counter({
      name: 'mxf_smtp_accepted_bytes_total',
      help: 'Bytes stored for accepted messages, our Received header included',
      registers: [registry],
    }),
    rejected: new Counter({
      name: 'mxf_smtp_rejected_total',
      help: 'Refusals by reason (4xx and 5xx)',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    timeTo250: new Histogram({
      name: 'mxf_smtp_time_to_250_seconds',
      help: 'From the start of DATA to the 250: body stored in object storage and rows committed',
      buckets: [
        0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5,
        10,
      ],
      registers: [registry],
    }),
    bounces: new Counter({
      name: 'mxf_bounces_total',
      help: 'Bounces of forwarded copies answered 250, by what was done with them',
      labelNames: ['result'] as const,
      registers: [registry],
    }),
    doorbell: new Counter({
      name: 'mxf_doorbell_signals_total',
      help: 'signalWithStart calls to outage workflows, by outcome',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
  };
}

export type IngestMetrics = ReturnType<typeof createIngestMetrics>;

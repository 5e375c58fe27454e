import type { Client } from '@temporalio/client';
import type { SMTPServer } from 'smtp-server';
import type { Config } from '../config';
import type { Runbook } from '../domain/runbook';
import type { Logger } from '../log';
import type { Sql } from '../store/db';
import { keepingQuarantine } from '../store/held';
import { BodyWriter, type ObjectStore } from '../store/objects';
import { Doorbell } from './doorbell';
import { createIngestMetrics, type IngestMetrics } from './metrics';
import { startReconciler } from './reconciler';
import { createSmtpServer } from './smtp';

// The ingest as production runs it, assembled in one place so that the tests exercise the same wiring.

export interface IngestParts {
  config: Config;
  runbooks: Runbook[];
  log: Logger;
  sql: Sql;
  objects: ObjectStore;
  tls: { key: string; cert: string };
  /**
   * Who hears of each commit: the outage workflows, through the doorbell on this client; or, for a test without
   * Temporal, a function that records the customer.
   */
  ring: Client | ((customerId: string) => void);
  /** Re-ring and sweep orphan bodies in the background; needs a client. */
  reconcile?: boolean;
  /** How many of the node's ingest processes share the object store's PUTs (MXF_INGEST_PROCESSES); 1 if alone. */
  processes?: number;
}

/**
 * Body PUTs in flight for a whole ingest node, and the bytes that must wait before a second one starts beside the
 * first. Group commit gathers the bodies that arrive while a PUT is in flight, and a PUT costs MinIO milliseconds
 * of CPU (fsync included) whatever its size: small bodies do best waiting for the PUT in flight (at 20 one-message
 * sessions segments grew from 2 to 3.5 bodies and MinIO's CPU per message fell by a third), large ones going up
 * side by side (at 20 sessions of 100 KB, one PUT at a time took a fifth less mail). N processes share the PUTs.
 */
const NODE_PUTS_IN_FLIGHT = 2;
const BYTES_BESIDE_A_PUT = 256 * 1024;

export interface Ingest {
  server: SMTPServer;
  metrics: IngestMetrics;
  doorbell?: Doorbell;
  listen(port: number, host: string): Promise<void>;
  /** Stops taking mail; the caller owns sql and the client, and ends them after this. */
  close(): Promise<void>;
}

export function buildIngest(parts: IngestParts): Ingest {
  const { config, runbooks, log, sql, objects } = parts;
  const metrics = createIngestMetrics();
  const doorbell =
    typeof parts.ring === 'function'
      ? undefined
      : new Doorbell({ client: parts.ring, config, runbooks, log, metrics });
  const stopReconciler =
    parts.reconcile && doorbell
      ? startReconciler({ sql, objects, config, log, doorbell, keepQuarantined: keepingQuarantine(runbooks) })
      : () => {};
  const server = createSmtpServer({
    config,
    runbooks,
    log,
    sql,
    bodies: new BodyWriter(
      objects,
      config.s3.bucket,
      Math.max(1, Math.floor(NODE_PUTS_IN_FLIGHT / (parts.processes ?? 1))),
      undefined,
      BYTES_BESIDE_A_PUT,
    ),
    metrics,
    tls: parts.tls,
    ring: doorbell ? (customerId) => doorbell.ring(customerId) : (parts.ring as (id: string) => void),
  });
  server.on('error', (err) => log.error({ err }, 'smtp server error'));
  return {
    server,
    metrics,
    doorbell,
    listen: (port, host) =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          resolve();
        });
      }),
    close() {
      stopReconciler();
      doorbell?.close();
      // smtp-server lets sessions in DATA finish, then answers 421 to the rest after closeTimeout.
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

import type { Stack } from './index';
import type { Component } from './process';

// The service processes on top of a stack, in one place for `npm run dev` (one of each), `npm run cluster` and
// `npm run test:cluster` (two ingest nodes on two ports, the way two MX hosts of equal preference look to
// senders, and two workers on one task queue). Every process here is stateless: any of them may die and come
// back, or be doubled, without a message's fate depending on which one took it.

export interface IngestNode {
  smtpPort: number;
  /** Its own Prometheus target: each node is scraped on its own. */
  metricsPort: number;
}

export interface ServiceLayout {
  ingest: IngestNode[];
  /** Each worker's Prometheus port (spam scoring). */
  workers: { metricsPort: number }[];
  api?: boolean;
  /** The submission relay, Dovecot's sign-in policy and the web inbox. */
  mailbox?: boolean;
}

export interface Services {
  ingest: Component[];
  workers: Component[];
  api?: Component;
  mailbox?: Component;
  all: Component[];
}

/** "worker" alone, "worker-1" and "worker-2" beside each other: the names of their logs and pid files. */
const numbered = (base: string, i: number, n: number) => (n === 1 ? base : `${base}-${i + 1}`);

export function startServices(stack: Stack, layout: ServiceLayout): Services {
  const ports = [
    ...layout.ingest.flatMap((n) => [n.smtpPort, n.metricsPort]),
    ...layout.workers.map((w) => w.metricsPort),
  ];
  if (new Set(ports).size !== ports.length)
    throw new Error(`two service processes would share a port: ${ports.join(', ')}`);
  const workers = layout.workers.map((w, i) =>
    stack.startService(numbered('worker', i, layout.workers.length), 'worker.ts', {
      env: { MXF_WORKER_METRICS_PORT: String(w.metricsPort) },
    }),
  );
  const ingest = layout.ingest.map((node, i) =>
    stack.startService(numbered('ingest', i, layout.ingest.length), 'ingest/main.ts', {
      env: { MXF_SMTP_PORT: String(node.smtpPort), MXF_INGEST_METRICS_PORT: String(node.metricsPort) },
    }),
  );
  const api = layout.api ? stack.startService('api', 'api/main.ts') : undefined;
  const mailbox = layout.mailbox ? stack.startService('mailbox', 'mailbox/main.ts') : undefined;
  const all = [...workers, ...ingest, ...(api ? [api] : []), ...(mailbox ? [mailbox] : [])];
  return { ingest, workers, api, mailbox, all };
}

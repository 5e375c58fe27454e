import type { FastifyInstance } from 'fastify';
import { Counter, collectDefaultMetrics, Registry } from 'prom-client';

// The API's own metrics. Each process is its own Prometheus target: the ingest serves its SMTP metrics on
// MXF_INGEST_METRICS_PORT, because several ingest nodes each count their own sessions.
export function registerMetrics(app: FastifyInstance): void {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'mxf_api_' });
  const requests = new Counter({
    name: 'mxf_api_requests_total',
    help: 'API requests by route and status code',
    labelNames: ['route', 'code'] as const,
    registers: [registry],
  });
  app.addHook('onResponse', async (req, reply) => {
    requests.inc({ route: req.routeOptions.url ?? 'unmatched', code: String(reply.statusCode) });
  });
  app.get('/metrics', async (_req, reply) => reply.type(registry.contentType).send(await registry.metrics()));
}

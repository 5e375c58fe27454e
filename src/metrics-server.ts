import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import type { Logger } from './log';

/**
 * A process's Prometheus endpoint (GET /metrics), on the ops interface next to the API. A port already taken is
 * logged, not fatal: metrics are for watching the service, and the service itself must keep running.
 */
export function serveMetrics(registry: Registry, port: number, host: string, log: Logger): Server {
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') return res.writeHead(404).end();
    void registry
      .metrics()
      .then((text) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(text));
  });
  server.on('error', (err) => log.warn({ port, err: err.message }, 'metrics endpoint could not listen'));
  return server.listen(port, host);
}

import { createServer, type Server } from 'node:http';
import type { Logger } from './log';

/**
 * A process's Prometheus endpoint (GET /metrics), or an ingest node's (its processes' registries added up), on the
 * ops interface next to the API. A port already taken is logged, not fatal: metrics are for watching the service,
 * and the service itself must keep running.
 */
export function serveMetrics(
  registry: { metrics(): Promise<string>; readonly contentType: string },
  port: number,
  host: string,
  log: Logger,
): Server {
  const server = createServer((req, res) => {
    if (req.url !== '/metrics') return res.writeHead(404).end();
    registry.metrics().then(
      (text) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(text),
      // An ingest node's primary asks its processes, and one that does not answer in time fails the scrape.
      (err: Error) => {
        log.warn({ err: err.message }, 'metrics could not be collected');
        res.writeHead(503).end(`${err.message}\n`);
      },
    );
  });
  server.on('error', (err) => log.warn({ port, err: err.message }, 'metrics endpoint could not listen'));
  return server.listen(port, host);
}

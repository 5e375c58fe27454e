import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import type { Logger } from '../log';
import { registerErrorHandlers } from './errors';
import { type HealthDeps, registerHealth } from './health';
import { registerMetrics } from './metrics';

export type ApiDeps = HealthDeps & { log: Logger };

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const app = Fastify({ loggerInstance: deps.log as FastifyBaseLogger });
  registerErrorHandlers(app);
  registerHealth(app, deps);
  registerMetrics(app);
  await app.ready();
  return app;
}

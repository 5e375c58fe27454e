import { Client } from '@temporalio/client';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { Runbook } from '../domain/runbook';
import type { Logger } from '../log';
import { registerAudit, registerAuditRoutes } from './audit';
import { registerAuth } from './auth';
import { registerCustomerRoutes } from './customers';
import { registerErrorHandlers } from './errors';
import { type HealthDeps, registerHealth } from './health';
import { registerMailboxRoutes } from './mailboxes';
import { registerMessageRoutes } from './messages';
import { registerMetrics } from './metrics';
import { registerOpenApi } from './openapi';
import { registerOutageRoutes } from './outages';
import { registerQuarantineRoutes } from './quarantine';

declare module 'fastify' {
  interface FastifyInstance {
    routeList: string[];
  }
}

export type ApiDeps = HealthDeps & { log: Logger; runbooks: readonly Runbook[] };

/** Request bodies are small JSON (an instruction, a call record); anything bigger is refused before parsing. */
export const BODY_LIMIT_BYTES = 64 * 1024;

export async function buildApi(deps: ApiDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    bodyLimit: BODY_LIMIT_BYTES,
    // A HEAD of /api/messages/:id would parse and audit a read that shows nothing; no route needs HEAD.
    exposeHeadRoutes: false,
    // Ids in paths are checked by each route's schema; this only bounds what the router has to look at.
    routerOptions: { maxParamLength: 200 },
  });
  // Every route, as registered: a test checks that the OpenAPI document covers each one.
  const routes: string[] = [];
  app.addHook('onRoute', (r) => {
    for (const method of [r.method].flat()) if (method !== 'HEAD') routes.push(`${method} ${r.url}`);
  });
  app.decorate('routeList', routes);
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  registerErrorHandlers(app);
  await registerOpenApi(app);
  registerAuth(app, deps.sql);
  registerAudit(app, deps.sql);
  registerHealth(app, deps);
  registerMetrics(app);
  const client = new Client({ connection: deps.temporal, namespace: deps.config.temporal.namespace });
  const runbooks = new Map(deps.runbooks.map((rb) => [rb.id, rb]));
  registerCustomerRoutes(app, { sql: deps.sql, client, runbooks });
  registerOutageRoutes(app, { config: deps.config, sql: deps.sql, client, runbooks });
  registerMailboxRoutes(app, { config: deps.config, sql: deps.sql, runbooks });
  registerMessageRoutes(app, { ...deps, client });
  registerQuarantineRoutes(app, { ...deps, client, runbooks });
  registerAuditRoutes(app, deps.sql);
  await app.ready();
  return app;
}

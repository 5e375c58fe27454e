import type { Client } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Runbook } from '../domain/runbook';
import type { Sql } from '../store/db';
import { heldCountsByCustomer, keepingQuarantine } from '../store/held';
import { listOutages } from './outage-lookup';

/** GET /api/customers: every runbook, with its held mail (PostgreSQL) and its active outage (Temporal). */
export function registerCustomerRoutes(
  app: FastifyInstance,
  deps: { sql: Sql; client: Client; runbooks: ReadonlyMap<string, Runbook> },
): void {
  app.withTypeProvider<ZodTypeProvider>().get(
    '/api/customers',
    {
      config: { role: 'viewer' },
      schema: {
        summary: "The customers (one per runbook), each with its held mail and its active outage's phase",
        tags: ['customers'],
        security: [{ bearer: [] }],
      },
    },
    async () => customersOverview(deps),
  );
}

async function customersOverview(deps: { sql: Sql; client: Client; runbooks: ReadonlyMap<string, Runbook> }) {
  const [held, active] = await Promise.all([
    heldCountsByCustomer(deps.sql, keepingQuarantine([...deps.runbooks.values()])),
    listOutages(deps.client, { state: 'active', limit: 500 }),
  ]);
  const outageOf = new Map(active.map((o) => [o.customerId, o]));
  return {
    customers: [...deps.runbooks.values()].map((rb) => ({
      id: rb.id,
      name: rb.name,
      domains: rb.domains,
      primary: rb.primary,
      defaultInstruction: rb.instructions.default,
      restore: rb.restore,
      heldMessages: held.get(rb.id) ?? 0,
      activeOutage: outageOf.get(rb.id) ?? null,
    })),
  };
}
export type CustomersResponse = Awaited<ReturnType<typeof customersOverview>>;

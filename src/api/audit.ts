import { randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { parseOutageId } from '../domain/outage-id';
import { customerIdSchema } from '../domain/runbook';
import type { Sql } from '../store/db';
import { pageSchema } from './paging';

// Every mutating call and every read of a message's content leaves an audit row: who, what, on what, when, and
// how it ended. The row is written before the handler runs (outcome 'pending') and completed when the response
// goes out, so an action the API crashed in the middle of is still on record. Requests refused before the
// handler (no token, wrong role, malformed body) get a row too: those are the ones a security review asks about.

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The audit action name, e.g. outage.instruct; routes without one are not audited. */
    audit?: string;
  }
  interface FastifyRequest {
    auditId?: string;
    /** What the handler learned on the way: the customer concerned, and anything worth keeping. */
    auditNote?: { customerId?: string; detail?: Record<string, unknown> };
  }
}

function outcomeOf(status: number): string {
  if (status < 400) return 'ok';
  if (status === 401 || status === 403) return 'denied';
  if (status === 404) return 'not-found';
  if (status === 409) return 'refused';
  if (status < 500) return 'invalid';
  return 'error';
}

function targetOf(req: FastifyRequest): string | null {
  const params = req.params as Record<string, string> | undefined;
  return params?.id ?? null;
}

function customerOf(req: FastifyRequest): string | null {
  if (req.auditNote?.customerId) return req.auditNote.customerId;
  const target = targetOf(req);
  if (!target) return null;
  // An outage id names its customer; any other slug in the path is a customer id.
  return parseOutageId(target)?.customerId ?? (customerIdSchema.safeParse(target).success ? target : null);
}

export function registerAudit(app: FastifyInstance, sql: Sql): void {
  app.addHook('preHandler', async (req) => {
    const action = req.routeOptions.config.audit;
    if (!action) return;
    const body = (req.body ?? {}) as Record<string, unknown>;
    // Every mutation has a request id, the client's or ours: the audit row and the workflow's history share it.
    if (req.method === 'POST' && typeof req.body === 'object' && req.body !== null && !body.requestId)
      body.requestId = randomUUID();
    const [row] = await sql<{ id: string }[]>`
      insert into audit_event (actor, action, customer_id, target, request_id, detail)
      values (${req.operator?.name ?? 'anonymous'}, ${action}, ${customerOf(req)}, ${targetOf(req)},
              ${typeof body.requestId === 'string' ? body.requestId : null},
              ${sql.json({ method: req.method, url: req.url, body } as never)})
      returning id`;
    req.auditId = row!.id;
  });

  // A client that hangs up gets no response, so onResponse never runs: the action may still have happened.
  app.addHook('onRequestAbort', async (req) => {
    if (!req.auditId) return;
    await sql`update audit_event set outcome = 'aborted' where id = ${req.auditId} and outcome = 'pending'`.catch(
      (err) => req.log.error({ err }, 'could not complete the audit row of an aborted request'),
    );
  });

  app.addHook('onResponse', async (req, reply) => {
    const action = req.routeOptions.config?.audit;
    if (!action) return;
    const outcome = outcomeOf(reply.statusCode);
    const extra = req.auditNote?.detail ?? {};
    try {
      if (req.auditId) {
        await sql`
          update audit_event set outcome = ${outcome}, status_code = ${reply.statusCode},
            customer_id = coalesce(${req.auditNote?.customerId ?? null}, customer_id),
            detail = detail || ${sql.json(extra as never)}
          where id = ${req.auditId}`;
      } else {
        await sql`
          insert into audit_event (actor, action, customer_id, target, outcome, status_code, detail)
          values (${req.operator?.name ?? 'anonymous'}, ${action}, ${customerOf(req)}, ${targetOf(req)},
                  ${outcome}, ${reply.statusCode}, ${sql.json({ method: req.method, url: req.url } as never)})`;
      }
    } catch (err) {
      req.log.error({ err, action }, 'could not complete the audit row');
    }
  });
}

export const auditQuerySchema = z.object({
  customer: z.string().max(63).optional(),
  actor: z.string().max(63).optional(),
  action: z.string().max(63).optional(),
  ...pageSchema.shape,
});

export const auditEventSchema = z.object({
  id: z.string(),
  at: z.string(),
  actor: z.string(),
  action: z.string(),
  customerId: z.string().nullable(),
  target: z.string().nullable(),
  outcome: z.string(),
  statusCode: z.number().nullable(),
  requestId: z.string().nullable(),
  detail: z.record(z.string(), z.unknown()),
});
export type AuditEvent = z.infer<typeof auditEventSchema>;

export function registerAuditRoutes(app: FastifyInstance, sql: Sql): void {
  app.withTypeProvider<ZodTypeProvider>().get(
    '/api/audit',
    {
      config: { role: 'admin' },
      schema: {
        summary: 'The audit log, newest first',
        tags: ['audit'],
        security: [{ bearer: [] }],
        querystring: auditQuerySchema,
      },
    },
    async (req) => {
      const q = req.query;
      const rows = await sql<AuditEvent[]>`
        select id::text, to_json(at)#>>'{}' as at, actor, action, customer_id as "customerId", target, outcome,
               status_code as "statusCode", request_id as "requestId", detail
        from audit_event
        where true
          ${q.customer ? sql`and customer_id = ${q.customer}` : sql``}
          ${q.actor ? sql`and actor = ${q.actor}` : sql``}
          ${q.action ? sql`and action = ${q.action}` : sql``}
          ${q.cursor ? sql`and id < ${q.cursor}` : sql``}
        order by id desc limit ${q.limit}`;
      return { events: rows, nextCursor: rows.length === q.limit ? rows.at(-1)!.id : null };
    },
  );
}

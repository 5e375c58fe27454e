import { type Client, WorkflowNotFoundError } from '@temporalio/client';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Config } from '../config';
import { outageWorkflowId, requestMetaShape } from '../domain/outage';
import { parseOutageId } from '../domain/outage-id';
import type { Runbook } from '../domain/runbook';
import { topSymbols } from '../domain/spam';
import type { Sql } from '../store/db';
import { type Review, reviewMessage, reviewQuarantine } from '../store/quarantine';
import { ringOutage } from '../temporal';
import { mailHeldSignal } from '../workflows/messages';
import { operatorOfRequest } from './auth';
import { ApiFailure } from './errors';
import { spamStateOf, spamView, spamViewSchema } from './message-view';
import { outageIdParamSchema, withDeadline } from './outage-lookup';
import { pageSchema } from './paging';

// The quarantine: held mail the filter (or an operator) holds back from forwards and redirects. Operators list a
// customer's quarantine, release what is real (it then goes where the instruction in force sends it) and mark
// what is spam (it then goes nowhere, ever). Nothing is deleted or bounced from here. The quarantine is the
// customer's, not one outage's: an outage id names its customer, and quarantined mail can still be released once
// the outage is resolved, when it goes to the customer's own servers.

export const quarantinedMessageSchema = z.object({
  id: z.string(),
  receivedAt: z.string(),
  envelopeFrom: z.string(),
  subject: z.string().nullable(),
  recipients: z.array(z.string()),
  /** quarantined: by the filter's verdict; spam: marked so by an operator. */
  state: z.enum(['quarantined', 'spam']),
  score: z.number().nullable(),
  reason: z.string().nullable(),
  topSymbols: z.array(z.object({ name: z.string(), score: z.number() })),
});

export const quarantinePageSchema = z
  .object({
    customerId: z.string(),
    messages: z.array(quarantinedMessageSchema),
    nextCursor: z.string().nullable(),
  })
  .meta({ id: 'QuarantinePage' });
export type QuarantinePage = z.infer<typeof quarantinePageSchema>;

export const reviewBodySchema = z.object({ ...requestMetaShape }).meta({ id: 'MessageReviewRequest' });

export const reviewResultSchema = z
  .object({ id: z.string(), spam: spamViewSchema })
  .meta({ id: 'MessageReviewResult' });
export type ReviewResult = z.infer<typeof reviewResultSchema>;

const messageIdParams = z.object({
  id: z.string().regex(/^\d{1,18}$/, 'expected a message id, as `mxf quarantine list` shows it'),
});

const secured = { security: [{ bearer: [] }] };

export interface QuarantineRouteDeps {
  sql: Sql;
  client: Client;
  config: Config;
  runbooks: ReadonlyMap<string, Runbook>;
}

export function registerQuarantineRoutes(app: FastifyInstance, deps: QuarantineRouteDeps): void {
  const { sql, client, config, runbooks } = deps;
  const api = app.withTypeProvider<ZodTypeProvider>();

  /** Tells the customer's running outage to recount; false when none runs. */
  async function signalOutage(customerId: string): Promise<boolean> {
    try {
      await withDeadline(client, () =>
        client.workflow
          .getHandle(outageWorkflowId(customerId))
          .signal(mailHeldSignal, { acceptedSinceLastRing: 0 }),
      );
      return true;
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) return false;
      throw err;
    }
  }

  /**
   * Rings the customer's outage after a review, so its status recounts and released mail follows the instruction
   * in force; with `start`, an outage starts when none runs (released mail after a resolve goes to the customer's
   * own servers). What was decided is committed either way: when Temporal does not answer, the reconciler rings
   * every customer with deliverable held mail within MXF_RECONCILE_MS, so the failure is logged, not answered.
   */
  async function ring(req: FastifyRequest, customerId: string, start: boolean): Promise<string> {
    try {
      if (await signalOutage(customerId)) return 'signalled';
      const runbook = runbooks.get(customerId);
      if (!start || !runbook) return 'no outage';
      await ringOutage(client, config.temporal.taskQueue, runbook, 0);
      return 'started';
    } catch (err) {
      req.log.warn({ err, customerId }, "could not ring the customer's outage; the reconciler will");
      return `not rung: ${(err as Error).message}`;
    }
  }

  api.get(
    '/api/outages/:id/quarantine',
    {
      config: { role: 'operator', audit: 'quarantine.review' },
      schema: {
        summary: "The customer's quarantined mail still held, newest first; listing it records a review",
        description:
          'Quarantined by the filter, or marked as spam by an operator, and delivered nowhere yet. Listing records ' +
          'that an operator has seen the quarantine: what was quarantined before then no longer stands in the way ' +
          'of resolving the outage. Audited.',
        tags: ['quarantine'],
        ...secured,
        params: z.object({ id: outageIdParamSchema }),
        querystring: z.object({ ...pageSchema.shape }),
        response: { 200: quarantinePageSchema },
      },
    },
    async (req) => {
      const { name: actor } = operatorOfRequest(req);
      const customerId = parseOutageId(req.params.id)?.customerId ?? req.params.id;
      if (!runbooks.has(customerId))
        throw new ApiFailure(
          404,
          'OUTAGE_NOT_FOUND',
          `no customer ${customerId}, so no quarantine; \`mxf customers\` shows them`,
        );
      const { cursor, limit } = req.query;
      const rows = await reviewQuarantine(sql, { customerId, cursor, limit, actor });
      // The outage's status recounts what is not reviewed yet (resolve waits on it).
      const outage = await ring(req, customerId, false);
      req.auditNote = { customerId, detail: { listed: rows.length, outage } };
      const messages = rows.map((m) => ({
        id: m.id,
        receivedAt: m.receivedAt,
        envelopeFrom: m.envelopeFrom,
        subject: m.subject,
        recipients: m.recipients,
        state: spamStateOf(m.spam) === 'spam' ? ('spam' as const) : ('quarantined' as const),
        score: m.spam.score,
        reason: m.spam.auth?.verdictReason ?? null,
        topSymbols: topSymbols(m.spam.symbols ?? {}),
      }));
      return { customerId, messages, nextCursor: rows.length === limit ? rows.at(-1)!.id : null };
    },
  );

  async function review(req: FastifyRequest, id: string, kind: Review): Promise<ReviewResult> {
    const { name: actor } = operatorOfRequest(req);
    const outcome = await reviewMessage(sql, id, kind, actor);
    if (!outcome)
      throw new ApiFailure(
        404,
        'MESSAGE_NOT_FOUND',
        `no held message ${id}; \`mxf quarantine list <outage>\` shows the quarantined ones`,
      );
    req.auditNote = { customerId: outcome.customerIds[0], detail: { review: outcome.kind } };
    const view = spamView(outcome.spam);
    if (outcome.kind === 'not-held')
      throw new ApiFailure(
        409,
        'MESSAGE_NOT_HELD',
        `message ${id} is no longer held: it was delivered (or refused for good by the customer's own servers); ` +
          `\`mxf messages list <outage>\` shows where it went`,
      );
    if (outcome.kind === 'not-quarantined')
      throw new ApiFailure(
        409,
        'NOT_QUARANTINED',
        view.state === 'unscored'
          ? `message ${id} is not quarantined: it has no spam score yet, so there is nothing to release; a forward ` +
              'or redirect takes it once it is scored (or at once, with deliverUnscored)'
          : `message ${id} is not quarantined: the filter passed it (score ${view.score?.toFixed(2)}), so it goes ` +
              'where the instruction in force sends it; there is nothing to release',
      );
    if (outcome.kind === 'changed') {
      // Released mail follows the instruction in force, so its outage must hear of it (or start, when none runs);
      // mail marked as spam goes nowhere, but the outage's counts change.
      const rang = await Promise.all(outcome.customerIds.map((c) => ring(req, c, kind === 'released')));
      req.auditNote.detail = { review: outcome.kind, outage: rang.join('; ') };
    }
    return { id, spam: view };
  }

  api.post(
    '/api/messages/:id/release',
    {
      config: { role: 'operator', audit: 'message.release' },
      schema: {
        summary: 'Release a quarantined message: it goes where the instruction in force sends held mail',
        description:
          'For mail the filter quarantined or an operator marked as spam, while it is still held. Releasing a ' +
          'released message again answers 200, unchanged. 409 NOT_QUARANTINED for clean or unscored mail, ' +
          '409 MESSAGE_NOT_HELD once it was delivered. Audited.',
        tags: ['quarantine'],
        ...secured,
        params: messageIdParams,
        body: reviewBodySchema,
        response: { 200: reviewResultSchema },
      },
    },
    (req) => review(req, req.params.id, 'released'),
  );

  api.post(
    '/api/messages/:id/spam',
    {
      config: { role: 'operator', audit: 'message.mark-spam' },
      schema: {
        summary: 'Mark a held message as spam: it is never delivered anywhere (nor deleted, nor bounced)',
        description:
          'Overrides the filter, and an earlier release. Marking it again answers 200, unchanged; ' +
          '409 MESSAGE_NOT_HELD once it was delivered. Audited.',
        tags: ['quarantine'],
        ...secured,
        params: messageIdParams,
        body: reviewBodySchema,
        response: { 200: reviewResultSchema },
      },
    },
    (req) => review(req, req.params.id, 'spam'),
  );
}

import { randomUUID } from 'node:crypto';
import { type Client, WithStartWorkflowOperation } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { checkRoute, destinationOf } from '../activities/route';
import type { Config } from '../config';
import { describeTarget } from '../domain/delivery';
import {
  callOutcomeSchema,
  type Instruction,
  instructionActionSchema,
  type OutageStatus,
  type OutageWorkflow,
  requestMetaShape,
  targetOf,
} from '../domain/outage';
import { parseOutageId } from '../domain/outage-id';
import { customerIdSchema, type Runbook } from '../domain/runbook';
import type { Sql } from '../store/db';
import { countSpam } from '../store/held';
import { mailboxCounts } from '../store/mailboxes';
import { outageStart } from '../temporal';
import { declareUpdate, instructUpdate, recordCallUpdate } from '../workflows/messages';
import { operatorOfRequest } from './auth';
import { ApiFailure } from './errors';
import {
  asApiFailure,
  findOutage,
  findRunningOutage,
  listOutages,
  outageIdParamSchema,
  outageState,
  updateOutage,
  withDeadline,
} from './outage-lookup';

export interface OutageRouteDeps {
  config: Config;
  sql: Sql;
  client: Client;
  runbooks: ReadonlyMap<string, Runbook>;
}

const idParams = z.object({ id: outageIdParamSchema });

/** The instruction body: one of the actions, plus an optional note and request id. The actor is the token. */
export const instructionBodySchema = z
  .intersection(instructionActionSchema, z.object(requestMetaShape))
  .meta({ id: 'InstructionRequest' });

export const callBodySchema = z
  .object({
    /** Which call task; the oldest open one when left out. */
    taskId: z.string().min(1).max(40).optional(),
    outcome: callOutcomeSchema,
    ...requestMetaShape,
  })
  .meta({ id: 'CallRecordRequest' });

export const declareBodySchema = z.object({ ...requestMetaShape }).meta({ id: 'DeclarationRequest' });

export const outageListQuerySchema = z.object({
  state: z.enum(['active', 'resolved', 'all']).default('active'),
  customer: customerIdSchema.optional(),
  limit: z.coerce.number().int().min(1).max(500).default(100),
});

/** What the API shows of an outage's state: everything but the workflow's internal bookkeeping. */
export function outageView(status: OutageStatus) {
  const { appliedRequestIds: _internal, ...view } = status;
  return { ...view, id: status.outageId ?? status.customerId };
}

const secured = { security: [{ bearer: [] }] };

/**
 * Resolve waits until an operator has listed the quarantine since the last quarantined message arrived.
 *
 * Decision: quarantined mail stops counting as held for resolve once an operator has seen it. It is kept, never
 * deleted, and can still be released after the outage is resolved, when it goes to the customer's own servers
 * (a release rings the customer's outage, and starts one when none runs). What an operator has not seen yet may be
 * real mail the filter got wrong, so it stands in the way, like held mail does.
 */
async function refuseUnreviewedQuarantine(sql: Sql, outageId: string): Promise<void> {
  const customerId = parseOutageId(outageId)?.customerId ?? outageId;
  const { unreviewed } = await countSpam(sql, customerId);
  if (unreviewed > 0)
    throw new ApiFailure(
      409,
      'QUARANTINE_NOT_REVIEWED',
      `${unreviewed} quarantined message(s) arrived since the quarantine was last listed: ` +
        `\`mxf quarantine list ${outageId}\` shows them; release what is real, then resolve`,
    );
}

/**
 * A forward, redirect or restore whose destination can never take the mail (a null MX, a domain that does not
 * exist, a route back to us) is refused before the outage changes course; a DNS failure now is not a reason.
 */
async function refuseUnusableRoute(
  config: Config,
  runbook: Runbook | undefined,
  instruction: Omit<Instruction, 'actor'>,
) {
  const target = targetOf(instruction as Instruction);
  // Temporary mailboxes are ours (Dovecot over LMTP): no route to check.
  if (!target || !runbook || target.kind === 'mailboxes') return;
  const route = await checkRoute(config, destinationOf(config, target, runbook));
  if (!route.ok && route.permanent)
    throw new ApiFailure(422, 'ROUTE_UNUSABLE', `${describeTarget(target, runbook)}: ${route.reason}`);
}

export function registerOutageRoutes(app: FastifyInstance, deps: OutageRouteDeps): void {
  const { client, config, sql, runbooks } = deps;
  const api = app.withTypeProvider<ZodTypeProvider>();

  api.get(
    '/api/outages',
    {
      config: { role: 'viewer' },
      schema: {
        summary: 'Outages: active (the default), resolved, or all; newest first',
        tags: ['outages'],
        ...secured,
        querystring: outageListQuerySchema,
      },
    },
    async (req) => ({ outages: await listOutages(client, req.query) }),
  );

  api.get(
    '/api/outages/:id',
    {
      config: { role: 'viewer' },
      schema: {
        summary:
          "An outage's phase, counts, probe results, notifications, call tasks and instruction history",
        tags: ['outages'],
        ...secured,
        params: idParams,
      },
    },
    async (req) => {
      const found = await findOutage(client, req.params.id);
      const state = await outageState(client, found, req.params.id);
      // The workflow counts mailboxes after each batch; sign-ins happen between batches: read them as they are now.
      if (state.mailboxes || state.instruction?.action === 'mailboxes')
        state.mailboxes = await mailboxCounts(sql, state.customerId);
      return outageView(state);
    },
  );

  api.post(
    '/api/outages/:id/instructions',
    {
      config: { role: 'operator', audit: 'outage.instruct' },
      schema: {
        summary: 'Tell the outage what to do with held mail: hold, forward, redirect, restore or resolve',
        description:
          'Answered with the state after the workflow applied the instruction (200), or 409 with the reason it refused. ' +
          'A resolve is refused (409 QUARANTINE_NOT_REVIEWED) while quarantined mail arrived since the quarantine was ' +
          'last listed. A retry with the same requestId is applied once.',
        tags: ['outages'],
        ...secured,
        params: idParams,
        body: instructionBodySchema,
      },
    },
    async (req) => {
      const { name: actor } = operatorOfRequest(req);
      const found = await findRunningOutage(client, req.params.id);
      if (req.body.action === 'resolve') await refuseUnreviewedQuarantine(sql, req.params.id);
      await refuseUnusableRoute(
        config,
        runbooks.get(parseOutageId(req.params.id)?.customerId ?? req.params.id),
        req.body,
      );
      const requestId = req.body.requestId ?? randomUUID();
      return outageView(
        await updateOutage(client, found, req.params.id, instructUpdate, { ...req.body, actor, requestId }),
      );
    },
  );

  api.post(
    '/api/outages/:id/calls',
    {
      config: { role: 'operator', audit: 'outage.call' },
      schema: {
        summary: 'Record a call to the customer and how it went; "reached" stops the escalation',
        tags: ['outages'],
        ...secured,
        params: idParams,
        body: callBodySchema,
      },
    },
    async (req) => {
      const { name: actor } = operatorOfRequest(req);
      const found = await findRunningOutage(client, req.params.id);
      let taskId = req.body.taskId;
      if (!taskId) {
        const state = await outageState(client, found, req.params.id);
        taskId = state.callTasks.find((t) => !t.outcome)?.id;
        if (!taskId)
          throw new ApiFailure(
            409,
            'WORKFLOW_REFUSED',
            'this outage has no open call task; the runbook opens one at each ops-call step',
          );
      }
      const { outcome, note } = req.body;
      const requestId = req.body.requestId ?? randomUUID();
      return outageView(
        await updateOutage(client, found, req.params.id, recordCallUpdate, {
          taskId,
          outcome,
          actor,
          note,
          requestId,
        }),
      );
    },
  );

  api.post(
    '/api/customers/:id/outages',
    {
      config: { role: 'operator', audit: 'outage.declare' },
      schema: {
        summary:
          "Declare an outage by hand: the customer called, or their mail stopped and the probes can't tell",
        description:
          'Starts the outage (or declares the one being detected) and notifies the contacts as the runbook says. ' +
          '201 with the new state; 409 when an outage is already declared.',
        tags: ['customers'],
        ...secured,
        params: z.object({ id: customerIdSchema }),
        body: declareBodySchema,
      },
    },
    async (req, reply) => {
      const { name: actor } = operatorOfRequest(req);
      const runbook = runbooks.get(req.params.id);
      if (!runbook)
        throw new ApiFailure(
          404,
          'CUSTOMER_NOT_FOUND',
          `no runbook with id ${req.params.id}; \`mxf customers\` shows them`,
        );
      const requestId = req.body.requestId ?? randomUUID();
      try {
        const status = await withDeadline(client, () =>
          client.workflow.executeUpdateWithStart(declareUpdate, {
            args: [{ actor, requestId, note: req.body.note }],
            updateId: requestId,
            startWorkflowOperation: new WithStartWorkflowOperation<OutageWorkflow>('outageWorkflow', {
              ...outageStart(config.temporal.taskQueue, runbook),
              workflowIdConflictPolicy: 'USE_EXISTING',
            }),
          }),
        );
        return reply.code(201).send(outageView(status));
      } catch (err) {
        throw asApiFailure(err, req.params.id);
      }
    },
  );
}

import {
  type Client,
  isGrpcDeadlineError,
  isGrpcServiceError,
  type UpdateDefinition,
  type WorkflowExecutionInfo,
  type WorkflowHandle,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  WorkflowUpdateRPCTimeoutOrCancelledError,
} from '@temporalio/client';
import { z } from 'zod';
import { type OutageStatus, type OutageWorkflow, outageWorkflowId } from '../domain/outage';
import { formatOutageId, outageIdSchema, parseOutageId } from '../domain/outage-id';
import { customerIdSchema } from '../domain/runbook';
import {
  customerIdKey,
  heldMessagesKey,
  instructionActionKey,
  outageIdKey,
  outagePhaseKey,
} from '../domain/search-attributes';
import { statusQuery } from '../workflows/messages';
import { ApiFailure } from './errors';

// Finding an outage in Temporal. An outage id is "<customer>.<8 hex>" (see outage-id.ts); a bare customer id means
// that customer's latest outage, which is what an operator on the phone usually wants.

export const outageIdParamSchema = z.union([outageIdSchema, customerIdSchema], {
  error: 'expected an outage id such as harborview-law.1a2b3c4d, or a customer id for its latest outage',
});

/** A deadline on every Temporal call the API makes: a request never hangs on a worker that is down. */
export const TEMPORAL_DEADLINE_MS = 10_000;

export function withDeadline<T>(client: Client, fn: () => Promise<T>): Promise<T> {
  return client.connection.withDeadline(Date.now() + TEMPORAL_DEADLINE_MS, fn);
}

/** gRPC status codes UNAVAILABLE and DEADLINE_EXCEEDED. */
const GRPC_NOT_ANSWERING = [14, 4];

/** Temporal's failures as API errors: refused by the workflow (409), gone (404), or not answering (503). */
export function asApiFailure(err: unknown, outageId: string, opts: { wasRunning?: boolean } = {}): unknown {
  if (err instanceof ApiFailure) return err;
  if (err instanceof WorkflowUpdateFailedError)
    return new ApiFailure(409, 'WORKFLOW_REFUSED', err.cause?.message ?? err.message);
  const message = (err as Error)?.message ?? '';
  // Temporal answers NotFound for an update to a run that has just closed: that outage exists, it is resolved.
  if (/already completed|already finished/i.test(message)) return resolvedRefusal(outageId);
  if (err instanceof WorkflowNotFoundError && opts.wasRunning) return resolvedRefusal(outageId);
  if (err instanceof WorkflowNotFoundError)
    return new ApiFailure(404, 'OUTAGE_NOT_FOUND', `no outage ${outageId}; \`mxf outages list\` shows them`);
  // Only "not answering" is worth a retry; any other gRPC error is a bug of ours, a 500 with the details logged.
  if (
    err instanceof WorkflowUpdateRPCTimeoutOrCancelledError ||
    isGrpcDeadlineError(err) ||
    (isGrpcServiceError(err) && GRPC_NOT_ANSWERING.includes(err.code)) ||
    /deadline exceeded|UNAVAILABLE/i.test(message)
  )
    return new ApiFailure(
      503,
      'WORKFLOW_UNAVAILABLE',
      'Temporal or the worker did not answer in time; check that both run (GET /healthz), then retry with the same requestId',
    );
  return err;
}

export const resolvedRefusal = (outageId: string) =>
  new ApiFailure(
    409,
    'WORKFLOW_REFUSED',
    `outage ${outageId} is resolved and takes no more actions; new mail, or declaring again, starts a new one`,
  );

/** An outage that can still take an instruction or a call record. */
export async function findRunningOutage(client: Client, id: string): Promise<FoundOutage> {
  const found = await findOutage(client, id);
  if (!found.running) throw resolvedRefusal(id);
  return found;
}

export interface FoundOutage {
  handle: WorkflowHandle<OutageWorkflow>;
  running: boolean;
  status: WorkflowExecutionInfo['status']['name'];
}

export async function findOutage(client: Client, id: string): Promise<FoundOutage> {
  try {
    return await withDeadline(client, async () => {
      const outage = parseOutageId(id);
      const customerId = outage?.customerId ?? id;
      const workflowId = outageWorkflowId(customerId);
      // The customer's latest run first: describe is strongly consistent, the visibility store may lag a moment.
      const info = await client.workflow
        .getHandle<OutageWorkflow>(workflowId)
        .describe()
        .catch((err) => {
          if (err instanceof WorkflowNotFoundError) return undefined;
          throw err;
        });
      const firstRunId = info?.raw.workflowExecutionInfo?.firstRunId ?? undefined;
      // Runs started before outages had an OutageId attribute are recognised by their first run id.
      const latestId =
        info?.typedSearchAttributes.get(outageIdKey) ??
        (firstRunId ? formatOutageId(customerId, firstRunId) : undefined);
      if (info && (!outage || latestId === id)) {
        const running = info.status.name === 'RUNNING';
        // Pinned: a running outage by its first run id (so it is followed across continue-as-new, and a new
        // outage starting meanwhile is never steered instead), a closed one by its run id.
        const handle = running
          ? client.workflow.getHandle<OutageWorkflow>(workflowId, undefined, {
              firstExecutionRunId: firstRunId,
            })
          : client.workflow.getHandle<OutageWorkflow>(workflowId, info.runId);
        return { handle, running, status: info.status.name };
      }
      if (!info || !outage) throw new WorkflowNotFoundError('not found', workflowId, undefined);
      // An earlier outage of this customer: closed, since the latest run is another outage. The visibility store
      // may still show it running for a moment; it is not.
      const runs: WorkflowExecutionInfo[] = [];
      for await (const run of client.workflow.list({ query: `OutageId = "${id}"`, pageSize: 100 })) {
        runs.push(run);
        if (runs.length >= 1000) break;
      }
      const run = runs.find((r) => !['RUNNING', 'CONTINUED_AS_NEW'].includes(r.status.name)) ?? runs[0];
      if (!run) throw new WorkflowNotFoundError('not found', workflowId, undefined);
      const status = run.status.name === 'RUNNING' ? 'COMPLETED' : run.status.name;
      return {
        handle: client.workflow.getHandle<OutageWorkflow>(workflowId, run.runId),
        running: false,
        status,
      };
    });
  } catch (err) {
    throw asApiFailure(err, id);
  }
}

/** An update to a running outage, under the API's deadline: its new state, or why it refused (409). */
export async function updateOutage<Arg extends { requestId?: string }>(
  client: Client,
  found: FoundOutage,
  id: string,
  update: UpdateDefinition<OutageStatus, [Arg]>,
  arg: Arg & { requestId: string },
): Promise<OutageStatus> {
  try {
    return await withDeadline(client, () =>
      found.handle.executeUpdate(update, { args: [arg], updateId: arg.requestId }),
    );
  } catch (err) {
    throw asApiFailure(err, id, { wasRunning: true });
  }
}

/** The outage's whole state: from the query while it runs, from its result once it is resolved. */
export async function outageState(client: Client, found: FoundOutage, id: string): Promise<OutageStatus> {
  try {
    return await withDeadline(client, () =>
      found.status === 'COMPLETED' ? found.handle.result() : found.handle.query(statusQuery),
    );
  } catch (err) {
    throw asApiFailure(err, id);
  }
}

export const outageSummarySchema = z.object({
  id: z.string(),
  customerId: z.string(),
  phase: z.string().nullable(),
  instruction: z.string().nullable(),
  heldMessages: z.number().nullable(),
  status: z.string(),
  runStartedAt: z.string(),
  closedAt: z.string().nullable(),
});
export type OutageSummary = z.infer<typeof outageSummarySchema>;

/** One line per outage, from Temporal's visibility store alone: no worker needed, cheap for many outages. */
export function summarize(info: WorkflowExecutionInfo): OutageSummary {
  const sa = info.typedSearchAttributes;
  const customerId = sa.get(customerIdKey) ?? info.workflowId.replace(/^outage:/, '');
  return {
    id: sa.get(outageIdKey) ?? customerId,
    customerId,
    phase: sa.get(outagePhaseKey) ?? null,
    instruction: sa.get(instructionActionKey) ?? null,
    heldMessages: sa.get(heldMessagesKey) ?? null,
    status: info.status.name.toLowerCase(),
    runStartedAt: info.startTime.toISOString(),
    closedAt: info.closeTime?.toISOString() ?? null,
  };
}

export async function listOutages(
  client: Client,
  filter: { state: 'active' | 'resolved' | 'all'; customer?: string; limit: number },
): Promise<OutageSummary[]> {
  const clauses = ['WorkflowType = "outageWorkflow"'];
  if (filter.state === 'active') clauses.push('ExecutionStatus = "Running"');
  else if (filter.state === 'resolved') clauses.push('ExecutionStatus = "Completed"');
  else clauses.push('ExecutionStatus != "ContinuedAsNew"');
  if (filter.customer) clauses.push(`CustomerId = "${filter.customer}"`);
  const out: OutageSummary[] = [];
  try {
    await withDeadline(client, async () => {
      for await (const info of client.workflow.list({
        query: clauses.join(' AND '),
        pageSize: filter.limit,
      })) {
        out.push(summarize(info));
        if (out.length >= filter.limit) break;
      }
    });
  } catch (err) {
    throw asApiFailure(err, 'list');
  }
  return out;
}

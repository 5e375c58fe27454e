import { Client, Connection, isGrpcServiceError } from '@temporalio/client';
import { msToTs } from '@temporalio/common/lib/time';
import { temporal } from '@temporalio/proto';
import type { Config } from './config';
import { type MailHeld, type OutageInput, type OutageWorkflow, outageWorkflowId } from './domain/outage';
import type { Runbook } from './domain/runbook';
import { searchAttributeKeys } from './domain/search-attributes';
import { mailHeldSignal } from './workflows/messages';

export async function connectTemporal(
  target: Pick<Config['temporal'], 'address' | 'namespace'>,
  connectTimeoutMs = 5_000,
) {
  const connection = await Connection.connect({ address: target.address, connectTimeout: connectTimeoutMs });
  const client = new Client({ connection, namespace: target.namespace });
  return { connection, client };
}

const INDEXED_TYPE = {
  KEYWORD: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  KEYWORD_LIST: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
  INT: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_INT,
} as const;

/**
 * Registers the outage workflow's search attributes in the namespace, adding only those missing. Used by the
 * dev stack and the test harness; in production by docker-compose's init service (src/cli/init.ts). The dev
 * server's --search-attribute flag is not enough: it does nothing for a SQLite file made by an older version.
 */
export async function ensureSearchAttributes(connection: Connection, namespace: string): Promise<string[]> {
  const existing = await connection.operatorService.listSearchAttributes({ namespace });
  const have = new Set(Object.keys(existing.customAttributes ?? {}));
  const missing = searchAttributeKeys.filter((k) => !have.has(k.name));
  if (missing.length > 0) {
    await connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(
        missing.map((k) => [k.name, INDEXED_TYPE[k.type as keyof typeof INDEXED_TYPE]]),
      ),
    });
  }
  return missing.map((k) => k.name);
}

/** How long Temporal keeps a closed outage's history: the outage review happens weeks later, not days. */
const NAMESPACE_RETENTION = '30 days';

/**
 * Registers the namespace on a Temporal server that has none (the real server makes no namespace of its own; the
 * dev server does). Returns whether it registered it.
 */
export async function ensureNamespace(connection: Connection, namespace: string): Promise<boolean> {
  try {
    await connection.workflowService.describeNamespace({ namespace });
    return false;
  } catch (err) {
    if (!isGrpcServiceError(err) || err.code !== GRPC_NOT_FOUND) throw err;
  }
  try {
    await connection.workflowService.registerNamespace({
      namespace,
      workflowExecutionRetentionPeriod: msToTs(NAMESPACE_RETENTION),
    });
  } catch (err) {
    // Another node registered it between our two calls.
    if (!isGrpcServiceError(err) || err.code !== GRPC_ALREADY_EXISTS) throw err;
    return false;
  }
  return true;
}

const GRPC_NOT_FOUND = 5;
const GRPC_ALREADY_EXISTS = 6;

const SIGNAL_DEADLINE_MS = 5_000;

/**
 * Start-or-join the customer's outage workflow and ring its doorbell: signalWithStart, which needs no worker,
 * only the Temporal frontend. Used by the ingest (after held mail is committed) and by the monitor (when the
 * primary stops answering while no mail arrives).
 */
export function ringOutage(client: Client, taskQueue: string, runbook: Runbook, accepted: number) {
  return client.connection.withDeadline(Date.now() + SIGNAL_DEADLINE_MS, () =>
    client.workflow.signalWithStart<OutageWorkflow, [MailHeld]>('outageWorkflow', {
      ...outageStart(taskQueue, runbook),
      signal: mailHeldSignal,
      signalArgs: [{ acceptedSinceLastRing: accepted }],
    }),
  );
}

/** How a customer's outage workflow starts, whoever starts it: the doorbell, the monitor, an operator. */
export function outageStart(taskQueue: string, runbook: Runbook) {
  return {
    workflowId: outageWorkflowId(runbook.id),
    taskQueue,
    args: [{ customerId: runbook.id, runbook }] as [OutageInput],
    staticSummary: `Outage: ${runbook.name} (${runbook.domains.join(', ')})`,
  };
}

/** The delivery of mail written in a temporary mailbox to its outside recipients (src/workflows/submission.ts). */
export async function startSubmission(client: Client, taskQueue: string, messageId: string) {
  await client.workflow.start('submissionWorkflow', {
    workflowId: `submission:${messageId}`,
    taskQueue,
    args: [{ messageId }],
    staticSummary: `Mail sent from a temporary mailbox (held message ${messageId})`,
  });
}

import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import {
  bundleWorkflowCode,
  NativeConnection,
  Runtime,
  Worker,
  type WorkflowBundleWithSourceMap,
} from '@temporalio/worker';
import pino from 'pino';
import { createActivities } from '../../src/activities';
import type { Config } from '../../src/config';
import { createScorerMetrics } from '../../src/scorer/metrics';
import { Scorer } from '../../src/scorer/scorer';
import { TOOLS_BIN } from '../../src/stack/temporal';
import type { Sql } from '../../src/store/db';
import { createObjectStore } from '../../src/store/objects';
import { testConfig } from './stack';

let bundle: Promise<WorkflowBundleWithSourceMap> | undefined;

/** The workflow bundle, built once per test file (webpack takes seconds). */
export function workflowBundle(): Promise<WorkflowBundleWithSourceMap> {
  bundle ??= (async () => {
    Runtime.install({ logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error() {} } });
    return bundleWorkflowCode({
      workflowsPath: require.resolve('../../src/workflows'),
      logger: Runtime.instance().logger,
    });
  })();
  return bundle;
}

/** Runs `fn` while a real worker with the real activities polls `taskQueue`. */
export async function withWorker<T>(
  opts: { address: string; namespace: string; taskQueue: string; sql: Sql; config?: Config },
  fn: () => Promise<T>,
): Promise<T> {
  const config = opts.config ?? testConfig();
  const bundle = await workflowBundle(); // first: it installs the Runtime, which a connection would instantiate
  const connection = await NativeConnection.connect({ address: opts.address });
  const client = new Client({
    connection: Connection.lazy({ address: opts.address }),
    namespace: opts.namespace,
  });
  try {
    const worker = await Worker.create({
      connection,
      namespace: opts.namespace,
      taskQueue: opts.taskQueue,
      workflowBundle: bundle,
      activities: createActivities({
        sql: opts.sql,
        objects: createObjectStore(config),
        config: { ...config, temporal: { ...config.temporal, taskQueue: opts.taskQueue } },
        log: pino({ level: 'silent' }),
        client,
      }),
    });
    // Like the worker process, the scorer runs beside the workflows (with default spam policies).
    const scorer = new Scorer({
      sql: opts.sql,
      objects: createObjectStore(config),
      config,
      log: pino({ level: 'silent' }),
      client,
      runbooks: [],
      metrics: createScorerMetrics(),
    });
    scorer.start();
    return await worker.runUntil(fn).finally(() => scorer.stop());
  } finally {
    await client.connection.close();
    await connection.close();
  }
}

/** Runs `fn` with a worker on a task queue of its own, configured by the test stack's environment and `env`. */
export function withQueueWorker<T>(
  sql: Sql,
  env: Record<string, string>,
  fn: (taskQueue: string) => Promise<T>,
): Promise<T> {
  const config = testConfig(env);
  const taskQueue = `test-${randomUUID()}`;
  const { address, namespace } = config.temporal;
  return withWorker({ address, namespace, taskQueue, sql, config }, () => fn(taskQueue));
}

/**
 * RECORD_HISTORIES=1 npm test -- test/outage-e2e.test.ts test/walkthrough.test.ts refreshes the histories that
 * test/replay.test.ts replays. Only while the workflow has never run in production; after that, use patched().
 */
export async function recordHistory(name: string, handle: { workflowId: string }) {
  if (!process.env.RECORD_HISTORIES) return;
  // The CLI's JSON is the format Worker.runReplayHistories reads (historyFromJSON).
  const { address, namespace } = testConfig().temporal;
  const json = execFileSync(join(TOOLS_BIN, 'temporal'), [
    'workflow',
    'show',
    '--workflow-id',
    handle.workflowId,
    '--output',
    'json',
    '--address',
    address,
    '--namespace',
    namespace,
  ]);
  writeFileSync(join(__dirname, '..', 'histories', `${name}.json`), json);
}

/** A Temporal client for the test file that calls this at its top: connected before its tests, closed after. */
export function useTemporalClient(): { readonly client: Client } {
  let connection: Connection | undefined;
  let client: Client | undefined;
  before(async () => {
    connection = await Connection.connect({ address: testConfig().temporal.address });
    client = new Client({ connection, namespace: testConfig().temporal.namespace });
  });
  after(() => connection?.close());
  return {
    get client() {
      if (!client) throw new Error('useTemporalClient: the client exists once the before() hook has run');
      return client;
    },
  };
}

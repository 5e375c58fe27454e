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
    return await worker.runUntil(fn);
  } finally {
    await client.connection.close();
    await connection.close();
  }
}

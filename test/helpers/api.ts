import { randomUUID } from 'node:crypto';
import { type Client, Connection } from '@temporalio/client';
import pino from 'pino';
import { createToken, type Role } from '../../src/api/auth';
import { buildApi } from '../../src/api/server';
import type { Config } from '../../src/config';
import type { Runbook } from '../../src/domain/runbook';
import { createSql } from '../../src/store/db';
import { createObjectStore } from '../../src/store/objects';
import { startIngest } from './ingest';
import { freePort } from './ports';
import { withWorker } from './temporal';

/** The ops API on a free port, over real HTTP, with one token per role. */
export async function startApi(config: Config, runbooks: Runbook[]) {
  const sql = createSql(config, { connect_timeout: 2 });
  const temporal = Connection.lazy({ address: config.temporal.address });
  const app = await buildApi({
    config,
    sql,
    objects: createObjectStore(config),
    temporal,
    log: pino({ level: process.env.TEST_API_LOG ?? 'silent' }),
    runbooks,
  });
  const port = await freePort();
  await app.listen({ host: '127.0.0.1', port });
  const url = `http://127.0.0.1:${port}`;
  const suffix = Math.random().toString(36).slice(2, 8);
  const tokens = {} as Record<Role, string>;
  const names = {} as Record<Role, string>;
  for (const role of ['viewer', 'operator', 'admin'] as const) {
    names[role] = `${role}-${suffix}`;
    tokens[role] = await createToken(sql, names[role], role, { actor: 'test' });
  }

  /** One HTTP call; `as` picks the token's role, or none for an anonymous call. */
  async function call(
    method: string,
    path: string,
    opts: { as?: Role | 'none'; token?: string; body?: unknown; rawBody?: string; contentType?: string } = {},
  ) {
    const headers: Record<string, string> = {};
    const token = opts.token ?? (opts.as === 'none' ? undefined : tokens[opts.as ?? 'operator']);
    if (token) headers.authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (opts.rawBody !== undefined || opts.body !== undefined) {
      headers['content-type'] = opts.contentType ?? 'application/json';
      body = opts.rawBody ?? JSON.stringify(opts.body);
    }
    const res = await fetch(`${url}${path}`, { method, headers, body });
    const text = await res.text();
    // biome-ignore lint/suspicious/noExplicitAny: tests read whatever JSON came back and assert on it
    let json: any;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, json, text, headers: res.headers };
  }

  return {
    url,
    app,
    sql,
    tokens,
    names,
    call,
    async close() {
      await app.close();
      await Promise.allSettled([sql.end({ timeout: 1 }), temporal.close()]);
    },
  };
}

/**
 * The service inside one test: the ingest ringing the real doorbell, the ops API, and a real worker while `run`
 * runs, on a task queue of their own. Mail we send (forwards, notifications) leaves through `relayPort`.
 */
export async function startOpsStack(
  runbooks: Runbook[],
  opts: { client: Client; relayPort: number; env?: Record<string, string> },
) {
  const ingest = await startIngest(runbooks, {
    env: {
      MXF_TASK_QUEUE: `ops-${randomUUID()}`,
      MXF_DOORBELL_MS: '50',
      MXF_SMTP_RELAY: `127.0.0.1:${opts.relayPort}`,
      ...opts.env,
    },
    temporal: opts.client,
  });
  const api = await startApi(ingest.config, runbooks);
  const { config, sql } = ingest;
  const { address, namespace, taskQueue } = config.temporal;
  return {
    ingest,
    api,
    run: <T>(fn: () => Promise<T>) => withWorker({ address, namespace, taskQueue, sql, config }, fn),
    async close() {
      await api.close();
      await ingest.close();
    },
  };
}

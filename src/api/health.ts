import type { Connection } from '@temporalio/client';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../config';
import { imapGreets } from '../stack/dovecot';
import type { Sql } from '../store/db';
import type { ObjectStore } from '../store/objects';

export type ComponentName = 'postgres' | 'minio' | 'temporal' | 'rspamd' | 'dovecot';

export interface ComponentHealth {
  status: 'up' | 'down';
  latencyMs: number;
  error?: string;
}

export interface HealthDeps {
  config: Config;
  sql: Sql;
  objects: ObjectStore;
  temporal: Connection;
}

const CHECK_TIMEOUT_MS = 2_000;

async function timed(check: () => Promise<unknown>): Promise<ComponentHealth> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      check(),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS} ms`)),
          CHECK_TIMEOUT_MS,
        );
      }),
    ]);
    return { status: 'up', latencyMs: Date.now() - started };
  } catch (err) {
    return { status: 'down', latencyMs: Date.now() - started, error: (err as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

/** rspamd's normal worker answers GET /ping with "pong". */
async function pingRspamd(url: string): Promise<void> {
  const res = await fetch(`${url}/ping`, { signal: AbortSignal.timeout(CHECK_TIMEOUT_MS) }).catch((err) => {
    // fetch says only "fetch failed"; the cause says why (ECONNREFUSED, ENOTFOUND, ...).
    const cause = (err as Error & { cause?: { code?: string; message?: string } }).cause;
    throw new Error(`GET ${url}/ping: ${cause?.code ?? cause?.message ?? (err as Error).message}`);
  });
  const body = (await res.text()).trim();
  if (!res.ok || body !== 'pong')
    throw new Error(`GET ${url}/ping answered ${res.status} ${JSON.stringify(body.slice(0, 80))}`);
}

/** Dovecot, which holds the temporary mailboxes, greets on its IMAP port with "* OK". */
async function imapGreeting(host: string, port: number): Promise<void> {
  if (!(await imapGreets(host, port))) throw new Error(`IMAP ${host}:${port} does not greet (Dovecot down?)`);
}

export async function checkHealth(deps: HealthDeps): Promise<Record<ComponentName, ComponentHealth>> {
  const { config, sql, objects, temporal } = deps;
  const [postgres, minio, temporalHealth, rspamd, dovecot] = await Promise.all([
    timed(() => sql`select 1`),
    timed(async () => {
      if (!(await objects.bucketExists(config.s3.bucket)))
        throw new Error(`bucket ${config.s3.bucket} does not exist`);
    }),
    timed(() =>
      temporal.withDeadline(Date.now() + CHECK_TIMEOUT_MS, () =>
        temporal.workflowService.describeNamespace({ namespace: config.temporal.namespace }),
      ),
    ),
    timed(() => pingRspamd(config.rspamd.url)),
    timed(() => imapGreeting(config.mailbox.host, config.mailbox.imapPort)),
  ]);
  return { postgres, minio, temporal: temporalHealth, rspamd, dovecot };
}

/** GET /healthz: 200 when every component answers, 503 naming the one that does not. */
export function registerHealth(app: FastifyInstance, deps: HealthDeps): void {
  app.get('/healthz', async (_req, reply) => {
    const components = await checkHealth(deps);
    const up = Object.values(components).every((c) => c.status === 'up');
    return reply.code(up ? 200 : 503).send({ status: up ? 'up' : 'down', components });
  });
}

import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Client } from '@temporalio/client';
import pino from 'pino';
import { generate } from 'selfsigned';
import { parse } from 'yaml';
import type { Config } from '../../src/config';
import { type Runbook, runbookSchema } from '../../src/domain/runbook';
import { buildIngest } from '../../src/ingest/build';
import type { Doorbell } from '../../src/ingest/doorbell';
import type { IngestMetrics } from '../../src/ingest/metrics';
import { createSql, type Sql } from '../../src/store/db';
import { createObjectStore, type ObjectStore, readBody } from '../../src/store/objects';
import { freePort } from './ports';
import { testConfig } from './stack';

/** A copy of an example runbook with its own id and domains, so tests sharing one database do not collide. */
export function uniqueRunbook(example: 'harborview-law' | 'meridian-freight'): Runbook {
  const base = runbookSchema.parse(
    parse(readFileSync(join(__dirname, `../../runbooks/${example}.yaml`), 'utf8')),
  );
  const tag = randomUUID().slice(0, 8);
  const rename = (s: string) => s.replace(/([a-z-]+)\.example$/, `$1-${tag}.example`);
  return runbookSchema.parse({
    ...base,
    id: `${example}-${tag}`,
    domains: base.domains.map(rename),
    recipients: base.recipients === 'any' ? 'any' : base.recipients.map(rename),
  });
}

let tlsPair: { key: string; cert: string } | undefined;

export interface TestIngest {
  port: number;
  config: Config;
  sql: Sql;
  objects: ObjectStore;
  rings: string[];
  metrics: IngestMetrics;
  doorbell?: Doorbell;
  close(): Promise<void>;
}

export async function startIngest(
  runbooks: Runbook[],
  opts: {
    env?: Record<string, string>;
    /** With a Temporal client, commits ring the real doorbell (outage workflows start); else they are recorded in `rings`. */
    temporal?: Client;
    /** Run the reconciler (re-ring held mail, sweep orphans) every MXF_RECONCILE_MS, as production does. */
    reconcile?: boolean;
  } = {},
): Promise<TestIngest> {
  const config = testConfig({ MXF_HOSTNAME: 'mx.failover.test', ...opts.env });
  const sql = createSql(config, { connect_timeout: 2, connection: { statement_timeout: 5_000 } });
  const objects = createObjectStore(config);
  tlsPair ??= await generate([{ name: 'commonName', value: 'mx.failover.test' }], { keySize: 2048 }).then(
    (p) => ({
      key: p.private,
      cert: p.cert,
    }),
  );
  const rings: string[] = [];
  const ingest = buildIngest({
    config,
    runbooks,
    log: pino({ level: process.env.TEST_INGEST_LOG ?? 'silent' }),
    sql,
    objects,
    tls: tlsPair!,
    ring: opts.temporal ?? ((id) => rings.push(id)),
    reconcile: opts.reconcile,
  });
  const port = await freePort();
  await ingest.listen(port, '127.0.0.1');
  return {
    port,
    config,
    sql,
    objects,
    rings,
    metrics: ingest.metrics,
    doorbell: ingest.doorbell,
    async close() {
      await ingest.close();
      await sql.end({ timeout: 1 });
    },
  };
}

/** The stored bytes of a held_message row. */
export function readHeld(
  ingest: TestIngest,
  row: { object_key: string; body_offset: string; size_bytes: string },
) {
  const ref = { objectKey: row.object_key, offset: Number(row.body_offset), length: Number(row.size_bytes) };
  return readBody(ingest.objects, ingest.config.s3.bucket, ref);
}

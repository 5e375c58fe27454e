import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, test } from 'node:test';
import { Connection } from '@temporalio/client';
import pino from 'pino';
import { buildApi } from '../src/api/server';
import type { Config } from '../src/config';
import { createSql } from '../src/store/db';
import { createObjectStore } from '../src/store/objects';
import { freePort } from './helpers/ports';
import { testConfig } from './helpers/stack';

const closing: (() => Promise<unknown>)[] = [];
after(() => Promise.all(closing.map((close) => close())));

async function api(config: Config) {
  const sql = createSql(config, { connect_timeout: 1 });
  const temporal = Connection.lazy({ address: config.temporal.address });
  const app = await buildApi({
    config,
    sql,
    objects: createObjectStore(config),
    temporal,
    log: pino({ level: 'silent' }),
    runbooks: [],
  });
  closing.push(
    () => app.close(),
    () => sql.end({ timeout: 1 }),
    () => temporal.close(),
  );
  return app;
}

test('GET /healthz is 200 with every component up', async () => {
  const res = await (await api(testConfig())).inject({ method: 'GET', url: '/healthz' });
  assert.equal(res.statusCode, 200, res.body);
  const body = res.json();
  assert.equal(body.status, 'up');
  assert.deepEqual(Object.keys(body.components).sort(), [
    'dovecot',
    'minio',
    'postgres',
    'rspamd',
    'temporal',
  ]);
  for (const c of Object.values(body.components) as { status: string }[]) assert.equal(c.status, 'up');
});

test('GET /healthz is 503 and names each component that is down', async () => {
  const nobody = await freePort();
  const config = testConfig({
    MXF_S3_ENDPOINT: `http://127.0.0.1:${nobody}`,
    TEMPORAL_ADDRESS: `127.0.0.1:${nobody}`,
    MXF_RSPAMD_URL: `http://127.0.0.1:${nobody}`,
  });
  const res = await (await api(config)).inject({ method: 'GET', url: '/healthz' });
  assert.equal(res.statusCode, 503, res.body);
  const { status, components } = res.json();
  assert.equal(status, 'down');
  assert.equal(components.postgres.status, 'up');
  assert.equal(components.minio.status, 'down');
  assert.equal(components.temporal.status, 'down');
  assert.equal(components.rspamd.status, 'down');
  assert.ok(components.minio.error, 'a down component says why');
});

test('GET /healthz is 503 naming rspamd when only rspamd does not answer', async () => {
  const nobody = await freePort();
  const res = await (await api(testConfig({ MXF_RSPAMD_URL: `http://127.0.0.1:${nobody}` }))).inject({
    method: 'GET',
    url: '/healthz',
  });
  assert.equal(res.statusCode, 503, res.body);
  const { status, components } = res.json();
  assert.equal(status, 'down');
  assert.deepEqual(
    Object.entries(components as Record<string, { status: string }>)
      .filter(([, c]) => c.status === 'down')
      .map(([name]) => name),
    ['rspamd'],
  );
  assert.match(components.rspamd.error, new RegExp(`127\\.0\\.0\\.1:${nobody}/ping: ECONNREFUSED`));
});

test('GET /healthz is 503 naming Dovecot when the temporary mailboxes cannot be reached', async () => {
  const nobody = await freePort();
  const res = await (await api(testConfig({ MXF_IMAP_PORT: String(nobody) }))).inject({
    method: 'GET',
    url: '/healthz',
  });
  assert.equal(res.statusCode, 503, res.body);
  const { components } = res.json();
  const down = Object.entries(components as Record<string, { status: string }>).filter(
    ([, c]) => c.status === 'down',
  );
  assert.deepEqual(
    down.map(([name]) => name),
    ['dovecot'],
  );
  assert.match(components.dovecot.error, new RegExp(`IMAP 127\\.0\\.0\\.1:${nobody} does not greet`));
});

test('GET /healthz reports rspamd down when /ping does not answer "pong"', async () => {
  // Something else on rspamd's port (a proxy's error page, another service) is not rspamd.
  const impostor = createServer((_req, res) => res.end('hello'));
  await new Promise<void>((resolve) => impostor.listen(0, '127.0.0.1', resolve));
  closing.push(() => new Promise((resolve) => impostor.close(resolve)));
  const { port } = impostor.address() as { port: number };
  const res = await (await api(testConfig({ MXF_RSPAMD_URL: `http://127.0.0.1:${port}` }))).inject({
    method: 'GET',
    url: '/healthz',
  });
  assert.equal(res.statusCode, 503, res.body);
  assert.equal(res.json().components.rspamd.status, 'down');
  assert.match(res.json().components.rspamd.error, /answered 200 "hello"/);
});

test('GET /healthz reports a missing bucket as MinIO down', async () => {
  const res = await (await api(testConfig({ MXF_S3_BUCKET: 'no-such-bucket' }))).inject({
    method: 'GET',
    url: '/healthz',
  });
  assert.equal(res.statusCode, 503);
  assert.match(res.json().components.minio.error, /bucket no-such-bucket does not exist/);
});

test('unknown routes answer JSON with a stable error code', async () => {
  const res = await (await api(testConfig())).inject({ method: 'GET', url: '/nope' });
  assert.equal(res.statusCode, 404);
  assert.equal(res.json().error.code, 'NOT_FOUND');
});

test('GET /metrics serves Prometheus text, counting requests by route', async () => {
  const app = await api(testConfig());
  await app.inject({ method: 'GET', url: '/healthz' });
  const res = await app.inject({ method: 'GET', url: '/metrics' });
  assert.equal(res.statusCode, 200);
  assert.match(res.headers['content-type'] as string, /^text\/plain/);
  assert.match(res.body, /^mxf_api_requests_total\{route="\/healthz",code="200"\} 1$/m);
});

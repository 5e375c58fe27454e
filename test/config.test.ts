import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError, parseConfig } from '../src/config';

const problemsOf = (env: Record<string, string>) => {
  try {
    parseConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  assert.fail('expected a configuration error');
};

test('defaults give the documented local endpoints', () => {
  const config = parseConfig({});
  assert.equal(config.smtp.host, '127.0.0.1');
  assert.equal(config.smtp.port, 2525);
  assert.equal(config.api.port, 8080);
  assert.equal(config.temporal.address, '127.0.0.1:7233');
  assert.equal(config.database.managed, true);
  assert.equal(config.s3.port, 9000);
  assert.equal(config.s3.useSSL, false);
});

test('the configuration is frozen once parsed', () => {
  const config = parseConfig({ MXF_SMTP_PORT: '25' });
  assert.throws(() => {
    (config.smtp as { port: number }).port = 2;
  }, TypeError);
});

test('a bad port names the variable, the value and the problem', () => {
  assert.deepEqual(problemsOf({ MXF_SMTP_PORT: 'abc' }), [
    'MXF_SMTP_PORT="abc": expected a TCP port, 1-65535',
  ]);
  assert.deepEqual(problemsOf({ MXF_API_PORT: '70000' }), [
    'MXF_API_PORT="70000": expected a TCP port, 1-65535',
  ]);
});

test('every bad variable is reported, and a misspelt MXF_ variable is not silently ignored', () => {
  const problems = problemsOf({ MXF_SMTP_PROT: '25', DATABASE_URL: 'mysql://x', MXF_S3_ENDPOINT: 'ftp://x' });
  assert.equal(problems.length, 3);
  assert.match(problems[0]!, /^MXF_SMTP_PROT: unknown variable/);
  assert.ok(problems.some((p) => p.startsWith('DATABASE_URL="mysql://x": expected a postgres:// URL')));
  assert.ok(
    problems.some((p) => p.startsWith('MXF_S3_ENDPOINT="ftp://x": expected an http:// or https:// URL')),
  );
});

test('DATABASE_URL, when set, replaces the private cluster', () => {
  const config = parseConfig({ DATABASE_URL: 'postgres://u@db.internal:5432/mx' });
  assert.equal(config.database.managed, false);
  assert.equal(config.database.url, 'postgres://u@db.internal:5432/mx');
});

test('rspamd, DNS and worker metrics: the private defaults', () => {
  const config = parseConfig({});
  assert.deepEqual(config.rspamd, { managed: true, url: 'http://127.0.0.1:11343', port: 11343 });
  assert.deepEqual(config.dns, { servers: [], port: 5354 });
  assert.deepEqual(config.worker, { metricsPort: 9466 });
  assert.equal(parseConfig({ MXF_RSPAMD_PORT: '12000' }).rspamd.url, 'http://127.0.0.1:12000');
});

test('MXF_RSPAMD_URL, when set, replaces the private rspamd', () => {
  const config = parseConfig({ MXF_RSPAMD_URL: 'http://filter.internal:11333/' });
  assert.equal(config.rspamd.managed, false);
  assert.equal(config.rspamd.url, 'http://filter.internal:11333');
  assert.deepEqual(problemsOf({ MXF_RSPAMD_URL: 'filter.internal:11333' }), [
    'MXF_RSPAMD_URL="filter.internal:11333": expected the rspamd worker URL, e.g. http://127.0.0.1:11333',
  ]);
});

test('MXF_DNS_SERVERS is a list of host:port (port 53 when left off); empty means the system resolvers', () => {
  assert.deepEqual(parseConfig({ MXF_DNS_SERVERS: '127.0.0.1:5354, 10.0.0.2,[::1]:53' }).dns.servers, [
    { host: '127.0.0.1', port: 5354 },
    { host: '10.0.0.2', port: 53 },
    { host: '::1', port: 53 },
  ]);
  assert.deepEqual(parseConfig({ MXF_DNS_SERVERS: '' }).dns.servers, []);
  for (const bad of ['127.0.0.1:99999', '127.0.0.1:', 'a b:53', '127.0.0.1:53,,'])
    assert.deepEqual(problemsOf({ MXF_DNS_SERVERS: bad }), [
      `MXF_DNS_SERVERS=${JSON.stringify(bad)}: expected a comma-separated list of host:port, e.g. 127.0.0.1:5354,[::1]:53`,
    ]);
});

for (const entry of ['src/dev.ts', 'src/ingest/main.ts', 'src/api/main.ts', 'src/worker.ts']) {
  test(`${entry} refuses to start on MXF_SMTP_PORT=abc with one clear line`, () => {
    const run = spawnSync(process.execPath, ['--import', 'tsx', join(__dirname, '..', entry)], {
      env: { ...process.env, MXF_SMTP_PORT: 'abc' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    assert.equal(run.status, 78, run.stderr);
    assert.equal(
      run.stderr,
      'mx-failover: configuration error: MXF_SMTP_PORT="abc": expected a TCP port, 1-65535\n',
    );
  });
}

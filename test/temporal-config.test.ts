import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { TOOLS_BIN } from '../src/stack/temporal';
import { CLUSTER_POSTGRES_CONNECTIONS, temporalServerEnv } from '../src/stack/temporal-server';

// `npm run cluster` and docker-compose.yml must run the same Temporal server: the same release, built from the
// same module, with the same configuration file, persistence and visibility. No Docker engine runs here, so the
// compose side is read from docker-compose.yml and the Dockerfile, and the configuration is rendered by the real
// server binary under each side's environment and compared.
const ROOT = join(__dirname, '..');
const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<
    string,
    {
      build?: { target?: string; args?: Record<string, string> };
      command?: string[];
      environment?: Record<string, string | number>;
    }
  >;
};
const tools = readFileSync(join(ROOT, 'scripts/tools.sh'), 'utf8');
const toolsVar = (name: string) => new RegExp(`^${name}=(\\S+)$`, 'm').exec(tools)?.[1];
const dockerfile = readFileSync(join(ROOT, 'Dockerfile'), 'utf8');
const expand = (v: string | number) => String(v).replace(/\$\{[A-Z_]+:-([^}]*)\}/g, '$1');

test('compose builds the Temporal server, SQL tool and Web UI at the versions scripts/tools.sh builds', () => {
  const serverVersion = toolsVar('TEMPORAL_SERVER_VERSION');
  const uiVersion = toolsVar('TEMPORAL_UI_VERSION');
  assert.match(serverVersion ?? '', /^v1\.\d+\.\d+$/);
  for (const name of ['temporal-schema', 'temporal', 'temporal-ui']) {
    const build = compose.services[name]?.build;
    assert.equal(build?.target, 'temporal', `${name} runs the Dockerfile's temporal target`);
    assert.equal(build?.args?.TEMPORAL_SERVER_VERSION, serverVersion, name);
    assert.equal(build?.args?.TEMPORAL_UI_VERSION, uiVersion, name);
  }
  // The Dockerfile's own build-argument references, as Docker expands them.
  const arg = (name: string) => `\${${name}}`;
  for (const pkg of [
    `go.temporal.io/server/cmd/server@${arg('TEMPORAL_SERVER_VERSION')}`,
    `go.temporal.io/server/cmd/tools/sql@${arg('TEMPORAL_SERVER_VERSION')}`,
    `github.com/temporalio/ui-server/v2/cmd/server@${arg('TEMPORAL_UI_VERSION')}`,
  ])
    assert.ok(dockerfile.includes(`go install ${pkg}`), `the Dockerfile builds ${pkg}`);
  assert.match(dockerfile, /^COPY temporal \/etc\/mx-failover\/temporal$/m);
});

test("the cluster's Temporal server is the release the CLI's dev server embeds, built from the same module", () => {
  const moduleOf = (binary: string, mod: string) =>
    execFileSync('go', ['version', '-m', join(TOOLS_BIN, binary)])
      .toString()
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .find((f) => (f[0] === 'mod' || f[0] === 'dep') && f[1] === mod)?.[2];
  const version = toolsVar('TEMPORAL_SERVER_VERSION');
  assert.equal(moduleOf('temporal', 'go.temporal.io/server'), version, 'the CLI embeds this server release');
  assert.equal(moduleOf('temporal-server', 'go.temporal.io/server'), version);
  assert.equal(moduleOf('temporal-sql-tool', 'go.temporal.io/server'), version);
  const ui = toolsVar('TEMPORAL_UI_VERSION');
  assert.equal(moduleOf('temporal', 'github.com/temporalio/ui-server/v2'), ui, 'the CLI embeds this Web UI');
  assert.equal(moduleOf('temporal-ui-server', 'github.com/temporalio/ui-server/v2'), ui);
});

test('compose starts the server and sets up its schema with the same scripts as npm run cluster', () => {
  assert.deepEqual(compose.services.temporal?.command, ['bash', '/etc/mx-failover/temporal/start-server.sh']);
  assert.deepEqual(compose.services['temporal-schema']?.command, [
    'bash',
    '/etc/mx-failover/temporal/schema.sh',
  ]);
  const source = readFileSync(join(ROOT, 'src/stack/temporal-server.ts'), 'utf8');
  assert.ok(source.includes("'start-server.sh'") && source.includes("'schema.sh'"));
});

/** The server's configuration as the binary renders temporal/config/mxfailover.yaml under `env`. */
function render(env: Record<string, string>): Record<string, unknown> {
  const out = execFileSync(
    join(TOOLS_BIN, 'temporal-server'),
    // render-config, unlike start, does not join --config to --root: give the folder whole.
    ['--config', join(ROOT, 'temporal/config'), '--env', 'mxfailover', 'render-config'],
    { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  ).toString();
  return parse(out.slice(out.search(/^\S/m))) as Record<string, unknown>;
}

/** What the environment may set: where things listen and who signs in. Everything else must be the file's. */
const PER_DEPLOYMENT =
  /^(connectAddr|user|password|grpcPort|httpPort|membershipPort|bindOnIP|broadcastAddress|rpcAddress|httpAddress|filepath)$/;

function withoutAddresses(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutAddresses);
  if (value === null || typeof value !== 'object') return value;
  return Object.fromEntries(
    Object.entries(value)
      .filter(([k]) => !PER_DEPLOYMENT.test(k))
      .map(([k, v]) => [k, withoutAddresses(v)]),
  );
}

const composeEnv = () => ({
  ...Object.fromEntries(
    Object.entries(compose.services.temporal?.environment ?? {}).map(([k, v]) => [k, expand(v)]),
  ),
  // What start-server.sh sets in the container before it execs the server.
  TEMPORAL_BROADCAST_ADDRESS: '172.18.0.5',
});
const clusterEnv = async () =>
  (await temporalServerEnv(7233, {
    host: '127.0.0.1',
    port: 5432,
    user: 'postgres',
    password: '',
  })) as Record<string, string>;

test('compose and npm run cluster render the same Temporal configuration, addresses and accounts aside', async () => {
  const [a, b] = [render(composeEnv()), render(await clusterEnv())];
  assert.deepEqual(withoutAddresses(a), withoutAddresses(b));
  const persistence = a.persistence as {
    numHistoryShards: number;
    defaultStore: string;
    visibilityStore: string;
    datastores: Record<string, { sql: Record<string, unknown> }>;
  };
  const [store, visibility] = [persistence.defaultStore, persistence.visibilityStore].map(
    (name) => persistence.datastores[name]!.sql,
  );
  assert.equal(store!.pluginName, 'postgres12', 'persistence on PostgreSQL');
  assert.equal(visibility!.pluginName, 'postgres12', 'visibility on PostgreSQL (advanced visibility on SQL)');
  assert.equal(store!.databaseName, 'temporal');
  assert.equal(visibility!.databaseName, 'temporal_visibility');
});

test("compose's server reaches its postgres service with that service's account, and tells members where it is", () => {
  const composeServer = render(composeEnv()) as {
    persistence: { datastores: Record<string, { sql: Record<string, unknown> }> };
    global: { membership: { broadcastAddress: string } };
    clusterMetadata: { clusterInformation: { active: { rpcAddress: string } } };
  };
  const pg = compose.services.postgres?.environment ?? {};
  for (const { sql } of Object.values(composeServer.persistence.datastores)) {
    assert.equal(sql.connectAddr, 'postgres:5432');
    assert.equal(sql.user, expand(pg.POSTGRES_USER!));
    assert.equal(sql.password, '******', 'a password is set (the server masks it when rendering)');
  }
  const temporalEnv = compose.services.temporal?.environment ?? {};
  assert.equal(expand(temporalEnv.POSTGRES_PWD!), expand(pg.POSTGRES_PASSWORD!));
  assert.equal(composeServer.global.membership.broadcastAddress, '172.18.0.5');
  assert.equal(composeServer.clusterMetadata.clusterInformation.active.rpcAddress, '172.18.0.5:7233');
});

test('listening on every interface without a broadcast address is refused, not stored as 0.0.0.0', () => {
  const { TEMPORAL_BROADCAST_ADDRESS: _, ...env } = composeEnv();
  assert.throws(() => render(env), /TEMPORAL_BROADCAST_ADDRESS/);
});

test("compose's PostgreSQL allows as many connections as npm run cluster's", () => {
  const command = (compose.services.postgres?.command ?? []).join(' ');
  const max = Number(/max_connections=(\d+)/.exec(command)?.[1] ?? 100);
  assert.ok(max >= CLUSTER_POSTGRES_CONNECTIONS, `compose's postgres allows ${max}`);
});

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { TOOLS_BIN } from '../src/stack/temporal';
import { temporalServerEnv } from '../src/stack/temporal-server';

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
function render(env: Record<string, string>) {
  const out = execFileSync(
    join(TOOLS_BIN, 'temporal-server'),
    // render-config, unlike start, does not join --config to --root: give the folder whole.
    ['--config', join(ROOT, 'temporal/config'), '--env', 'mxfailover', 'render-config'],
    { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  ).toString();
  return parse(out.slice(out.search(/^\S/m))) as {
    persistence: {
      numHistoryShards: number;
      defaultStore: string;
      visibilityStore: string;
      datastores: Record<string, { sql: Record<string, unknown> }>;
    };
  };
}

test('compose and npm run cluster render the same persistence and visibility: PostgreSQL, same databases', async () => {
  const composeEnv = Object.fromEntries(
    Object.entries(compose.services.temporal?.environment ?? {}).map(([k, v]) => [k, expand(v)]),
  );
  const clusterEnv = (await temporalServerEnv(7233, {
    host: '127.0.0.1',
    port: 5432,
    user: 'postgres',
    password: '',
  })) as Record<string, string>;
  const [a, b] = [render(composeEnv), render(clusterEnv)];
  assert.equal(
    a.persistence.numHistoryShards,
    b.persistence.numHistoryShards,
    'shards fix a cluster for life',
  );
  assert.equal(a.persistence.defaultStore, b.persistence.defaultStore);
  assert.equal(a.persistence.visibilityStore, b.persistence.visibilityStore);
  for (const store of [a.persistence.defaultStore, a.persistence.visibilityStore]) {
    const [sa, sb] = [a.persistence.datastores[store]!.sql, b.persistence.datastores[store]!.sql];
    assert.equal(sa.pluginName, 'postgres12', `${store} is PostgreSQL (advanced visibility on SQL)`);
    assert.equal(sa.pluginName, sb.pluginName);
    assert.equal(sa.databaseName, sb.databaseName);
  }
  assert.equal(a.persistence.datastores[a.persistence.defaultStore]!.sql.connectAddr, 'postgres:5432');
  assert.equal(a.persistence.datastores[a.persistence.defaultStore]!.sql.databaseName, 'temporal');
  assert.equal(
    a.persistence.datastores[a.persistence.visibilityStore]!.sql.databaseName,
    'temporal_visibility',
  );
});

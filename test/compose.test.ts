import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { parseConfig } from '../src/config';

// No Docker engine runs here, so docker-compose.yml is checked by reading it: every service of ours must get an
// environment our configuration schema accepts, and must run a file the build produces.
const ROOT = join(__dirname, '..');
const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
  services: Record<
    string,
    { build?: unknown; command?: string[]; environment?: Record<string, string | number> }
  >;
};

// ${VAR:-default} as compose expands it when VAR is unset.
const expand = (value: string | number) => String(value).replace(/\$\{[A-Z_]+:-([^}]*)\}/g, '$1');

const ours = Object.entries(compose.services).filter(([, s]) => s.build === '.');

test('compose runs ingest, worker, api and init from our Dockerfile', () => {
  assert.deepEqual(ours.map(([name]) => name).sort(), ['api', 'ingest', 'init', 'worker']);
});

test('compose points every service of ours at its rspamd service', () => {
  const rspamd = compose.services.rspamd as { image?: string } | undefined;
  assert.match(rspamd?.image ?? '', /^rspamd\/rspamd:/);
  for (const [name, service] of ours) {
    const env = Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, expand(v)]));
    const config = parseConfig(env);
    assert.equal(config.rspamd.managed, false, `${name} points at the rspamd service`);
    assert.equal(new URL(config.rspamd.url).hostname, 'rspamd', name);
  }
});

for (const [name, service] of ours) {
  test(`compose service ${name}: its environment passes the config schema and its command exists`, () => {
    const env = Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, expand(v)]));
    const config = parseConfig(env);
    assert.equal(config.database.managed, false, 'compose points at its postgres service');
    const [node, script] = service.command ?? [];
    assert.equal(node, 'node');
    const source = join(ROOT, script!.replace(/^dist\//, 'src/').replace(/\.js$/, '.ts'));
    assert.ok(existsSync(source), `${script} is built from ${source}`);
  });
}

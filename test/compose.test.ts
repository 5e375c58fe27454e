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

// ${VAR:-default} as compose expands it when VAR is unset; ${VAR:?message} (required) as if VAR were set.
const expand = (value: string | number) =>
  String(value)
    .replace(/\$\{[A-Z_]+:-([^}]*)\}/g, '$1')
    .replace(/\$\{([A-Z_]+):\?[^}]*\}/g, 'value-of-$1-as-set-by-the-operator');

/** Built from this repository's Dockerfile (any of its targets); MinIO's image has a Dockerfile of its own. */
const fromOurDockerfile = (build: unknown) =>
  build === '.' ||
  (typeof build === 'object' &&
    (build as { context?: string }).context === '.' &&
    ((build as { dockerfile?: string }).dockerfile ?? 'Dockerfile') === 'Dockerfile');
const ours = Object.entries(compose.services).filter(([, s]) => fromOurDockerfile(s.build));
/** Our Node services: the Temporal ones run Go binaries, not dist/. */
const nodeServices = ours.filter(([name]) => !name.startsWith('temporal'));

test('compose runs ingest, worker, api, init, the mailbox service, Dovecot and Temporal from our Dockerfile', () => {
  assert.deepEqual(ours.map(([name]) => name).sort(), [
    'api',
    'dovecot',
    'ingest',
    'init',
    'mailbox',
    'temporal',
    'temporal-schema',
    'temporal-ui',
    'worker',
  ]);
});

test('compose: Dovecot and the services that reach it agree on its address, ports and master secret', () => {
  const env = (name: string) =>
    parseConfig(
      Object.fromEntries(
        Object.entries(compose.services[name]?.environment ?? {}).map(([k, v]) => [k, expand(v)]),
      ),
    );
  const dovecot = env('dovecot');
  const mailbox = env('mailbox');
  for (const name of ['worker', 'mailbox', 'api']) {
    const c = env(name);
    assert.equal(c.mailbox.host, 'dovecot', `${name} reaches Dovecot by its service name`);
    assert.equal(
      c.mailbox.masterSecret,
      dovecot.mailbox.masterSecret,
      `${name} shares Dovecot's master secret`,
    );
    assert.equal(c.mailbox.lmtpPort, dovecot.mailbox.lmtpPort, name);
    assert.equal(c.mailbox.doveadmPort, dovecot.mailbox.doveadmPort, name);
  }
  assert.equal(mailbox.mailbox.imapPort, dovecot.mailbox.imapPort);
  assert.equal(dovecot.mailbox.serviceHost, 'mailbox', 'Dovecot hands submissions to the mailbox service');
  const secret = String(compose.services.dovecot?.environment?.MXF_DOVECOT_MASTER_SECRET);
  assert.match(
    secret,
    /^\$\{MXF_DOVECOT_MASTER_SECRET:\?/,
    'no well-known default master secret: compose refuses to start',
  );
  assert.ok(!dovecot.mailbox.masterNets.split(',').includes('0.0.0.0/0'), 'master sign-ins only from inside');
  assert.equal(mailbox.mailbox.relayPort, dovecot.mailbox.relayPort);
  assert.equal(mailbox.mailbox.authPolicyPort, dovecot.mailbox.authPolicyPort);
});

test('compose points every service of ours at its rspamd service', () => {
  const rspamd = compose.services.rspamd as { image?: string } | undefined;
  assert.match(rspamd?.image ?? '', /^rspamd\/rspamd:/);
  for (const [name, service] of nodeServices) {
    const env = Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, expand(v)]));
    const config = parseConfig(env);
    assert.equal(config.rspamd.managed, false, `${name} points at the rspamd service`);
    assert.equal(new URL(config.rspamd.url).hostname, 'rspamd', name);
  }
});

for (const [name, service] of nodeServices) {
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

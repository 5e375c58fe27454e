import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { startApi } from './helpers/api';
import { ROOT, run } from './helpers/run';
import { testConfig, testTmp } from './helpers/stack';

// The mxf commands that do not go through an outage: tokens (straight to PostgreSQL) and runbooks check.

const mxf = (args: string[], env: NodeJS.ProcessEnv = process.env) => run(join(ROOT, 'bin/mxf'), args, env);

test('mxf tokens: create prints a working token once; revoke stops it; bad input exits 2', async () => {
  const api = await startApi(testConfig(), []);
  try {
    const created = await mxf(['tokens', 'create', 'carol', 'viewer']);
    assert.equal(created.code, 0, created.stderr);
    const token = created.stdout.trim();
    assert.match(token, /^mxf_[\w-]{43}$/);
    const [row] = await api.sql<{ role: string; token_hash: Buffer }[]>`
      select role, token_hash from api_token where name = 'carol'`;
    assert.equal(row!.role, 'viewer');
    assert.equal(
      row!.token_hash.toString('hex'),
      createHash('sha256').update(token).digest('hex'),
      'what is stored is exactly the SHA-256 of the printed token, as the README says',
    );
    const env = { ...process.env, MXF_API_URL: api.url, MXF_TOKEN: token };
    const listed = await mxf(['outages', 'list', '--json'], env);
    assert.equal(listed.code, 0, listed.stderr);
    assert.ok(Array.isArray(JSON.parse(listed.stdout).outages));
    const denied = await mxf(['outages', 'declare', 'harborview-law'], env);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /FORBIDDEN: carol is a viewer/);
    const again = await mxf(['tokens', 'create', 'carol', 'admin']);
    assert.equal(again.code, 1, 'an active token is not silently replaced');
    assert.match(again.stderr, /carol already has an active viewer token/);
    assert.equal((await mxf(['tokens', 'revoke', 'carol'])).code, 0);
    const revoked = await mxf(['outages', 'list'], env);
    assert.equal(revoked.code, 1);
    assert.match(revoked.stderr, /UNAUTHENTICATED/);
    const recreated = await mxf(['tokens', 'create', 'carol', 'operator']);
    assert.equal(recreated.code, 0, 'a revoked name can be given a new token');
    const replaced = await mxf(['tokens', 'create', 'carol', 'operator', '--replace']);
    assert.equal(replaced.code, 0);
    const stale = { ...env, MXF_TOKEN: recreated.stdout.trim() };
    assert.equal((await mxf(['outages', 'list'], stale)).code, 1, 'the replaced token no longer works');
    const audit = await api.sql<{ action: string; outcome: string; actor: string }[]>`
      select action, outcome, actor from audit_event where target = 'carol' order by id`;
    assert.deepEqual(
      audit.map((a) => `${a.action} ${a.outcome}`),
      ['token.create ok', 'token.revoke ok', 'token.create ok', 'token.create ok'],
    );
    assert.match(audit[0]!.actor, /^cli:/);
    assert.equal((await mxf(['tokens', 'create', 'dave', 'superuser'])).code, 2);
    assert.equal((await mxf(['tokens', 'create', '../dave', 'admin'])).code, 2);
    const unreachable = await mxf(['customers'], { ...env, MXF_API_URL: 'http://127.0.0.1:9' });
    assert.equal(unreachable.code, 1);
    assert.match(unreachable.stderr, /API_UNREACHABLE/);
  } finally {
    await api.close();
  }
});

test('mxf runbooks check: 0 for the checked-in runbooks, 1 with file:line for a broken one', async () => {
  const ok = await mxf(['runbooks', 'check', join(ROOT, 'runbooks')]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /runbook\(s\) OK: .*harborview-law/);
  const dir = mkdtempSync(join(testTmp(), 'runbooks-'));
  writeFileSync(join(dir, 'broken.yaml'), 'id: broken\nname: Broken\ndomains: [not a domain]\n');
  const bad = await mxf(['runbooks', 'check', dir]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /broken\.yaml:\d+:\d+: /);
});

test('mxf usage: help exits 0, and a usage error (unknown command, missing or extra argument, an option that command does not take) exits 2', async () => {
  const help = await mxf(['--help']);
  assert.equal(help.code, 0);
  for (const command of [
    'customers',
    'outages list',
    'instruct <outage> redirect',
    'quarantine list <outage>',
    'quarantine release <message-id>',
    'quarantine spam <message-id>',
    'tokens revoke <name>',
  ])
    assert.ok(help.stdout.includes(`  ${command}`), command);
  for (const args of [
    [],
    ['outages', 'frobnicate'],
    ['outages', 'show'],
    ['outages', 'show', 'harborview-law', 'extra'],
    ['customers', '--to', 'someone@example.com'],
    ['instruct', 'harborview-law', 'hold', '--bogus'],
    ['instruct', 'harborview-law', 'resolve', '--deliver-unscored'],
    ['quarantine', 'release'],
    ['quarantine', 'spam', '1', '2'],
    ['quarantine', 'list', 'harborview-law', '--to', 'someone@example.com'],
  ]) {
    const r = await mxf(args);
    assert.equal(r.code, 2, `mxf ${args.join(' ')}: ${r.stderr}`);
  }
  const misplaced = await mxf(['audit', '--ids']);
  assert.match(misplaced.stderr, /^mxf: audit: Unknown option '--ids'/);
});

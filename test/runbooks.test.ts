import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { acceptsRecipient, durationMs, runbookSchema } from '../src/domain/runbook';
import { formatProblem, loadRunbooks } from '../src/runbooks/load';

const EXAMPLES = join(__dirname, '..', 'runbooks');

function copyOfExamples(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mxf-runbooks-'));
  cpSync(EXAMPLES, dir, { recursive: true });
  return dir;
}

function edit(dir: string, file: string, from: string | RegExp, to: string) {
  const path = join(dir, file);
  const before = readFileSync(path, 'utf8');
  const after = before.replace(from, to);
  assert.notEqual(after, before, `test setup: ${from} not found in ${file}`);
  writeFileSync(path, after);
}

test('the shipped example runbooks are valid', async () => {
  const { runbooks, problems } = await loadRunbooks(EXAMPLES);
  assert.deepEqual(problems, []);
  assert.deepEqual(runbooks.map((r) => r.id).sort(), ['harborview-law', 'meridian-freight']);
  const meridian = runbooks.find((r) => r.id === 'meridian-freight')!;
  assert.equal(meridian.recipients, 'any');
  assert.equal(meridian.domains.length, 2);
});

test('a broken runbook is reported with file, line, field and problem', async () => {
  const dir = copyOfExamples();
  edit(dir, 'harborview-law.yaml', 'probeInterval: 2m', 'probeInterval: 2 minutes');
  edit(dir, 'harborview-law.yaml', 'ratePerSecond: 20', 'ratePerSecnd: 20');
  const { runbooks, problems } = await loadRunbooks(dir);
  assert.deepEqual(runbooks, [], 'a folder with errors yields no runbooks at all');
  const lines = problems.map(formatProblem);
  const lineOf = (text: string) =>
    readFileSync(join(dir, 'harborview-law.yaml'), 'utf8')
      .split('\n')
      .findIndex((l) => l.includes(text)) + 1;
  const expect = (re: string) =>
    assert.ok(
      lines.some((l) => new RegExp(re).test(l)),
      `${re}\n${lines.join('\n')}`,
    );
  expect(`harborview-law\\.yaml:${lineOf('2 minutes')}:\\d+: detection\\.probeInterval: expected a duration`);
  expect(`harborview-law\\.yaml:${lineOf('ratePerSecnd')}:\\d+: restore: unknown field ratePerSecnd`);
  assert.ok(
    lines.some((l) => /restore\.ratePerSecond: is required but missing/.test(l)),
    lines.join('\n'),
  );
});

test('two customers may not claim the same domain', async () => {
  const dir = copyOfExamples();
  edit(
    dir,
    'meridian-freight.yaml',
    'domains: [meridianfreight.example, meridian-logistics.example]',
    'domains: [meridianfreight.example, harborviewlaw.example]',
  );
  const lines = (await loadRunbooks(dir)).problems.map(formatProblem);
  assert.equal(lines.length, 1, lines.join('\n'));
  assert.match(
    lines[0]!,
    /meridian-freight\.yaml:\d+:\d+: domains\.1: harborviewlaw\.example is already claimed by .*harborview-law\.yaml/,
  );
});

test('the file name must be the runbook id', async () => {
  const dir = copyOfExamples();
  edit(dir, 'harborview-law.yaml', 'id: harborview-law', 'id: harborview');
  const lines = (await loadRunbooks(dir)).problems.map(formatProblem);
  assert.match(
    lines.join('\n'),
    /harborview-law\.yaml:\d+:\d+: id: is "harborview" but the file is harborview-law\.yaml/,
  );
});

test('listed recipients must belong to the runbook domains, and contacts must be reachable', () => {
  const base = runbookSchema.parse(
    (require('yaml') as typeof import('yaml')).parse(
      readFileSync(join(EXAMPLES, 'harborview-law.yaml'), 'utf8'),
    ),
  );
  const bad = runbookSchema.safeParse({
    ...base,
    recipients: ['someone@elsewhere.example'],
    contacts: [{ name: 'Nobody', role: 'x' }],
  });
  assert.equal(bad.success, false);
  const messages = bad.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  assert.ok(
    messages.some((m) => m.startsWith('recipients.0: someone@elsewhere.example is not in one of')),
    messages.join('\n'),
  );
  assert.ok(
    messages.some((m) => m.startsWith('contacts.0: a contact needs a phone or an email')),
    messages.join('\n'),
  );
});

test('recipient matching is case-insensitive and honours `any`', async () => {
  const { runbooks } = await loadRunbooks(EXAMPLES);
  const law = runbooks.find((r) => r.id === 'harborview-law')!;
  const freight = runbooks.find((r) => r.id === 'meridian-freight')!;
  assert.equal(acceptsRecipient(law, 'Reception@HarborviewLaw.example'), true);
  assert.equal(acceptsRecipient(law, 'partner@harborviewlaw.example'), false);
  assert.equal(acceptsRecipient(freight, 'anyone@meridian-logistics.example'), true);
  assert.equal(acceptsRecipient(freight, 'anyone@harborviewlaw.example'), false);
});

test('durations are the strings Temporal timers accept', () => {
  assert.equal(durationMs('10s'), 10_000);
  assert.equal(durationMs('2m'), 120_000);
  assert.equal(durationMs('72h'), 259_200_000);
  assert.throws(() => durationMs('2 minutes'));
});

test('npm run runbooks:check passes on the examples and fails naming file and field on a broken copy', () => {
  const ok = spawnSync('npm', ['run', '-s', 'runbooks:check'], {
    cwd: join(__dirname, '..'),
    encoding: 'utf8',
  });
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /2 runbook\(s\) OK/);
  const dir = copyOfExamples();
  edit(dir, 'meridian-freight.yaml', 'mode: approval', 'mode: sometimes');
  const bad = spawnSync('npm', ['run', '-s', 'runbooks:check', '--', dir], {
    cwd: join(__dirname, '..'),
    encoding: 'utf8',
  });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /meridian-freight\.yaml:\d+:\d+: restore\.mode: /);
});

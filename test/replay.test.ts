import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Worker } from '@temporalio/worker';
import { workflowBundle } from './helpers/temporal';

// Recorded histories of real outages (test/outage-e2e.test.ts with RECORD_HISTORIES=1) must replay against the
// current workflow code. A change that breaks this needs patched() so that running outages keep their course.
const DIR = join(__dirname, 'histories');

test('recorded outage histories replay without nondeterminism', async () => {
  const files = readdirSync(DIR).filter((f) => f.endsWith('.json'));
  assert.ok(files.length >= 2, 'histories are recorded');
  const histories = files.map((f) => ({
    workflowId: f.replace(/\.json$/, ''),
    // The worker takes the CLI's JSON as it is.
    history: JSON.parse(readFileSync(join(DIR, f), 'utf8')) as unknown,
  }));
  const replayed: string[] = [];
  for await (const result of Worker.runReplayHistories(
    { workflowBundle: await workflowBundle() },
    histories,
  )) {
    assert.equal(result.error, undefined, `${result.workflowId}: ${result.error?.message}`);
    replayed.push(result.workflowId);
  }
  assert.deepEqual(replayed.sort(), histories.map((h) => h.workflowId).sort());
});

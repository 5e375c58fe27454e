import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { type OutageWorkflow, outageWorkflowId } from '../src/domain/outage';
import { runbookSchema } from '../src/domain/runbook';
import type { ManagedProcess } from '../src/stack/process';
import { startTemporalDevServer } from '../src/stack/temporal';
import { createSql } from '../src/store/db';
import { commitHeldMessage } from '../src/store/messages';
import { ringOutage } from '../src/temporal';
import { mailHeldSignal, statusQuery } from '../src/workflows/messages';
import { eventually } from './helpers/eventually';
import { heldMessage } from './helpers/fixtures';
import { uniqueRunbook } from './helpers/ingest';
import { freePort } from './helpers/ports';
import { testConfig, testTmp } from './helpers/stack';
import { withWorker } from './helpers/temporal';

// Long outages continue-as-new before Temporal's history limits. A dev server of its own, told to suggest it
// after 40 events instead of 4,096, makes a long outage out of a few dozen doorbell rings.
const running: ManagedProcess[] = [];
const sql = createSql(testConfig());
after(async () => {
  await Promise.all(running.map((p) => p.stop()));
  await sql.end();
});

test('a long outage continues as new, carrying its state, and keeps holding', async () => {
  const port = await freePort();
  const logs = join(testTmp(), `can-${randomUUID().slice(0, 8)}`);
  mkdirSync(logs);
  running.push(
    await startTemporalDevServer({
      port,
      namespace: 'default',
      logFile: join(logs, 'temporal.log'),
      extraArgs: ['--dynamic-config-value', 'limit.historyCount.suggestContinueAsNew=40'],
    }),
  );
  const address = `127.0.0.1:${port}`;
  const runbook = runbookSchema.parse({
    ...uniqueRunbook('harborview-law'),
    primary: [{ host: '127.0.0.1', port: await freePort() }], // down
    detection: { probeInterval: '1s', confirmAfter: '1s' },
    notify: [{ after: '0s', channels: ['ops-call'] }],
    instructions: { default: { after: '1s', action: 'hold' } },
  });
  const recipient = (runbook.recipients as string[])[0]!;
  const taskQueue = `can-${randomUUID()}`;
  const connection = await Connection.connect({ address });
  const client = new Client({ connection });
  try {
    await withWorker({ address, namespace: 'default', taskQueue, sql }, async () => {
      await commitHeldMessage(sql, heldMessage(runbook.id, [recipient]));
      const handle = await ringOutage(client, taskQueue, runbook, 1);
      const firstRun = handle.signaledRunId;
      assert.ok(firstRun);
      await eventually(
        'holding by the runbook default',
        () => handle.query(statusQuery),
        (s) => s.phase === 'holding',
        15_000,
      );
      let rings = 1;
      for (; rings <= 40; rings++) {
        await commitHeldMessage(sql, heldMessage(runbook.id, [recipient]));
        await handle.signal(mailHeldSignal, { acceptedSinceLastRing: 1 });
        await sleep(50);
        if ((await handle.describe()).runId !== firstRun) break;
      }
      const latest = client.workflow.getHandle<OutageWorkflow>(outageWorkflowId(runbook.id));
      assert.notEqual((await latest.describe()).runId, firstRun, `continued as new within ${rings} rings`);
      const status = await eventually(
        'the new run carries the state',
        () => latest.query(statusQuery),
        (s) => s.heldMessages === rings + 1,
      );
      assert.equal(status.phase, 'holding');
      assert.equal(status.history.length, 1, 'the instruction history came along');
      assert.equal(status.callTasks.length, 1, 'and the open call task');
      assert.ok(status.declaredAt);
      await latest.terminate('test finished');
    });
  } finally {
    await connection.close();
  }
});

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Client, Connection } from '@temporalio/client';
import { outageWorkflowId } from '../src/domain/outage';
import type { ManagedProcess } from '../src/stack/process';
import { startTemporalDevServer } from '../src/stack/temporal';
import { commitHeldMessage } from '../src/store/messages';
import { statusQuery } from '../src/workflows/messages';
import { eventually } from './helpers/eventually';
import { heldMessage } from './helpers/fixtures';
import { startIngest, uniqueRunbook } from './helpers/ingest';
import { freePort } from './helpers/ports';
import { testTmp } from './helpers/stack';
import { withWorker } from './helpers/temporal';

// DESIGN 2: ingest depends only on storage. Mail committed by an ingest that died before its doorbell rang (its
// pending ring died with it) while Temporal was down is found by the reconciler of any ingest node, which keeps
// ringing until Temporal answers; the outage workflow then counts that mail. Temporal is a server of this test's
// own, so stopping it disturbs nothing else.

const running: ManagedProcess[] = [];
after(() => Promise.all(running.map((p) => p.stop())));

test('the reconciler rings a customer whose mail was held while Temporal was down, once Temporal is back', async () => {
  const runbook = uniqueRunbook('harborview-law');
  const to = [(runbook.recipients as string[])[0]!];
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const env = {
    TEMPORAL_ADDRESS: address,
    MXF_TASK_QUEUE: `reconcile-${randomUUID()}`,
    MXF_RECONCILE_MS: '500',
    MXF_DOORBELL_MS: '50',
  };
  const client = new Client({ connection: Connection.lazy({ address }), namespace: 'default' });
  // Started with Temporal down; nothing of this customer rings the doorbell but the reconciler.
  const ingest = await startIngest([runbook], { env, temporal: client, reconcile: true });
  try {
    await commitHeldMessage(ingest.sql, heldMessage(runbook.id, to));
    await commitHeldMessage(ingest.sql, heldMessage(runbook.id, to));
    await sleep(1_500); // several reconciler rounds fail against the absent Temporal
    running.push(
      await startTemporalDevServer({
        port,
        namespace: 'default',
        logFile: join(testTmp(), `reconcile-temporal-${port}.log`),
      }),
    );
    const { taskQueue } = ingest.config.temporal;
    await withWorker({ address, namespace: 'default', taskQueue, sql: ingest.sql }, async () => {
      const handle = client.workflow.getHandle(outageWorkflowId(runbook.id));
      const status = await eventually(
        'the outage workflow, started by the reconciler, counts both messages',
        () => handle.query(statusQuery),
        (s) => s.heldMessages === 2,
        60_000,
      );
      assert.equal(status.customerId, runbook.id);
      assert.ok(status.doorbellRings >= 1);
      await handle.terminate('test finished');
    });
  } finally {
    await ingest.close();
    await client.connection.close();
  }
});

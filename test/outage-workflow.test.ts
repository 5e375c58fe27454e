import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type Client, Connection, Client as TemporalClient } from '@temporalio/client';
import { parse } from 'yaml';
import { type OutageWorkflow, outageWorkflowId } from '../src/domain/outage';
import { runbookSchema } from '../src/domain/runbook';
import {
  customerIdKey,
  heldMessagesKey,
  mxDomainsKey,
  outagePhaseKey,
} from '../src/domain/search-attributes';
import { createSql } from '../src/store/db';
import { commitHeldMessage } from '../src/store/messages';
import { mailHeldSignal, statusQuery } from '../src/workflows/messages';
import { eventually } from './helpers/eventually';
import { heldMessage } from './helpers/fixtures';
import { testConfig } from './helpers/stack';
import { withWorker } from './helpers/temporal';

// Goes through the real Temporal dev server, a real worker with the real activities, and real PostgreSQL.
const config = testConfig();
const sql = createSql(config);
const runbook = runbookSchema.parse(
  parse(readFileSync(join(__dirname, '../runbooks/harborview-law.yaml'), 'utf8')),
);
let client: Client;
let connection: Connection;

before(async () => {
  connection = await Connection.connect({ address: config.temporal.address });
  client = new TemporalClient({ connection, namespace: config.temporal.namespace });
});
after(async () => {
  await connection?.close();
  await sql.end();
});

const holdMessage = (customerId: string, recipients: string[]) =>
  commitHeldMessage(sql, heldMessage(customerId, recipients));

test('a doorbell starts the outage workflow, which counts held mail from PostgreSQL and indexes it', async () => {
  const taskQueue = `test-${randomUUID()}`;
  const customerId = `harborview-law-${randomUUID().slice(0, 8)}`;
  const { address, namespace } = config.temporal;
  await withWorker({ address, namespace, taskQueue, sql }, async () => {
    const first = await holdMessage(customerId, ['reception@harborviewlaw.example']);
    await holdMessage(customerId, ['it@harborviewlaw.example', 'reception@harborviewlaw.example']);
    const handle = await client.workflow.signalWithStart<OutageWorkflow, [{ acceptedSinceLastRing: number }]>(
      'outageWorkflow',
      {
        workflowId: outageWorkflowId(customerId),
        taskQueue,
        args: [{ customerId, runbook }],
        signal: mailHeldSignal,
        signalArgs: [{ acceptedSinceLastRing: 2 }],
      },
    );
    const status = await eventually(
      'status after the first ring',
      () => handle.query(statusQuery),
      (s) => s.heldMessages === 2,
    );
    assert.equal(status.phase, 'detecting');
    assert.equal(status.doorbellRings, 1);

    const described = await eventually(
      'search attributes',
      () => handle.describe(),
      (d) => d.typedSearchAttributes.get(heldMessagesKey) === 2,
    );
    assert.equal(described.typedSearchAttributes.get(customerIdKey), customerId);
    assert.equal(described.typedSearchAttributes.get(outagePhaseKey), 'detecting');
    assert.deepEqual(described.typedSearchAttributes.get(mxDomainsKey), ['harborviewlaw.example']);

    // Once a message is delivered to every recipient, it no longer counts as held.
    await sql`insert into delivery_ledger (message_id, recipient, target, outcome)
              values (${first}, 'reception@harborviewlaw.example', 'restore:mail.harborviewlaw.example:25', 'delivered')`;
    await handle.signal(mailHeldSignal, { acceptedSinceLastRing: 1 });
    await eventually(
      'status after delivery',
      () => handle.query(statusQuery),
      (s) => s.heldMessages === 1,
    );
    await handle.terminate('test finished');
  });
});

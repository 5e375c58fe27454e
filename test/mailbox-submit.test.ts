import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import pino from 'pino';
import { provisionMailboxes } from '../src/mailbox/provision';
import { SubmissionRefused, submitFromMailbox } from '../src/mailbox/submit';
import { createSql } from '../src/store/db';
import { createObjectStore } from '../src/store/objects';
import { runbookWithPrimaryAt } from './helpers/runbooks';
import { testConfig } from './helpers/stack';

// Issue 14: a temporary mailbox whose password leaks must not become a spam cannon that gets our sending addresses
// blocklisted: at most MXF_SUBMISSION_RECIPIENTS_PER_HOUR outside recipients an hour, refused with a temporary 450
// past it (the mail app keeps the message). Colleagues do not count. Submitted through the one path the relay and
// the web inbox use; no worker runs, so nothing is actually delivered.
const config = testConfig({ MXF_SUBMISSION_RECIPIENTS_PER_HOUR: '3', MXF_TASK_QUEUE: 'no-worker-here' });
const sql = createSql(config);
const connection = Connection.lazy({ address: config.temporal.address });
after(async () => {
  await sql.end();
  await connection.close();
});

test('a mailbox sends to at most the hourly number of outside recipients; past it, 450 and nothing stored', async () => {
  const runbook = runbookWithPrimaryAt(2525);
  const [reception, it] = runbook.recipients as [string, string];
  await provisionMailboxes(sql, runbook, null);
  const deps = {
    sql,
    objects: createObjectStore(config),
    config,
    client: new Client({ connection, namespace: config.temporal.namespace }),
    log: pino({ level: 'silent' }),
    runbooks: [runbook],
  };
  const mail = (to: string[]) => ({
    raw: Buffer.from(
      `From: <${reception}>\r\nTo: ${to.join(', ')}\r\nSubject: update\r\n\r\nWe are open.\r\n`,
    ),
    envelopeFrom: reception,
    recipients: to,
  });
  await submitFromMailbox(deps, reception, mail(['a@outside.example', 'b@outside.example']));
  await submitFromMailbox(deps, reception, mail(['c@outside.example', it])); // the colleague does not count
  await assert.rejects(
    submitFromMailbox(deps, reception, mail(['d@outside.example'])),
    (err: unknown) =>
      err instanceof SubmissionRefused && err.code === 450 && /sending limit/.test(err.message),
  );
  const [row] = await sql<
    { n: number }[]
  >`select count(*)::int as n from submission where mailbox = ${reception}`;
  assert.equal(row?.n, 2, 'the refused message was not stored');
  await submitFromMailbox(deps, reception, mail([it])); // to colleagues only: never limited
});

import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { simpleParser } from 'mailparser';
import { stringify } from 'yaml';
import { type Runbook, runbookSchema } from '../../src/domain/runbook';
import { startProcess, tcpOpen, waitFor } from '../../src/stack/process';
import { createSql } from '../../src/store/db';
import { ringOutage } from '../../src/temporal';
import { instructUpdate, statusQuery } from '../../src/workflows/messages';
import { startApi } from './api';
import { startCatcher } from './catcher';
import { eventually } from './eventually';
import { holdBacklog } from './held';
import { freePort } from './ports';
import { runbookWithPrimaryAt } from './runbooks';
import { testConfig, testTmp } from './stack';
import type { Sample } from './webmail';

// A large organisation's outage as it runs in production, for the browser test: the worker and the mailbox service
// (web inbox and submission relay) as processes of their own, the stack's Dovecot, the ops API handing out the
// sign-in, held mail filled into the mailbox by the mailboxes instruction, and a local SMTP receiver standing in
// for the outside world, reached through our outbound path (MXF_SMTP_RELAY: the tests' DNS has no MX for it).

export interface MailboxWorld {
  url: string;
  address: string;
  samples: Sample[];
  /** A new one-time sign-in link, handed out by an operator through the API. */
  signInLink(): Promise<string>;
  /** The message as the local receiver got it, once it has. */
  sentReply(subject: string): Promise<{ recipients: string[]; raw: Buffer }>;
  stop(): Promise<void>;
}

export async function startMailboxWorld(
  localPart: string,
  domain: string,
  samplesFor: (address: string) => Promise<Sample[]>,
): Promise<MailboxWorld> {
  const address = `${localPart}@${domain}`;
  const receiver = await startCatcher();
  const taskQueue = `mailbox-world-${randomUUID()}`;
  const runbooksDir = join(testTmp(), `runbooks-${taskQueue}`);
  const env = {
    MXF_SMTP_RELAY: `127.0.0.1:${receiver.port}`,
    MXF_RUNBOOKS: runbooksDir,
    MXF_TASK_QUEUE: taskQueue,
  };
  const config = testConfig(env);
  const runbook = await customerOf(address, runbooksDir);
  const sql = createSql(config);
  const samples = await samplesFor(address);
  await holdBacklog(sql, runbook.id, [address], samples.length, { compose: async (i) => samples[i]!.raw });

  const service = (name: string, entry: string) =>
    startProcess(name, process.execPath, ['--import', 'tsx', join(__dirname, '../../src', entry)], {
      env: { ...process.env, ...env, MXF_LOG_LEVEL: 'error', MXF_MONITOR: 'off' },
      logFile: join(testTmp(), `${name}-${taskQueue}.log`),
      graceMs: 2_000,
    });
  const worker = service('worker', 'worker.ts');
  const mailbox = service('mailbox', 'mailbox/main.ts');
  const api = await startApi(config, [runbook]);
  const connection = await Connection.connect({ address: config.temporal.address });
  const stop = async () => {
    await Promise.allSettled([worker.stop(), mailbox.stop(), api.close(), receiver.close()]);
    await connection.close();
    await sql.end();
  };
  try {
    await waitFor('the web inbox', () => tcpOpen('127.0.0.1', config.mailbox.web.port), { process: mailbox });
    const client = new Client({ connection, namespace: config.temporal.namespace });
    await fillMailboxes(client, taskQueue, runbook, samples.length);
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url: config.mailbox.web.url,
    address,
    samples,
    async signInLink() {
      const res = await api.call('POST', `/api/outages/${runbook.id}/mailboxes/${address}/sign-in`, {
        body: {},
      });
      if (res.status !== 200) throw new Error(`sign-in hand-out: ${res.status} ${res.text}`);
      return res.json.web.link as string;
    },
    async sentReply(subject) {
      const found = await eventually(
        `"${subject}" at the local receiver`,
        async () => {
          for (const m of receiver.caught) if ((await simpleParser(m.raw)).subject === subject) return m;
          return undefined;
        },
        (m) => m !== undefined,
        60_000,
      );
      return { recipients: found!.to, raw: found!.raw };
    },
    stop,
  };
}

/** One customer, on loopback, whose runbook lists `address`; its file where the service processes read runbooks. */
async function customerOf(address: string, runbooksDir: string): Promise<Runbook> {
  const domain = address.slice(address.indexOf('@') + 1);
  const runbook = runbookSchema.parse({
    ...runbookWithPrimaryAt(await freePort()),
    id: domain.split('.')[0],
    name: 'Harbourline Freight',
    domains: [domain],
    recipients: [address],
  });
  mkdirSync(runbooksDir, { recursive: true });
  writeFileSync(join(runbooksDir, `${runbook.id}.yaml`), stringify(runbook));
  return runbook;
}

/** The outage declared and told to give people mailboxes, until every held message is in one. */
async function fillMailboxes(client: Client, taskQueue: string, runbook: Runbook, held: number) {
  const handle = await ringOutage(client, taskQueue, runbook, held);
  await eventually(
    'declared',
    () => handle.query(statusQuery),
    (s) => s.phase === 'awaiting-instructions',
    60_000,
  );
  await handle.executeUpdate(instructUpdate, { args: [{ action: 'mailboxes', actor: 'ops:alice' }] });
  await eventually(
    'the mailbox filled',
    () => handle.query(statusQuery),
    (s) => s.counts.copiedToMailboxes === held,
    60_000,
  );
}

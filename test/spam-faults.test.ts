import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { type OutageWorkflow, outageWorkflowId } from '../src/domain/outage';
import { runbookSchema } from '../src/domain/runbook';
import { freePortPair } from '../src/stack';
import type { ManagedProcess } from '../src/stack/process';
import { startRspamd } from '../src/stack/rspamd';
import { declareUpdate, instructUpdate, statusQuery } from '../src/workflows/messages';
import { messageIdsOf, startCatcher } from './helpers/catcher';
import { eventually } from './helpers/eventually';
import { startIngest, uniqueRunbook } from './helpers/ingest';
import { freePort } from './helpers/ports';
import { transaction } from './helpers/smtp-client';
import { testConfig } from './helpers/stack';
import { useTemporalClient, withWorker } from './helpers/temporal';

// rspamd killed (SIGKILL, main process and workers) while mail arrives and a forward waits for scores, then
// started again: every message is scored, the status says why mail waited meanwhile, and each copy goes once.
const temporal = useTemporalClient();
const MESSAGES = 150;
const GMAIL = 'meridian.forward@gmail.example';

function startFilter(dir: string, port: number): Promise<ManagedProcess> {
  return startRspamd({
    dir,
    port,
    dnsServers: [...testConfig().dns.servers],
    logFile: join(dir, 'rspamd.log'),
  });
}

test('rspamd killed under load and started again: every message scored, none lost, none forwarded twice', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mxf-rspamd-'));
  const port = await freePortPair(); // the controller takes the next port
  let rspamd = await startFilter(dir, port);
  const gmail = await startCatcher();
  const runbook = runbookSchema.parse({
    ...uniqueRunbook('meridian-freight'),
    primary: [{ host: '127.0.0.1', port: await freePort() }],
    detection: { probeInterval: '1s', confirmAfter: '1h' },
  });
  const to = `dispatch@${runbook.domains[0]}`; // the runbook takes any recipient of its domains
  const ingest = await startIngest([runbook], {
    env: {
      MXF_TASK_QUEUE: `spam-faults-${randomUUID()}`,
      MXF_DOORBELL_MS: '50',
      MXF_SMTP_RELAY: `127.0.0.1:${gmail.port}`,
      MXF_RSPAMD_URL: `http://127.0.0.1:${port}`,
    },
    temporal: temporal.client,
  });
  const { config, sql } = ingest;
  const { address, namespace, taskQueue } = config.temporal;
  try {
    await withWorker({ address, namespace, taskQueue, sql, config }, async () => {
      const sent: string[] = [];
      const sendSome = async (n: number) => {
        for (let i = 0; i < n; i++) {
          const id = `${randomUUID()}@load.test`;
          const r = await transaction(ingest.port, {
            from: 'load@sender.example.org',
            to: [to],
            data: `Message-ID: <${id}>\r\nSubject: load ${sent.length}\r\n\r\nbody ${sent.length}\r\n`,
          });
          assert.match(r.end ?? '', /^250/, JSON.stringify(r));
          sent.push(id);
        }
      };
      await sendSome(10);
      const handle = temporal.client.workflow.getHandle<OutageWorkflow>(outageWorkflowId(runbook.id));
      await eventually('the outage is running', () => handle.describe().then(() => true), Boolean);
      await handle.executeUpdate(declareUpdate, { args: [{ actor: 'ops:test' }] });
      await handle.executeUpdate(instructUpdate, {
        args: [{ action: 'forward', to: [GMAIL], actor: 'ops:test' }],
      });

      // Mail keeps arriving while the filter is killed mid-stream.
      const load = sendSome(60);
      await eventually(
        'some forwarded',
        async () => gmail.caught.length,
        (n) => n >= 5,
        15_000,
      );
      process.kill(-rspamd.child.pid!, 'SIGKILL');
      await rspamd.exited;
      await load;
      await sendSome(MESSAGES - sent.length); // these arrive while the filter is down
      const waiting = await eventually(
        'the status says mail waits for a score, and why',
        () => handle.query(statusQuery),
        (s) => (s.spam?.unscored ?? 0) > 0 && s.spam?.filter?.failingSince != null,
        20_000,
      );
      assert.match(waiting.spam!.filter!.lastError ?? '', /rspamd/);
      assert.ok(gmail.caught.length < MESSAGES, 'unscored mail is not forwarded while the filter is down');

      rspamd = await startFilter(dir, port);
      await eventually(
        'everything forwarded',
        async () => gmail.caught.length,
        (n) => n >= MESSAGES,
        60_000,
      );
      const [unscored] = await sql<{ n: number }[]>`
        select count(*)::int as n from held_message where message_id in ${sql(sent)} and scored_at is null`;
      assert.equal(unscored!.n, 0, 'every message scored');
      const ids = messageIdsOf(gmail.caught);
      assert.equal(ids.length, MESSAGES, 'no message forwarded twice');
      assert.deepEqual([...new Set(ids)].sort(), [...sent].sort(), 'every message forwarded, none lost');
      const after = await eventually(
        'the filter is healthy again in the status',
        () => handle.query(statusQuery),
        // The last batch's count reaches the status when the batch ends, a moment after its last copy arrived.
        (s) =>
          s.spam?.filter?.failingSince === null && s.spam.unscored === 0 && s.counts.forwarded >= MESSAGES,
        15_000,
      );
      assert.equal(after.counts.forwarded, MESSAGES, 'each counted once');
      await handle.terminate('test finished');
    });
  } finally {
    await ingest.close();
    await gmail.close();
    await rspamd.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

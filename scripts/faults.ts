import { type Component, tcpOpen, waitFor } from '../src/stack/process';
import { type FaultKind, injectFaults } from './faults-inject';
import { startLoad } from './faults-load';
import { FAULTS, faultsStackOptions, judgeRun, withFaultsStack } from './faults-stack';

// `npm run test:faults`: under a steady SMTP load, kill -9 in turn the ingest, the worker, MinIO, PostgreSQL and
// the Temporal server, and restart each. Then judge the promise a backup MX makes from the senders' side: every
// message that got a 250 is held with the sender's bytes and forwarded (the outage's instruction here) with them,
// once; what got a 4xx or no reply is held intact and forwarded once, or not at all; a duplicate needs a cause the
// suite can show. Durable settings throughout (PostgreSQL fsyncs; Temporal keeps a SQLite file).
// faults-load.ts sends, faults-mailbox.ts receives, faults-inject.ts kills, faults-evidence.ts reads back,
// faults-verdict.ts judges, and faults-stack.ts holds what this suite shares with the cluster's (cluster-faults.ts).

async function main(): Promise<number> {
  let smtpPort = 0;
  const options = async (tmp: string, relayPort: number) => {
    const o = await faultsStackOptions(tmp, relayPort, { temporal: { sqlite: 'faults.sqlite' } });
    smtpPort = o.smtpPort;
    return o;
  };
  return withFaultsStack('mxf-faults-', options, async (stack, mailbox) => {
    const worker = stack.startService('worker', 'worker.ts');
    const ingest = stack.startService('ingest', 'ingest/main.ts');
    const ingestReady = () =>
      waitFor('the ingest', () => tcpOpen('127.0.0.1', smtpPort), { timeoutMs: 30_000 }).then(() => {});
    await ingestReady();
    const components = new Map<FaultKind, Component>([
      ['postgres', stack.postgres!],
      ['minio', stack.minio],
      ['temporal', stack.temporal],
      ['worker', worker],
      ['ingest', ingest],
    ]);
    const load = startLoad(smtpPort, FAULTS.senders);
    const faults = await injectFaults(components, { ingest: ingestReady }, load, mailbox, {
      settleMs: FAULTS.settleMs,
      downMs: FAULTS.downMs,
      recoveryTimeoutMs: FAULTS.recoveryTimeoutMs,
      forwardTo: FAULTS.forwardTo,
    });
    return judgeRun(stack.config, mailbox, load, faults);
  });
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`faults: ${(err as Error).stack ?? err}`);
    process.exit(1);
  },
);

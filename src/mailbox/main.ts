import { lookup } from 'node:dns/promises';
import { Client, Connection } from '@temporalio/client';
import { loadConfigOrExit } from '../config';
import { createLogger } from '../log';
import { loadRunbooksOrExit } from '../runbooks/load';
import { createSql } from '../store/db';
import { createObjectStore } from '../store/objects';
import { buildWebmail } from '../webmail/app';
import { startAuthPolicy } from './auth-policy';
import { buildSubmissionRelay } from './relay';
import { resumeSubmissions, submitFromMailbox } from './submit';

const RESUME_EVERY_MS = 60_000;

// The mailbox service: the relay behind Dovecot's submission, Dovecot's sign-in policy, and the web inbox. Both send through one function
// (submitFromMailbox), so a message written in a phone's mail app and one written in a browser go the same way.
async function main() {
  const config = loadConfigOrExit();
  const log = createLogger(config, 'mailbox');
  const runbooks = await loadRunbooksOrExit(config.runbooksDir);
  const sql = createSql(config);
  const objects = createObjectStore(config);
  // Lazy: the web inbox works while Temporal is unreachable; a submission then fails with 451 and is retried.
  const client = new Client({
    connection: Connection.lazy({ address: config.temporal.address }),
    namespace: config.temporal.namespace,
  });
  const deps = { sql, objects, config, client, log, runbooks };
  // Only Dovecot may say who signed in (XCLIENT): its addresses, looked up once (a host name beyond one machine).
  const dovecotAddresses = (await lookup(config.mailbox.host, { all: true })).map((a) => a.address);
  const relay = buildSubmissionRelay({ ...deps, dovecotAddresses: ['127.0.0.1', ...dovecotAddresses] });
  const { serviceHost, relayPort, authPolicyPort } = config.mailbox;
  await new Promise<void>((resolve, reject) => {
    relay.once('error', reject);
    relay.listen(relayPort, serviceHost, () => resolve());
  });
  const policy = await startAuthPolicy({ sql, log }, authPolicyPort, serviceHost);
  const web = await buildWebmail({
    config,
    sql,
    log,
    submit: (mailbox, message) => submitFromMailbox(deps, mailbox, message),
  });
  await web.listen({ host: config.mailbox.web.host, port: config.mailbox.web.port });
  const resume = setInterval(
    () =>
      void resumeSubmissions(deps).catch((err) =>
        log.warn({ err }, 'could not start the deliveries of stored submissions; trying again in a minute'),
      ),
    RESUME_EVERY_MS,
  );
  log.info(
    { relayPort: config.mailbox.relayPort, web: config.mailbox.web.url },
    'mailbox service: submission relay and web inbox listening',
  );
  const stop = async () => {
    clearInterval(resume);
    await Promise.allSettled([
      web.close(),
      new Promise((r) => relay.close(() => r(undefined))),
      new Promise((r) => policy.close(() => r(undefined))),
    ]);
    await Promise.allSettled([sql.end({ timeout: 5 }), client.connection.close()]);
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err) => {
  console.error(`mx-failover mailbox: ${(err as Error).message}`);
  process.exit(1);
});

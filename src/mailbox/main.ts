import { Client, Connection } from '@temporalio/client';
import { loadConfigOrExit } from '../config';
import { createLogger } from '../log';
import { loadRunbooksOrExit } from '../runbooks/load';
import { createSql } from '../store/db';
import { createObjectStore } from '../store/objects';
import { buildWebmail } from '../webmail/app';
import { startAuthPolicy } from './auth-policy';
import { buildSubmissionRelay } from './relay';
import { submitFromMailbox } from './submit';

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
  const relay = buildSubmissionRelay({ ...deps, dovecotAddresses: ['127.0.0.1', config.mailbox.host] });
  await new Promise<void>((resolve, reject) => {
    relay.once('error', reject);
    relay.listen(config.mailbox.relayPort, '127.0.0.1', () => resolve());
  });
  const policy = await startAuthPolicy({ sql, log }, config.mailbox.authPolicyPort);
  const web = await buildWebmail({
    config,
    sql,
    log,
    submit: (mailbox, message) => submitFromMailbox(deps, mailbox, message),
  });
  await web.listen({ host: config.mailbox.web.host, port: config.mailbox.web.port });
  log.info(
    { relayPort: config.mailbox.relayPort, web: config.mailbox.web.url },
    'mailbox service: submission relay and web inbox listening',
  );
  const stop = async () => {
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

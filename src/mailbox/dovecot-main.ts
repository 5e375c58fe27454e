import { join } from 'node:path';
import { loadConfigOrExit } from '../config';
import { createLogger } from '../log';
import { startMailServer } from '../stack/mail-server';

// Dovecot on its own (docker-compose.yml's `dovecot` service): the configuration written from our environment by
// the one starter the dev stack and the tests use (src/stack/mail-server.ts), Dovecot in the foreground under us,
// stopped with us. Its mail folder is MXF_DATA_DIR/dovecot, a volume.
async function main() {
  const config = loadConfigOrExit();
  const log = createLogger(config, 'dovecot');
  const dovecot = await startMailServer(config.dataDir, config, join(config.dataDir, 'logs'));
  log.info(
    {
      imap: config.mailbox.imapPort,
      lmtp: config.mailbox.lmtpPort,
      submission: config.mailbox.submissionPort,
    },
    'dovecot started',
  );
  const stop = () => void dovecot.stop().then(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const code = await dovecot.exited;
  log.error({ code }, 'dovecot exited');
  process.exit(1);
}

main().catch((err) => {
  console.error(`mx-failover dovecot: ${(err as Error).message}`);
  process.exit(1);
});

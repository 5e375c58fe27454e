import { loadConfigOrExit } from '../config';
import { createLogger } from '../log';
import { loadRunbooksOrExit } from '../runbooks/load';
import { createSmtpServer } from './smtp';

async function main() {
  const config = loadConfigOrExit();
  const log = createLogger(config, 'ingest');
  const runbooks = await loadRunbooksOrExit(config.runbooksDir);
  const server = createSmtpServer({ config, runbooks, log });
  server.on('error', (err) => log.error({ err }, 'smtp server error'));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.smtp.port, config.smtp.host, () => resolve());
  });
  log.info(
    { host: config.smtp.host, port: config.smtp.port, customers: runbooks.length },
    'smtp ingest listening',
  );
  const stop = () => server.close(() => process.exit(0));
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err) => {
  console.error(`mx-failover ingest: ${(err as Error).message}`);
  process.exit(1);
});

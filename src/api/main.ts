import { Connection } from '@temporalio/client';
import { loadConfigOrExit } from '../config';
import { createLogger } from '../log';
import { loadRunbooksOrExit } from '../runbooks/load';
import { createSql } from '../store/db';
import { createObjectStore } from '../store/objects';
import { buildApi } from './server';

async function main() {
  const config = loadConfigOrExit();
  const log = createLogger(config, 'api');
  const sql = createSql(config);
  const objects = createObjectStore(config);
  // Lazy: the API must start, and report Temporal as down, while Temporal is unreachable.
  const temporal = Connection.lazy({ address: config.temporal.address });
  const runbooks = await loadRunbooksOrExit(config.runbooksDir);
  const app = await buildApi({ config, sql, objects, temporal, log, runbooks });
  await app.listen({ host: config.api.host, port: config.api.port });
  const stop = async () => {
    await app.close();
    await Promise.allSettled([sql.end({ timeout: 5 }), temporal.close()]);
    process.exit(0);
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((err) => {
  console.error(`mx-failover api: ${(err as Error).message}`);
  process.exit(1);
});

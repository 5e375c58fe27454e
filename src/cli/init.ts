import { loadConfigOrExit } from '../config';
import { createSql } from '../store/db';
import { migrate } from '../store/migrate';
import { createObjectStore, ensureBucket } from '../store/objects';
import { connectTemporal, ensureNamespace, ensureSearchAttributes } from '../temporal';

// `npm run init` (and docker compose's one-shot `init` service): prepares servers that someone else runs, all
// idempotent: database schema, the held-mail bucket, the Temporal namespace and search attributes. npm run dev does the same
// steps itself as it starts each component.
async function main() {
  const config = loadConfigOrExit();
  const sql = createSql(config, { max: 1 });
  try {
    const applied = await migrate(sql);
    console.log(
      applied.length ? `migrations applied: ${applied.join(', ')}` : 'database schema is up to date',
    );
  } finally {
    await sql.end();
  }
  const created = await ensureBucket(createObjectStore(config), config);
  console.log(`bucket ${config.s3.bucket} ${created ? 'created' : 'present'}`);
  const { connection } = await connectTemporal(config.temporal);
  try {
    const registered = await ensureNamespace(connection, config.temporal.namespace);
    console.log(`namespace ${config.temporal.namespace} ${registered ? 'registered' : 'present'}`);
    const added = await ensureSearchAttributes(connection, config.temporal.namespace);
    console.log(added.length ? `search attributes added: ${added.join(', ')}` : 'search attributes present');
  } finally {
    await connection.close();
  }
}

main().catch((err) => {
  console.error(`mx-failover init: ${(err as Error).message}`);
  process.exit(1);
});

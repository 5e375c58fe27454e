import { loadConfigOrExit } from '../config';
import { createSql } from '../store/db';
import { migrate } from '../store/migrate';

// `npm run migrate`: applies pending migrations to DATABASE_URL (or the dev stack's private cluster).
async function main() {
  const sql = createSql(loadConfigOrExit(), { max: 1 });
  try {
    const applied = await migrate(sql);
    console.log(applied.length ? `applied ${applied.join(', ')}` : 'schema is up to date');
  } finally {
    await sql.end();
  }
}

main().catch((err) => {
  console.error(`mx-failover: migrate failed: ${(err as Error).message}`);
  process.exit(1);
});

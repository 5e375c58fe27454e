import postgres from 'postgres';
import type { Config } from '../config';

export type Sql = postgres.Sql;

export function createSql(
  config: Pick<Config, 'database'>,
  options: postgres.Options<Record<string, never>> = {},
): Sql {
  return postgres(config.database.url, {
    max: 10,
    // Fail fast: ingest turns a database it cannot reach into 451, and the sender retries.
    connect_timeout: 5,
    idle_timeout: 30,
    onnotice: () => {},
    ...options,
  });
}

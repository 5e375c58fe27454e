import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Sql } from './db';

// Plain SQL files, applied in name order, each in its own transaction, under an advisory lock so that several
// processes starting at once (ingest, worker, api) cannot race. A file that has been applied is never edited:
// add a new one. Small enough that a migration library would add more than it saves.
export const MIGRATIONS_DIR = resolve(__dirname, '../../migrations');
const LOCK_KEY = 0x6d78_6601; // "mxf\1"

export async function migrate(sql: Sql, dir = MIGRATIONS_DIR): Promise<string[]> {
  const files = (await readdir(dir)).filter((f) => /^\d{3,}_[\w-]+\.sql$/.test(f)).sort();
  return sql.begin(async (tx) => {
    await tx`select pg_advisory_xact_lock(${LOCK_KEY})`;
    await tx`create table if not exists schema_migration (
      version text primary key, applied_at timestamptz not null default now())`;
    const done = new Set(
      (await tx<{ version: string }[]>`select version from schema_migration`).map((r) => r.version),
    );
    const applied: string[] = [];
    for (const file of files) {
      if (done.has(file)) continue;
      await tx.unsafe(await readFile(join(dir, file), 'utf8'));
      await tx`insert into schema_migration (version) values (${file})`;
      applied.push(file);
    }
    return applied;
  });
}

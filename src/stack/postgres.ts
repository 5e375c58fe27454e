import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import postgres from 'postgres';
import { type ManagedProcess, startedOrStopped, startProcess } from './process';

// A private PostgreSQL cluster (initdb) for the dev stack and the test harness. postgres refuses to run as root,
// and CI runs as root, so as root the cluster belongs to the 'postgres' account that Debian's package creates.

export function findPgBin(): string {
  for (const dir of (process.env.PATH ?? '').split(delimiter))
    if (existsSync(join(dir, 'initdb'))) return dir;
  const versions = existsSync('/usr/lib/postgresql') ? readdirSync('/usr/lib/postgresql') : [];
  const newest = versions.filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a))[0];
  if (newest && existsSync(`/usr/lib/postgresql/${newest}/bin/initdb`))
    return `/usr/lib/postgresql/${newest}/bin`;
  throw new Error(
    'PostgreSQL server binaries (initdb, postgres) not found: apt-get install postgresql, or set DATABASE_URL',
  );
}

function runAs(): { uid?: number; gid?: number } {
  if (process.getuid?.() !== 0) return {};
  try {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString());
    return { uid, gid };
  } catch {
    throw new Error(
      "running as root, and there is no 'postgres' account to own the private cluster: create one, or set DATABASE_URL",
    );
  }
}

export interface PrivatePostgres extends ManagedProcess {
  url(database: string): string;
}

export async function startPrivatePostgres(opts: {
  dir: string;
  port: number;
  logFile: string;
  /** Trade durability for speed: fine for throw-away test clusters, never for held mail. */
  ephemeral?: boolean;
  maxConnections?: number;
}): Promise<PrivatePostgres> {
  const bin = findPgBin();
  const owner = runAs();
  const pgdata = join(opts.dir, 'pgdata');
  mkdirSync(opts.dir, { recursive: true });
  chmodSync(opts.dir, 0o755);
  if (owner.uid !== undefined) letOthersTraverse(opts.dir);
  if (!existsSync(join(pgdata, 'PG_VERSION'))) {
    mkdirSync(pgdata, { recursive: true, mode: 0o700 });
    if (owner.uid !== undefined) chownSync(pgdata, owner.uid, owner.gid!);
    execFileSync(
      join(bin, 'initdb'),
      ['-D', pgdata, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-locale'],
      {
        ...owner,
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
  }
  if (owner.uid !== undefined) chownSync(opts.logFile.replace(/[^/]+$/, ''), owner.uid, owner.gid!);
  const args = [
    '-D',
    pgdata,
    '-p',
    String(opts.port),
    '-c',
    'listen_addresses=127.0.0.1',
    '-c',
    'unix_socket_directories=',
  ];
  if (opts.maxConnections) args.push('-c', `max_connections=${opts.maxConnections}`);
  if (opts.ephemeral)
    args.push('-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off');
  const proc = startProcess('postgres', join(bin, 'postgres'), args, {
    ...owner,
    logFile: opts.logFile,
    pidFile: join(opts.dir, 'postgres.pid'),
    stopSignal: 'SIGINT',
  });
  const url = (database: string) => `postgres://postgres@127.0.0.1:${opts.port}/${database}`;
  await startedOrStopped(
    proc,
    `PostgreSQL on 127.0.0.1:${opts.port}`,
    async () => {
      const sql = postgres(url('postgres'), { max: 1, connect_timeout: 2, onnotice: () => {} });
      try {
        await sql`select 1`;
        return true;
      } finally {
        await sql.end({ timeout: 1 });
      }
    },
    { logFile: opts.logFile, timeoutMs: 30_000 },
  );
  return { ...proc, url };
}

/**
 * As root, the cluster runs as 'postgres', which must be able to walk down to its data folder; a clone inside a
 * `mktemp -d` folder (mode 0700) would stop it. Adding search permission (o+x, not read) to the ancestors that
 * lack it lets it through without exposing any listing.
 */
export function letOthersTraverse(dir: string): void {
  for (let d = dirname(dir); ; d = dirname(d)) {
    const mode = statSync(d).mode;
    if ((mode & 0o001) === 0) chmodSync(d, (mode & 0o7777) | 0o001);
    if (d === dirname(d)) break;
  }
}

/** Creates the database if it is not there yet (CREATE DATABASE has no IF NOT EXISTS). */
export async function ensureDatabase(serverUrl: string, database: string): Promise<void> {
  const sql = postgres(serverUrl, { max: 1, onnotice: () => {} });
  try {
    const [row] = await sql`select 1 from pg_database where datname = ${database}`;
    if (!row) await sql.unsafe(`create database "${database.replace(/"/g, '""')}"`);
  } finally {
    await sql.end();
  }
}

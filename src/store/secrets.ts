import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

// Secrets that services on one machine share and that must outlive a restart (the return-path key, the Dovecot
// master password) when no variable sets them: made on first use under <data dir>/keys, read once per process.

const kept = new Map<string, string>();

export function keptSecret(dataDir: string, name: string): string {
  const file = join(dataDir, 'keys', name);
  let secret = kept.get(file);
  if (secret === undefined) {
    secret = readOrCreate(file);
    kept.set(file, secret);
  }
  return secret;
}

/**
 * Several processes start together and any may get here first. The secret is written whole to a file of this
 * process's own, then linked to its name: link fails with EEXIST if another got there first, and a reader never
 * sees a half-written file (as it could after an exclusive open of the name itself).
 */
function readOrCreate(file: string): string {
  mkdirSync(join(file, '..'), { recursive: true, mode: 0o700 });
  const mine = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  writeFileSync(mine, `${randomBytes(32).toString('hex')}\n`, { flag: 'wx', mode: 0o600 });
  try {
    linkSync(mine, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    unlinkSync(mine);
  }
  const secret = readFileSync(file, 'utf8').trim();
  if (!/^[0-9a-f]{64}$/.test(secret))
    throw new Error(
      `${file} does not hold a secret (64 hex digits). Restore it from a backup, or set the variable that replaces it (README "Configuration").`,
    );
  return secret;
}

import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Config } from '../config';

// Our forwarding domain's signing key: it DKIM-signs our notification emails and ARC-seals forwarded copies. The
// operator may give one (MXF_DKIM_KEY_FILE); otherwise each installation makes its own once, under the data
// folder, so that `npm run dns:records` can print the TXT record to publish before the first forward goes out.

export interface DkimKey {
  domain: string;
  selector: string;
  /** PEM (PKCS#8 for the keys we make). */
  privateKey: string;
}

const cache = new Map<string, DkimKey>();

/** The key at MXF_DKIM_KEY_FILE, else `${dataDir}/keys/dkim-<selector>.pem`, made on first use. Cached per process. */
export function ourDkimKey(config: Pick<Config, 'outbound' | 'dataDir'>): DkimKey {
  const { domain, selector, keyFile } = config.outbound.dkim;
  const file = keyFile ?? join(config.dataDir, 'keys', `dkim-${selector}.pem`);
  const cacheKey = `${domain}\0${selector}\0${file}`;
  let key = cache.get(cacheKey);
  if (!key) {
    const privateKey = keyFile ? readFileSync(keyFile, 'utf8') : readOrMakeKey(file);
    checkRsa(privateKey, file);
    key = { domain, selector, privateKey };
    cache.set(cacheKey, key);
  }
  return key;
}

// RSA only: Ed25519 (RFC 8463) is meant to sit beside an RSA signature, and many receivers verify RSA alone.
function checkRsa(pem: string, file: string): void {
  let type: string | undefined;
  try {
    type = createPrivateKey(pem).asymmetricKeyType;
  } catch (err) {
    throw new Error(`${file}: not a PEM private key (${(err as Error).message})`, { cause: err });
  }
  if (type !== 'rsa') throw new Error(`${file}: a ${type} key; DKIM and ARC signing here needs an RSA key`);
}

/**
 * Several processes (worker, API, the dns:records CLI) may start at once on a fresh data folder: each writes a
 * whole key to a file of its own and hard-links it to the shared name. link() fails with EEXIST when another got
 * there first, and then we read theirs. Unlike an open with 'wx', no process can ever read a half-written key.
 */
function readOrMakeKey(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const mine = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(mine, pem, { mode: 0o600, flag: 'wx' });
  try {
    linkSync(mine, file);
    return pem;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return readFileSync(file, 'utf8');
  } finally {
    unlinkSync(mine);
  }
}

/** The TXT record that publishes the key (RFC 6376 3.6.1; ARC uses the same record, RFC 8617 4.1.3). */
export function dkimTxtRecord(key: DkimKey): { name: string; value: string } {
  const der = createPublicKey(key.privateKey).export({ type: 'spki', format: 'der' });
  return {
    name: `${key.selector}._domainkey.${key.domain}`,
    value: `v=DKIM1; k=rsa; p=${der.toString('base64')}`,
  };
}

import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { Config } from '../config';
import { keptSecret } from '../store/secrets';

// The envelope sender of a forwarded copy (DESIGN invariant 9), built and read here and nowhere else:
//
//   mxfb=<message>=<target>=<expiry>=<mac>@<forwarding domain>
//   mxfb=1234=3f2a9c01=k4f=9d1c0e7a55b2c4e81f07@failover.example
//
// - The domain is ours, so SPF for the copy is checked against us (and passes), not against the original sender.
// - <message> is the held_message id and <target> a hash of the delivery target key, so a bounce says which copy
//   failed where, without a lookup table (VERP).
// - <expiry> is a day number: an address only works for 21 days, as in SRS (postsrsd's default), because bounces
//   come late (a receiver may retry for 5 days before it gives up) but an address that is valid for ever can be
//   replayed by anyone who saw one.
// - <mac> is HMAC-SHA256 over the rest with our secret, so nobody can make up addresses that we accept: without it
//   the return domain would take mail for any local part, a spam back door into the ledger.
//
// Everything is lower case and only [a-z0-9=]: some MTAs lower-case local parts, and plain characters survive
// every hop without quoting. The local part stays far under RFC 5321's 64 characters.

export interface ReturnPathKey {
  domain: string;
  secret: string;
}

export type ParsedReturnPath =
  | { ok: true; messageId: string; targetHash: string }
  | { ok: false; reason: 'not-ours' | 'malformed' | 'bad-signature' | 'expired' };

const PREFIX = 'mxfb';
/** Days a return address takes bounces for; see above. */
export const RETURN_PATH_DAYS = 21;
/** 80 bits of HMAC: guessing one takes 2^79 tries on average, each a connection to us. */
const MAC_HEX = 20;
const TARGET_HASH_HEX = 8;
const DAY_MS = 86_400_000;
/** held_message.id is a PostgreSQL bigint. */
const MAX_BIGINT = 2n ** 63n - 1n;
const LOCAL_PART = /^mxfb=([1-9][0-9]{0,18})=([0-9a-f]{8})=([0-9a-v]{1,4})=([0-9a-f]{20})$/;

/** A short, stable name for a delivery target key (domain/delivery.ts targetKey) that fits in a local part. */
export function targetHashOf(targetKey: string): string {
  return createHash('sha256').update(targetKey, 'utf8').digest('hex').slice(0, TARGET_HASH_HEX);
}

const dayOf = (at: Date) => Math.floor(at.getTime() / DAY_MS);

function macOf(key: ReturnPathKey, signed: string): Buffer {
  // The domain is signed too: one secret shared by two forwarding domains does not make their addresses one.
  return Buffer.from(
    createHmac('sha256', key.secret)
      .update(`${signed}@${key.domain.toLowerCase()}`)
      .digest('hex')
      .slice(0, MAC_HEX),
  );
}

/** The return address for the copy of held message `messageId` (its row id) sent to `targetKey`. */
export function returnPathFor(
  key: ReturnPathKey,
  messageId: string,
  targetKey: string,
  now = new Date(),
): string {
  if (!/^[1-9][0-9]{0,18}$/.test(messageId) || BigInt(messageId) > MAX_BIGINT)
    throw new Error(`a return address names a held_message id (digits), not ${JSON.stringify(messageId)}`);
  const expiry = (dayOf(now) + RETURN_PATH_DAYS).toString(32);
  const signed = `${PREFIX}=${messageId}=${targetHashOf(targetKey)}=${expiry}`;
  return `${signed}=${macOf(key, signed).toString()}@${key.domain.toLowerCase()}`;
}

/** Reads a return address (a bounce's recipient): which message and target it names, or why it is not one of ours. */
export function parseReturnPath(key: ReturnPathKey, address: string, now = new Date()): ParsedReturnPath {
  const lower = address.toLowerCase();
  const at = lower.lastIndexOf('@');
  if (at < 0 || lower.slice(at + 1) !== key.domain.toLowerCase()) return { ok: false, reason: 'not-ours' };
  const match = LOCAL_PART.exec(lower.slice(0, at));
  if (!match || BigInt(match[1]!) > MAX_BIGINT) return { ok: false, reason: 'malformed' };
  const [, messageId, targetHash, expiry, mac] = match;
  const expected = macOf(key, `${PREFIX}=${messageId}=${targetHash}=${expiry}`);
  // Same length by the pattern; compared in constant time so that the mac cannot be found byte by byte.
  if (!timingSafeEqual(Buffer.from(mac!), expected)) return { ok: false, reason: 'bad-signature' };
  if (dayOf(now) > Number.parseInt(expiry!, 32)) return { ok: false, reason: 'expired' };
  return { ok: true, messageId: messageId!, targetHash: targetHash! };
}

/**
 * The signing secret: MXF_RETURN_PATH_SECRET, else one made on first use and kept under the data folder, so that
 * addresses handed out before a restart still verify after it (deleting it makes recent forwards' return
 * addresses unverifiable).
 */
export function returnPathSecret(config: Pick<Config, 'outbound' | 'dataDir'>): string {
  return config.outbound.returnPath.secret ?? keptSecret(config.dataDir, 'return-path.secret');
}

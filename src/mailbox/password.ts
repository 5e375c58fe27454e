import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

// Mailbox passwords: we make them (24 random characters, about 140 bits), show them once, and keep only Dovecot's
// {SSHA512} hash (salted SHA-512, RFC 2307 style), which Dovecot checks at sign-in from our PostgreSQL. A slow
// hash (bcrypt, argon2) is for passwords people choose; against a random 140-bit secret a salted SHA-512 is as
// strong, and Debian's Dovecot checks it without any module of ours.

const SCHEME = '{SSHA512}';
const SALT_BYTES = 16;
/** Letters and digits a person can read out over the phone: no 0/O, 1/l/I. */
const ALPHABET = 'abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789';

export function newMailboxPassword(length = 24): string {
  const out: string[] = [];
  // Rejection sampling: every character equally likely.
  while (out.length < length) {
    for (const byte of randomBytes(length)) {
      if (byte < 256 - (256 % ALPHABET.length) && out.length < length)
        out.push(ALPHABET[byte % ALPHABET.length]!);
    }
  }
  return out.join('');
}

export function hashMailboxPassword(password: string, salt: Buffer = randomBytes(SALT_BYTES)): string {
  const digest = createHash('sha512').update(password, 'utf8').update(salt).digest();
  return `${SCHEME}${Buffer.concat([digest, salt]).toString('base64')}`;
}

/** For our own checks (the web inbox's sign-in); Dovecot checks IMAP and submission sign-ins itself. */
export function mailboxPasswordMatches(password: string, stored: string): boolean {
  if (!stored.startsWith(SCHEME)) return false;
  const raw = Buffer.from(stored.slice(SCHEME.length), 'base64');
  if (raw.length <= 64) return false;
  const expected = raw.subarray(0, 64);
  const actual = createHash('sha512').update(password, 'utf8').update(raw.subarray(64)).digest();
  return timingSafeEqual(expected, actual);
}

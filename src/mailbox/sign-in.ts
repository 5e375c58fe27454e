import { createHash, randomBytes } from 'node:crypto';
import type { Sql } from '../store/db';
import { hashMailboxPassword, mailboxPasswordMatches, newMailboxPassword } from './password';

// Signing in to a temporary mailbox outside Dovecot: the web inbox's password form and its one-time links, and
// the operator's hand-out of a new password. Dovecot checks IMAP and submission sign-ins itself from the same
// table, and asks us before and tells us after each one (src/mailbox/auth-policy.ts). Five failures in a row, on
// any of them, lock the mailbox's password sign-in for 15 minutes (a one-time link still works), so a password can
// be guessed through neither; Dovecot's own auth penalty slows each guessing address down besides.

export const LINK_TTL_MS = 72 * 3_600_000;
const MAX_FAILURES = 5;
const LOCK_MS = 15 * 60_000;

const tokenHash = (token: string) => createHash('sha256').update(token).digest('hex');

/** A new password for the mailbox (the old one stops working), shown once: only its hash is kept. */
export async function resetMailboxPassword(sql: Sql, address: string): Promise<string> {
  const password = newMailboxPassword();
  await sql`
    update mailbox set password_hash = ${hashMailboxPassword(password)}, password_set_at = now(),
                       failed_sign_ins = 0, locked_until = null
    where address = ${address.toLowerCase()}`;
  return password;
}

/** A one-time web sign-in link's token (the URL is the web inbox's /link/<token>). */
export async function issueSignInLink(sql: Sql, address: string, ttlMs = LINK_TTL_MS): Promise<string> {
  const token = randomBytes(24).toString('base64url');
  await sql`
    insert into mailbox_sign_in_link (token_hash, address, expires_at)
    values (${tokenHash(token)}, ${address.toLowerCase()}, now() + ${ttlMs} * interval '1 millisecond')`;
  return token;
}

export type SignIn = { ok: true; address: string } | { ok: false; reason: 'refused' | 'locked' | 'closed' };

/** Spends a one-time link: the mailbox's address the first time, refused ever after or once expired. */
export async function redeemSignInLink(sql: Sql, token: string): Promise<SignIn> {
  const [row] = await sql<{ address: string; sign_in_allowed: boolean }[]>`
    update mailbox_sign_in_link l set used_at = now()
    from mailbox m
    where l.token_hash = ${tokenHash(token)} and l.used_at is null and l.expires_at > now()
      and m.address = l.address
    returning l.address, m.sign_in_allowed`;
  if (!row) return { ok: false, reason: 'refused' };
  if (!row.sign_in_allowed) return { ok: false, reason: 'closed' };
  await sql`update mailbox set last_sign_in_at = now() where address = ${row.address}`;
  return { ok: true, address: row.address };
}

/** The web inbox's password form. Counts failures per mailbox; a good sign-in resets the count. */
export async function checkMailboxPassword(sql: Sql, address: string, password: string): Promise<SignIn> {
  const lower = address.toLowerCase();
  const [row] = await sql<{ password_hash: string; sign_in_allowed: boolean; locked: boolean }[]>`
    select password_hash, sign_in_allowed, coalesce(locked_until > now(), false) as locked
    from mailbox where address = ${lower}`;
  if (!row) return { ok: false, reason: 'refused' };
  if (row.locked) return { ok: false, reason: 'locked' };
  if (!row.sign_in_allowed) return { ok: false, reason: 'closed' };
  if (!mailboxPasswordMatches(password, row.password_hash)) {
    await recordFailedSignIn(sql, lower);
    return { ok: false, reason: 'refused' };
  }
  await recordSignIn(sql, lower);
  return { ok: true, address: lower };
}

/** A wrong password, from the web inbox or a mail app (src/mailbox/auth-policy.ts): the fifth in a row locks. */
export async function recordFailedSignIn(sql: Sql, address: string) {
  await sql`
    update mailbox set failed_sign_ins = failed_sign_ins + 1,
      locked_until = case when failed_sign_ins + 1 >= ${MAX_FAILURES}
                          then now() + ${LOCK_MS} * interval '1 millisecond' else locked_until end
    where address = ${address.toLowerCase()}`;
}

/** A person got in: last seen now, and the failures before forgiven. */
export async function recordSignIn(sql: Sql, address: string) {
  await sql`update mailbox set failed_sign_ins = 0, last_sign_in_at = now() where address = ${address.toLowerCase()}`;
}

/** Locked after too many failures: sign-in is refused until then, however right the password. */
export async function signInLockedUntil(sql: Sql, address: string): Promise<Date | null> {
  const [row] = await sql<{ until: Date | null }[]>`
    select case when locked_until > now() then locked_until end as until from mailbox
    where address = ${address.toLowerCase()}`;
  return row?.until ?? null;
}

/** Still allowed to sign in (the outage not resolved): checked on every web request, not only at sign-in. */
export async function mailboxOpen(sql: Sql, address: string): Promise<boolean> {
  const [row] = await sql<{ ok: boolean }[]>`
    select sign_in_allowed and deleted_at is null as ok from mailbox where address = ${address.toLowerCase()}`;
  return row?.ok === true;
}

import { randomBytes } from 'node:crypto';
import { chownSync, mkdirSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { MASTER_SEPARATOR, MASTER_USER } from '../mailbox/imap';
import { hashMailboxPassword } from '../mailbox/password';
import { letOthersTraverse } from './postgres';
import { accountIds, type ManagedProcess, startedOrStopped, startProcess } from './process';

// A private Dovecot (Debian's 2.3: imapd, lmtpd) for temporary mailboxes: its own configuration, mail folder, state
// and ports under the data folder, never the system's /etc/dovecot or its service. Sign-ins come from our
// PostgreSQL's mailbox table (migrations/005_mailbox.sql); mail arrives over LMTP. As root it runs its mail
// processes as Debian's `dovecot` account, else as whoever starts it.

export const DOVECOT = '/usr/sbin/dovecot';

export interface DovecotOptions {
  dir: string;
  host?: string;
  ports: { imap: number; lmtp: number; submission?: number };
  /** Where Dovecot's submission hands what people send (src/mailbox/relay.ts); no submission without it. */
  relay?: { host: string; port: number };
  /** The master user's password (src/mailbox/imap.ts): our services sign in to any mailbox with it. */
  masterSecret?: string;
  /** Networks the master user may sign in from (our services'), comma-separated CIDRs; loopback by default. */
  masterNets?: string;
  /** Our authentication policy server (src/mailbox/auth-policy.ts): last sign-in, lockout after failures. */
  authPolicyUrl?: string;
  /** Dovecot's admin HTTP API, for ending a mailbox's open sessions (src/mailbox/doveadm.ts). */
  doveadm?: { port: number; apiKey: string };
  /** postgres://user@host:port/db, as DATABASE_URL. */
  databaseUrl: string;
  tls: { cert: string; key: string };
  logFile: string;
  pidFile?: string;
}

/** Dovecot's pgsql connect string from a postgres:// URL. */
export function pgsqlConnect(url: string): string {
  const u = new URL(url);
  const parts = [
    `host=${u.hostname}`,
    `port=${u.port || 5432}`,
    `dbname=${decodeURIComponent(u.pathname.slice(1))}`,
    `user=${decodeURIComponent(u.username || 'postgres')}`,
    ...(u.password ? [`password=${decodeURIComponent(u.password)}`] : []),
  ];
  return parts.join(' ');
}

/** Who owns the mail files: Debian's dovecot account under root (Dovecot will not deliver as root), else us. */
function mailAccount(): { user: string; login: string } {
  if (process.getuid?.() === 0) return { user: 'dovecot', login: 'dovenull' };
  const me = userInfo().username;
  return { user: me, login: me };
}

export function dovecotConfig(opts: DovecotOptions): string {
  const host = opts.host ?? '127.0.0.1';
  const { user, login } = mailAccount();
  return [
    '# Written by src/stack/dovecot.ts at every start; edits are lost.',
    `base_dir = ${join(opts.dir, 'run')}`,
    `state_dir = ${join(opts.dir, 'state')}`,
    `instance_name = mxf-dovecot-${opts.ports.imap}`,
    'log_path = /dev/stderr',
    `listen = ${host}`,
    `protocols = imap lmtp${opts.relay && opts.ports.submission ? ' submission' : ''}`,
    `default_internal_user = ${user}`,
    `default_login_user = ${login}`,
    `mail_uid = ${user}`,
    `mail_gid = ${user}`,
    'first_valid_uid = 1',
    `mail_location = maildir:${join(opts.dir, 'mail')}/%d/%n`,
    'mail_privileged_group =',
    // Passwords only over TLS (STARTTLS on the IMAP port); PLAIN, which every client speaks.
    'ssl = required',
    `ssl_cert = <${opts.tls.cert}`,
    `ssl_key = <${opts.tls.key}`,
    'ssl_dh = </usr/share/dovecot/dh.pem',
    'disable_plaintext_auth = yes',
    'auth_mechanisms = plain login',
    // Every address a recipient may have (RFC 5322 atext, dot, @) signs in; "*" alone is left out: it separates
    // a master login. No recipient delimiter: a+b@ is its own mailbox, never a@'s. SQL escapes what goes to PostgreSQL.
    `auth_username_chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_@+=!#$%&'/?^\`{|}~"`,
    'recipient_delimiter =',
    // Our services sign in to any mailbox as `<address>*mxf-master` (src/mailbox/imap.ts); then the sql passdb
    // below is still asked whether the mailbox exists (result_success = continue).
    ...(opts.masterSecret
      ? [
          `auth_master_user_separator = ${MASTER_SEPARATOR}`,
          'passdb {',
          '  driver = passwd-file',
          '  master = yes',
          `  args = ${join(opts.dir, 'master-users')}`,
          '  result_success = continue',
          '}',
        ]
      : []),
    // A mailbox that does not exist (or is closed) is refused at RCPT by LMTP: the passdb says so.
    'passdb {',
    '  driver = sql',
    `  args = ${join(opts.dir, 'sql.conf.ext')}`,
    '}',
    'userdb {',
    '  driver = static',
    `  args = uid=${user} gid=${user} home=${join(opts.dir, 'mail')}/%d/%n`,
    '}',
    'namespace inbox {',
    '  inbox = yes',
    '  mailbox Sent {\n    special_use = \\Sent\n    auto = subscribe\n  }',
    '  mailbox Junk {\n    special_use = \\Junk\n    auto = subscribe\n  }',
    '}',
    `service imap-login {\n  inet_listener imap {\n    port = ${opts.ports.imap}\n  }\n  inet_listener imaps {\n    port = 0\n  }\n}`,
    `service lmtp {\n  inet_listener lmtp {\n    address = ${host}\n    port = ${opts.ports.lmtp}\n  }\n  unix_listener lmtp {\n    mode = 0600\n  }\n}`,
    ...submissionConfig(opts, host),
    ...authPolicyConfig(opts),
    ...(opts.doveadm
      ? [
          `doveadm_api_key = ${opts.doveadm.apiKey}`,
          `service doveadm {\n  inet_listener http {\n    address = ${host}\n    port = ${opts.doveadm.port}\n  }\n}`,
        ]
      : []),
    'lmtp_rcpt_check_quota = no',
    // Held mail goes into a mailbox as we hold it: no Received or Delivered-To of Dovecot's own above it.
    'lmtp_add_received_header = no',
    'lmtp_hdr_delivery_address = none',
    '',
  ].join('\n');
}

export function sqlConfig(databaseUrl: string): string {
  return [
    'driver = pgsql',
    `connect = ${pgsqlConnect(databaseUrl)}`,
    'default_pass_scheme = SSHA512',
    // A closed mailbox refuses its user (and LMTP), but not our master user: retention still has to empty it.
    "password_query = SELECT address AS user, password_hash AS password FROM mailbox WHERE address = lower('%u') AND deleted_at IS NULL AND (sign_in_allowed OR '%{master_user}' <> '')",
    '',
  ].join('\n');
}

/**
 * Submission (RFC 6409) on its own port, STARTTLS and AUTH required: Dovecot checks the password and hands the
 * message, with the signed-in address (XCLIENT LOGIN), to our relay, which sends it only from that address.
 */
function submissionConfig(opts: DovecotOptions, host: string): string[] {
  if (!opts.relay || !opts.ports.submission) return [];
  return [
    `service submission-login {\n  inet_listener submission {\n    address = ${host}\n    port = ${opts.ports.submission}\n  }\n}`,
    `submission_relay_host = ${opts.relay.host}`,
    `submission_relay_port = ${opts.relay.port}`,
    'submission_relay_trusted = yes',
    'submission_relay_ssl = no',
  ];
}

/** Asked before each sign-in, told after it; a policy server that does not answer lets sign-ins through. */
function authPolicyConfig(opts: DovecotOptions): string[] {
  if (!opts.authPolicyUrl) return [];
  return [
    `auth_policy_server_url = ${opts.authPolicyUrl}`,
    // Required by Dovecot for the password hash it would send; we ask for no password in the attributes.
    `auth_policy_hash_nonce = ${randomBytes(16).toString('hex')}`,
    // orig_user: the one who authenticated, `mxf-master` in both phases when our services sign in as a master user.
    'auth_policy_request_attributes = login=%{requested_username} orig=%{orig_user} remote=%{rip} protocol=%s',
    'auth_policy_check_before_auth = yes',
    'auth_policy_check_after_auth = no',
    'auth_policy_report_after_auth = yes',
    'auth_policy_reject_on_fail = no',
  ];
}

export async function startDovecot(opts: DovecotOptions): Promise<ManagedProcess> {
  for (const sub of ['run', 'state', 'mail']) mkdirSync(join(opts.dir, sub), { recursive: true });
  let ids: { uid: number; gid: number } | undefined;
  if (process.getuid?.() === 0) {
    // The mail processes run as 'dovecot': they must reach the mail folder (even inside a 0700 `mktemp -d`) and own it.
    ids = accountIds('dovecot');
    if (!ids)
      throw new Error("running as root, and there is no 'dovecot' account: apt-get install dovecot-imapd");
    letOthersTraverse(join(opts.dir, 'mail'));
    chownSync(join(opts.dir, 'mail'), ids.uid, ids.gid);
  }
  const conf = join(opts.dir, 'dovecot.conf');
  writeFileSync(conf, dovecotConfig(opts));
  writeFileSync(join(opts.dir, 'sql.conf.ext'), sqlConfig(opts.databaseUrl), { mode: 0o600 });
  if (opts.masterSecret) {
    const masterUsers = join(opts.dir, 'master-users');
    // allow_nets: from anywhere else the master password is refused, even right (IMAP is published to the world).
    const nets = opts.masterNets ?? '127.0.0.0/8';
    const entry = `${MASTER_USER}:${hashMailboxPassword(opts.masterSecret)}::::::allow_nets=${nets}\n`;
    writeFileSync(masterUsers, entry, { mode: 0o600 });
    // Dovecot's auth process reads it as 'dovecot' under root: a root-owned 0600 file refused every master sign-in.
    if (ids) chownSync(masterUsers, ids.uid, ids.gid);
  }
  // -F: stay in the foreground, so the stack owns the process and stops it.
  const proc = startProcess('dovecot', DOVECOT, ['-F', '-c', conf], {
    logFile: opts.logFile,
    pidFile: opts.pidFile,
  });
  const host = opts.host ?? '127.0.0.1';
  return startedOrStopped(
    proc,
    `Dovecot (IMAP ${host}:${opts.ports.imap}, LMTP ${opts.ports.lmtp}${opts.ports.submission ? `, submission ${opts.ports.submission}` : ''})`,
    () => imapGreets(host, opts.ports.imap),
    {
      logFile: opts.logFile,
      timeoutMs: 15_000,
    },
  );
}

/** True when the IMAP port greets with `* OK`. */
export function imapGreets(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1_000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('data', (d) => done(d.toString().startsWith('* OK')));
  });
}

import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type ManagedProcess, startProcess, tcpOpen, waitFor } from '../src/stack/process';

// A private Postfix instance configured as a backup MX for one domain: its own config, queue and data folders
// under `dir`, listening on 127.0.0.1:port. The machine's own Postfix configuration (/etc/postfix) is only read
// (master.cf as a template), never changed. Mail is accepted durably (Postfix fsyncs each queue file before its
// 250) and then deferred, which is what a backup MX does while the primary is down.

export function postfixAvailable(): string | undefined {
  for (const bin of ['/usr/sbin/postfix', '/usr/sbin/smtp-source', '/etc/postfix/master.cf']) {
    if (!existsSync(bin)) return `${bin} is missing: apt-get install postfix (choose "No configuration")`;
  }
  return undefined;
}

export async function startPostfixBackupMx(opts: {
  dir: string;
  port: number;
  domain: string;
}): Promise<ManagedProcess> {
  const conf = join(opts.dir, 'conf');
  for (const d of [conf, join(opts.dir, 'queue'), join(opts.dir, 'data')]) mkdirSync(d, { recursive: true });
  // Postfix's daemons run as the postfix account: it must reach the folders and own data_directory.
  chmodSync(opts.dir, 0o755);
  const uid = Number(execFileSync('id', ['-u', 'postfix']).toString());
  const gid = Number(execFileSync('id', ['-g', 'postfix']).toString());
  chownSync(join(opts.dir, 'data'), uid, gid);
  const main = [
    'compatibility_level = 3.6',
    `queue_directory = ${join(opts.dir, 'queue')}`,
    `data_directory = ${join(opts.dir, 'data')}`,
    'mail_owner = postfix',
    'setgid_group = postdrop',
    'myhostname = postfix.bench.test',
    'mydestination =',
    'inet_interfaces = 127.0.0.1',
    'inet_protocols = ipv4',
    'mynetworks = 127.0.0.0/8',
    `relay_domains = ${opts.domain}`,
    'smtpd_relay_restrictions = reject_unauth_destination',
    'defer_transports = smtp relay',
    'smtputf8_enable = yes',
    'message_size_limit = 52428800',
    `maillog_file = ${join(opts.dir, 'postfix.log')}`,
    `maillog_file_prefixes = ${opts.dir}`,
    'biff = no',
  ];
  writeFileSync(join(conf, 'main.cf'), `${main.join('\n')}\n`);
  // Same services as the system's master.cf, but no chroot (the private queue has no chroot files) and smtpd on
  // our port instead of 25.
  const master = readFileSync('/etc/postfix/master.cf', 'utf8')
    .split('\n')
    .map((line) => {
      const cols = line.split(/\s+/);
      if (line.startsWith('#') || line.startsWith(' ') || cols.length < 8) return line;
      if (cols[0] === 'smtp' && cols[1] === 'inet') cols[0] = `127.0.0.1:${opts.port}`;
      cols[4] = 'n';
      return cols.join('  ');
    })
    .join('\n');
  writeFileSync(join(conf, 'master.cf'), master);
  execFileSync('/usr/sbin/postfix', ['-c', conf, 'set-permissions'], { stdio: 'pipe' });
  execFileSync('/usr/sbin/postfix', ['-c', conf, 'check'], { stdio: 'inherit' });
  const proc = startProcess('postfix', '/usr/sbin/postfix', ['-c', conf, 'start-fg'], {
    logFile: join(opts.dir, 'master.out'),
    stopSignal: 'SIGTERM',
  });
  await waitFor(`Postfix on 127.0.0.1:${opts.port}`, () => tcpOpen('127.0.0.1', opts.port), {
    process: proc,
    logFile: join(opts.dir, 'postfix.log'),
  });
  return {
    ...proc,
    async stop() {
      try {
        execFileSync('/usr/sbin/postfix', ['-c', conf, 'stop'], { stdio: 'ignore' });
      } catch {
        // already stopped
      }
      await proc.stop();
    },
  };
}

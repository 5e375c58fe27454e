import { execFileSync } from 'node:child_process';
import {
  accessSync,
  chmodSync,
  chownSync,
  constants,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import type { DnsServerAddress } from '../config';
import { formatDnsServer, systemDnsServers } from './dns';
import { type ManagedProcess, startedOrStopped, startProcess } from './process';

// A private rspamd for the dev stack, the tests, the bench and the fault suite: the filter that judges mail
// (sender authentication, content) runs beside the service like PostgreSQL and MinIO, never the machine's own
// rspamd service (not running here, and left alone), so each stack has its own ports, configuration and state.
//
// It runs Debian's packaged configuration (/etc/rspamd) with our overrides in <dir>/conf, which that
// configuration includes as $LOCAL_CONFDIR/local.d and override.d:
// - no lookup leaves this machine: every module that queries outside services (DNS blocklists, fuzzy hashes,
//   URL checks, remote maps, Redis-backed history) is disabled, and DNS goes only to the resolvers we are given,
//   so results depend on nothing beyond our DNS records and a test never waits on the Internet;
// - SPF, DKIM, DMARC and ARC are checked also for loopback clients (tests connect from 127.0.0.1), and nothing is
//   signed here;
// - hyperscan databases, which take about 14 s of CPU to compile, are kept in a cache per machine (beside the
//   tools scripts/tools.sh builds), so only the first start ever compiles them.

export const RSPAMD = 'rspamd';
export const RSPAMD_TOP_CONFIG = '/etc/rspamd/rspamd.conf';
/** Per machine (well, per clone, like .tools/bin), git-ignored: compiled hyperscan databases. */
export const RSPAMD_HS_CACHE = join(__dirname, '../../.tools/cache/rspamd-hs');

/** Modules that look things up beyond this machine (or in Redis, which we do not run). */
const DISABLED_MODULES = [
  'rbl',
  'fuzzy_check',
  'phishing',
  'asn',
  'dcc',
  'url_redirector',
  'rspamd_update',
  'multimap',
  'whitelist',
  'emails',
  'surbl',
  'mx_check',
  'reputation',
  'neural',
  'ratelimit',
  'greylist',
  'history_redis',
  'metadata_exporter',
  'clickhouse',
  'elastic',
  'external_services',
  'antivirus',
  'spamassassin',
  'p0f',
  'dkim_signing',
  'bimi',
];

const q = (s: string) => JSON.stringify(s);

/** The files under <dir>/conf, by path relative to it. */
export function rspamdConfig(opts: {
  port: number;
  dnsServers: DnsServerAddress[];
  hsCacheDir: string;
}): Record<string, string> {
  const files: Record<string, string> = {
    'override.d/worker-normal.inc': `bind_socket = ${q(`127.0.0.1:${opts.port}`)};\ncount = 2;\n`,
    'override.d/worker-controller.inc': `bind_socket = ${q(`127.0.0.1:${opts.port + 1}`)};\n`,
    'override.d/worker-proxy.inc': 'enabled = false;\n',
    // Console: the stack sends our stdout and stderr to logs/rspamd.log.
    'override.d/logging.inc': 'type = "console";\nlevel = "notice";\n',
  };
  const servers = opts.dnsServers.map(formatDnsServer).map(q).join(', ');
  files['local.d/options.inc'] = [
    // Loopback is not "local" here: the tests' mail comes from 127.0.0.1 and must be judged like any other.
    'local_addrs = [];',
    // No nameserver line leaves rspamd to /etc/resolv.conf, which is what an empty list means anyway.
    `dns { ${servers ? `nameserver = [${servers}]; ` : ''}timeout = 1s; retransmits = 1; }`,
    `hs_cache_dir = ${q(`${opts.hsCacheDir}/`)};`,
    '',
  ].join('\n');
  const modules = new Set(existsSync('/etc/rspamd/modules.d') ? readdirSync('/etc/rspamd/modules.d') : []);
  for (const name of DISABLED_MODULES)
    if (modules.has(`${name}.conf`)) files[`override.d/${name}.conf`] = 'enabled = false;\n';
  // Kept, but with their packaged maps only: the first entry of each is a download from maps.rspamd.com.
  if (modules.has('mime_types.conf'))
    files['override.d/mime_types.conf'] = 'file = ["$CONFDIR/maps.d/mime_types.inc"];\n';
  if (modules.has('mid.conf'))
    files['override.d/mid.conf'] = 'source { url = ["$CONFDIR/maps.d/mid.inc"]; }\n';
  const checkLocal = 'check_local = true;\ncheck_authed = true;\n';
  for (const name of ['spf', 'dkim', 'dmarc']) files[`local.d/${name}.conf`] = checkLocal;
  files['local.d/arc.conf'] =
    `${checkLocal}sign_local = false;\nsign_authenticated = false;\nsign_inbound = false;\n`;
  return files;
}

/** As root, rspamd runs as Debian's '_rspamd' account; as anyone else, as that user. */
function runAs(): { user: string; uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const uid = Number(execFileSync('id', ['-u', '_rspamd']).toString());
    const gid = Number(execFileSync('id', ['-g', '_rspamd']).toString());
    return { user: '_rspamd', uid, gid };
  } catch {
    throw new Error(
      "running as root, and there is no '_rspamd' account to run rspamd as: apt-get install rspamd, or set MXF_RSPAMD_URL",
    );
  }
}

export async function startRspamd(opts: {
  dir: string;
  port: number;
  /** Resolvers for SPF, DKIM and DMARC lookups; empty: the system's (/etc/resolv.conf). */
  dnsServers: DnsServerAddress[];
  logFile: string;
  pidFile?: string;
  hsCacheDir?: string;
}): Promise<ManagedProcess> {
  const dir = resolve(opts.dir);
  const owner = runAs();
  const hsCacheDir = cacheFolder(resolve(opts.hsCacheDir ?? RSPAMD_HS_CACHE), dir, owner !== undefined);
  killLeftovers(dir);
  const conf = join(dir, 'conf');
  rmSync(conf, { recursive: true, force: true });
  const dnsServers = opts.dnsServers.length > 0 ? opts.dnsServers : systemDnsServers();
  for (const [path, text] of Object.entries(rspamdConfig({ port: opts.port, dnsServers, hsCacheDir }))) {
    mkdirSync(dirname(join(conf, path)), { recursive: true });
    writeFileSync(join(conf, path), text);
  }
  const writable = ['db', 'run', 'log'].map((d) => join(dir, d));
  for (const d of [...writable, hsCacheDir]) mkdirSync(d, { recursive: true });
  if (owner) {
    for (const d of [dir, ...writable, hsCacheDir]) chownSync(d, owner.uid, owner.gid);
    for (const f of readdirSync(hsCacheDir)) chownSync(join(hsCacheDir, f), owner.uid, owner.gid);
    letOthersTraverse(dir);
    letOthersTraverse(hsCacheDir);
  }
  const args = [
    '-f',
    '-c',
    RSPAMD_TOP_CONFIG,
    ...['LOCAL_CONFDIR', 'DBDIR', 'RUNDIR', 'LOGDIR'].flatMap((name, i) => [
      '--var',
      `${name}=${[conf, ...writable][i]}`,
    ]),
    ...(owner ? ['-u', owner.user, '-g', owner.user] : []),
  ];
  // cwd marks the main process and its workers as ours (see killLeftovers).
  const started = startProcess('rspamd', RSPAMD, args, {
    cwd: dir,
    logFile: opts.logFile,
    pidFile: opts.pidFile,
  });
  const proc: ManagedProcess = {
    name: started.name,
    child: started.child,
    exited: started.exited,
    // The main process stops its workers on SIGTERM; whatever outlives it (the main process was killed with
    // SIGKILL, by the grace period or a fault test) is killed here, so its port is free for a restart.
    stop: () => started.stop().finally(() => killLeftovers(dir)),
  };
  const url = `http://127.0.0.1:${opts.port}/ping`;
  return startedOrStopped(
    proc,
    `rspamd on 127.0.0.1:${opts.port}`,
    async () => {
      const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
      return res.ok && (await res.text()).trim() === 'pong';
    },
    // The first start on a machine compiles the hyperscan databases (about 14 s on 2 cores, more when busy).
    { logFile: opts.logFile, timeoutMs: 90_000 },
  );
}

/** The shared cache, or (when another user made it and we cannot write there) one of this instance's own. */
function cacheFolder(shared: string, dir: string, root: boolean): string {
  try {
    mkdirSync(shared, { recursive: true });
    if (!root) accessSync(shared, constants.W_OK);
    return shared;
  } catch {
    return join(dir, 'hs-cache');
  }
}

/**
 * Kills every process running in `dir` as its working folder: rspamd's main process and workers of an earlier
 * run that a SIGKILL orphaned (rspamd renames its processes, so the pid file's command line no longer matches).
 */
function killLeftovers(dir: string): void {
  for (const pid of processesIn(dir)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  const deadline = Date.now() + 5_000;
  while (processesIn(dir).length > 0 && Date.now() < deadline) execFileSync('sleep', ['0.05']);
}

function processesIn(dir: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      if (readlinkSync(`/proc/${entry}/cwd`) !== dir) continue;
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z') continue;
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').startsWith('rspamd')) found.push(Number(entry));
    } catch {
      // not ours to read, or exited
    }
  }
  return found;
}

/** As in postgres.ts: '_rspamd' must walk down to its folders, also inside a `mktemp -d` folder (mode 0700). */
function letOthersTraverse(dir: string): void {
  for (let d = dirname(dir); ; d = dirname(d)) {
    const mode = statSync(d).mode;
    if ((mode & 0o001) === 0) chmodSync(d, (mode & 0o7777) | 0o001);
    if (d === dirname(d)) break;
  }
}

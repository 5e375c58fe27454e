import { execFileSync } from 'node:child_process';
import { Resolver } from 'node:dns/promises';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { DnsServerAddress } from '../config';
import { type ManagedProcess, startedOrStopped, startProcess } from './process';

// A private DNS server (dnsmasq) for the dev stack and the tests: authoritative for the records it is given and
// for nothing else. Sender authentication (SPF, DKIM, DMARC) is lookups, so a test that wants "SPF passes" or "the
// DKIM key is this one" needs a resolver it controls; and no test should depend on, or leak to, the Internet's
// DNS. dnsmasq answers every name it does not hold with NXDOMAIN at once (local=/#/), never forwarding.

export type DnsRecord =
  /** A string[] is one record of several strings; a string longer than 255 bytes is split for you. */
  | { type: 'TXT'; name: string; value: string | string[] }
  /** host '.' is the null MX of RFC 7505 (this domain takes no mail); its preference must be 0. */
  | { type: 'MX'; name: string; host: string; preference: number }
  | { type: 'A'; name: string; address: string };

export const DNSMASQ = '/usr/sbin/dnsmasq';

/** A TXT record's character-strings hold at most 255 bytes each (RFC 1035); longer ones are cut into several. */
export function txtStrings(value: string | string[]): string[] {
  const out: string[] = [];
  for (const whole of Array.isArray(value) ? value : [value]) {
    let chunk = '';
    let bytes = 0;
    for (const char of whole) {
      const size = Buffer.byteLength(char);
      if (bytes + size > 255) {
        out.push(chunk);
        chunk = '';
        bytes = 0;
      }
      chunk += char;
      bytes += size;
    }
    out.push(chunk);
  }
  return out;
}

const NAME = /^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?$/;

function checkedName(name: string): string {
  if (!NAME.test(name) || name.length > 253) throw new Error(`not a DNS name: ${JSON.stringify(name)}`);
  return name.replace(/\.$/, '');
}

/** dnsmasq's quoted string: backslash escapes \\ and \" inside double quotes; no line breaks or NULs. */
function quoted(text: string): string {
  if (/[\r\n\0]/.test(text))
    throw new Error(`a TXT string cannot hold a line break or NUL: ${JSON.stringify(text)}`);
  return `"${text.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

function recordLine(record: DnsRecord): string {
  const name = checkedName(record.name);
  switch (record.type) {
    case 'TXT':
      return `txt-record=${[name, ...txtStrings(record.value).map(quoted)].join(',')}`;
    case 'MX':
      if (!Number.isInteger(record.preference) || record.preference < 0 || record.preference > 65535)
        throw new Error(`MX preference out of range for ${name}: ${record.preference}`);
      // dnsmasq's mx-host cannot name the root: the record is written as raw RDATA (preference 0, the root name).
      if (record.host === '.') return `dns-rr=${name},15,000000`;
      return `mx-host=${name},${checkedName(record.host)},${record.preference}`;
    case 'A':
      if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(record.address))
        throw new Error(`not an IPv4 address for ${name}: ${record.address}`);
      // host-record gives the name exactly (address=/name/ would cover its subdomains too).
      return `host-record=${name},${record.address}`;
  }
}

export function dnsmasqConfig(opts: { host: string; port: number; records: DnsRecord[] }): string {
  return [
    '# Written by src/stack/dns.ts at every start; edits are lost.',
    `port=${opts.port}`,
    `listen-address=${opts.host}`,
    'bind-interfaces',
    // Only the records below: no upstream servers, no /etc/hosts, and NXDOMAIN (not REFUSED) for the rest.
    'no-resolv',
    'no-hosts',
    'local=/#/',
    // Log to stderr, which the stack sends to the log file; no pid file of its own (the stack keeps one).
    'log-facility=-',
    'pid-file=',
    ...(process.getuid?.() === 0 ? ['user=nobody'] : []),
    ...opts.records.map(recordLine),
    '',
  ].join('\n');
}

/** The resolvers this machine uses (/etc/resolv.conf), for a component that must be told them. */
export function systemDnsServers(resolvConf = '/etc/resolv.conf'): DnsServerAddress[] {
  let text = '';
  try {
    text = readFileSync(resolvConf, 'utf8');
  } catch {
    return [];
  }
  return [...text.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((m) => ({ host: m[1]!, port: 53 }));
}

/** `127.0.0.1:5354`, `[::1]:53`: one server as MXF_DNS_SERVERS and rspamd write it. */
export const formatDnsServer = (s: DnsServerAddress) =>
  `${s.host.includes(':') ? `[${s.host}]` : s.host}:${s.port}`;

export async function startDnsServer(opts: {
  dir: string;
  host?: string;
  port: number;
  records?: DnsRecord[];
  logFile: string;
  pidFile?: string;
}): Promise<ManagedProcess> {
  const host = opts.host ?? '127.0.0.1';
  mkdirSync(opts.dir, { recursive: true });
  const conf = join(opts.dir, 'dnsmasq.conf');
  // -k: stay in the foreground, so the stack owns the process and stops it.
  const argv = [DNSMASQ, '-k', '-C', conf];
  killLeftovers(argv);
  // Read before dnsmasq drops root (to 'nobody'), so the file needs no permission beyond ours.
  writeFileSync(conf, dnsmasqConfig({ host, port: opts.port, records: opts.records ?? [] }));
  const started = startProcess('dns', DNSMASQ, argv.slice(1), {
    logFile: opts.logFile,
    pidFile: opts.pidFile,
  });
  // dnsmasq forks a child per TCP connection (rspamd keeps some open), and the children hold the listening
  // socket: one that outlives its parent (killed with SIGKILL) would keep the port from the next start.
  const proc: ManagedProcess = {
    name: started.name,
    child: started.child,
    exited: started.exited,
    stop: () => started.stop().finally(() => killLeftovers(argv)),
  };
  const address = formatDnsServer({ host, port: opts.port });
  return startedOrStopped(proc, `DNS server (dnsmasq) on ${address}`, () => dnsAnswers(address), {
    logFile: opts.logFile,
    timeoutMs: 15_000,
  });
}

/** Kills every process running exactly `argv`: this instance's dnsmasq and its children, from any run. */
function killLeftovers(argv: string[]): void {
  const ours = () => {
    const found: number[] = [];
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        if (stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z') continue;
        const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').slice(0, -1);
        if (JSON.stringify(cmdline) === JSON.stringify(argv)) found.push(Number(entry));
      } catch {
        // exited meanwhile
      }
    }
    return found;
  };
  for (const pid of ours()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
  }
  const deadline = Date.now() + 5_000;
  while (ours().length > 0 && Date.now() < deadline) execFileSync('sleep', ['0.05']);
}

/** True when the server answers a query at all: NXDOMAIN is an answer; refused or silence is not. */
export async function dnsAnswers(address: string): Promise<boolean> {
  const resolver = new Resolver({ timeout: 500, tries: 1 });
  resolver.setServers([address]);
  try {
    await resolver.resolveTxt('mxf-readiness-check.invalid');
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTFOUND' || code === 'ENODATA') return true;
    throw err;
  }
}

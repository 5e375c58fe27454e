import { Resolver } from 'node:dns/promises';
import type { DnsServerAddress } from '../config';

// The one resolver of outbound mail: MX lookups, the addresses they name, and the lookups mailauth makes. It asks
// the servers of MXF_DNS_SERVERS (the stack's private DNS in tests and dev), else the system's. Node's resolver
// takes a port, but dns.lookup (and so a plain `connect(host)`) ignores it: we connect to resolved addresses.

const TIMEOUT_MS = 2_000;
const TRIES = 2;

const resolvers = new Map<string, Resolver>();

export function mailResolver(servers: readonly DnsServerAddress[]): Resolver {
  const list = servers.map((s) => (s.host.includes(':') ? `[${s.host}]:${s.port}` : `${s.host}:${s.port}`));
  const key = list.join(',');
  let resolver = resolvers.get(key);
  if (!resolver) {
    resolver = new Resolver({ timeout: TIMEOUT_MS, tries: TRIES });
    if (list.length > 0) resolver.setServers(list);
    resolvers.set(key, resolver);
  }
  return resolver;
}

/** mailauth's resolver option: `(name, rrtype) => answers`, errors with Node's codes. */
export type DnsLookup = (name: string, rrtype: string) => Promise<unknown>;
export const dnsLookupOf =
  (resolver: Resolver): DnsLookup =>
  (name, rrtype) =>
    resolver.resolve(name, rrtype);

/** NXDOMAIN: the name does not exist. ENODATA: it exists, with no record of that type. */
export const noSuchName = (err: unknown) => (err as { code?: string }).code === 'ENOTFOUND';
export const noRecords = (err: unknown) => (err as { code?: string }).code === 'ENODATA';

import { isIP } from 'node:net';
import type { Config } from '../config';
import type { DeliveryTarget } from '../domain/delivery';
import { type MxAnswer, mxRoute, namedRoute, type RouteDecision, type RouteHost } from '../domain/route';
import type { Runbook } from '../domain/runbook';
import { mailResolver, noRecords, noSuchName } from '../mail/dns';

// The route of a delivery: which hosts, at which addresses, in which order (src/domain/route.ts decides; here
// are the lookups). Forwards and notifications go by the MX of the mailbox's domain, or through the smarthost
// when one is configured; a redirect goes to the host it names; the customer's own servers are the runbook's
// `primary`, or else their domain's MX records below ours. Every route is checked against looping back to us.

/** A route that cannot be used; `permanent` when only a change of DNS or of the instruction can help. */
export class RouteUnusable extends Error {
  constructor(
    readonly permanent: boolean,
    message: string,
  ) {
    super(message);
    this.name = 'RouteUnusable';
  }
}

export type Destination =
  | { kind: 'domain'; domain: string }
  | { kind: 'named'; hosts: readonly { host: string; port: number }[] };

const domainOf = (address: string) => address.slice(address.lastIndexOf('@') + 1).toLowerCase();

/** Where a target's mail is addressed, before any lookup. */
export function destinationOf(config: Config, target: DeliveryTarget, runbook: Runbook): Destination {
  switch (target.kind) {
    case 'forward':
      return mailboxDestination(config, target.to[0]!);
    case 'redirect':
      return { kind: 'named', hosts: [{ host: target.host, port: target.port }] };
    case 'primary':
      return runbook.primary
        ? { kind: 'named', hosts: runbook.primary }
        : { kind: 'domain', domain: runbook.domains[0]! };
    case 'mailboxes':
      throw new Error(
        'temporary mailboxes are filled over LMTP (src/activities/mailbox-fill.ts), not routed',
      );
  }
}

/** A mailbox anywhere (a forward, a contact's email): through the smarthost if there is one, else by MX. */
export function mailboxDestination(config: Config, address: string): Destination {
  const relay = config.outbound.relay;
  return relay ? { kind: 'named', hosts: [relay] } : { kind: 'domain', domain: domainOf(address) };
}

/** The hosts to try, in order; throws RouteUnusable with the reason an operator reads in the status. */
export async function routeTo(config: Config, destination: Destination): Promise<RouteHost[]> {
  const decision = await decide(config, destination);
  if (!decision.ok) throw new RouteUnusable(decision.permanent, decision.reason);
  return decision.hosts;
}

async function decide(config: Config, destination: Destination): Promise<RouteDecision> {
  const { own, mxPort } = config.outbound;
  const lookup = lookups(config);
  if (destination.kind === 'named') {
    const hosts = await Promise.all(
      destination.hosts.map(async (h) => ({
        name: h.host,
        port: h.port,
        addresses: await lookup.addresses(h.host),
      })),
    );
    return namedRoute(hosts, own, mxPort);
  }
  return mxRoute(destination.domain, await lookup.mx(destination.domain), own, mxPort);
}

function lookups(config: Config) {
  const resolver = mailResolver(config.dns.servers);
  const temporary = (what: string, err: unknown) =>
    new RouteUnusable(
      false,
      `looking up ${what} failed (${(err as { code?: string }).code ?? (err as Error).message}); trying again later`,
    );
  const addresses = async (name: string): Promise<string[]> => {
    if (isIP(name)) return [name];
    try {
      return await resolver.resolve4(name);
    } catch (err) {
      if (noSuchName(err) || noRecords(err)) return [];
      throw temporary(`the address of ${name}`, err);
    }
  };
  const mx = async (domain: string): Promise<MxAnswer[] | { none: true; implicit: string[] }> => {
    let records: { exchange: string; priority: number }[];
    try {
      records = await resolver.resolveMx(domain);
    } catch (err) {
      if (noRecords(err)) return { none: true, implicit: await addresses(domain) };
      if (noSuchName(err))
        throw new RouteUnusable(true, `${domain} does not exist (NXDOMAIN): it takes no mail`);
      throw temporary(`the MX of ${domain}`, err);
    }
    return Promise.all(
      records.map(async (r) => ({
        exchange: r.exchange,
        priority: r.priority,
        addresses: r.exchange === '' || r.exchange === '.' ? [] : await addresses(r.exchange),
      })),
    );
  };
  return { addresses, mx };
}

/** For the API and the status: a route described, or why there is none. */
export async function checkRoute(
  config: Config,
  destination: Destination,
): Promise<{ ok: true; hosts: RouteHost[] } | { ok: false; permanent: boolean; reason: string }> {
  try {
    return { ok: true, hosts: await routeTo(config, destination) };
  } catch (err) {
    if (err instanceof RouteUnusable) return { ok: false, permanent: err.permanent, reason: err.message };
    throw err;
  }
}

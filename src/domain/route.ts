// Where a delivery may go, decided from DNS answers (RFC 5321 section 5.1, RFC 7505). Pure: the activity does the
// lookups and hands the answers here, so the rules are one function each and tested without a network.
//
// Loop protection: no delivery ever goes to us. An endpoint is ours when its name is one of our MX names, or its
// address is one of ours on a port we take mail on (our SMTP port, or the MX port an MX record implies). In an MX
// list, a record that is ours marks our preference: it and every record at or above it are dropped, and what is
// left (strictly lower numbers) is where the mail goes; nothing left means the mail would come back to us.

export interface OwnMx {
  names: readonly string[];
  addresses: readonly string[];
  /** The port our ingest listens on. */
  smtpPort: number;
}

/** One MX record with the IPv4 addresses its exchange resolved to (empty: it did not resolve). */
export interface MxAnswer {
  exchange: string;
  priority: number;
  addresses: string[];
}

/** One place to connect to, in the order to try them: the name (for TLS's SNI and the status) and its address. */
export interface RouteHost {
  name: string;
  address: string;
  port: number;
}

export type RouteDecision =
  | { ok: true; hosts: RouteHost[] }
  /** permanent: no retry can help until DNS or the instruction changes (null MX, a loop, no such domain). */
  | { ok: false; permanent: boolean; reason: string };

const sameName = (a: string, b: string) =>
  a.replace(/\.$/, '').toLowerCase() === b.replace(/\.$/, '').toLowerCase();

/** Is this endpoint (a name or an address, at a port) us? */
export function isOwnEndpoint(own: OwnMx, nameOrAddress: string, port: number, mxPort: number): boolean {
  if (port !== own.smtpPort && port !== mxPort) return false;
  return own.names.some((n) => sameName(n, nameOrAddress)) || own.addresses.includes(nameOrAddress);
}

/** RFC 7505: a single MX record naming the root ('' as Node reports it) means "this domain takes no mail". */
export const isNullMx = (answers: readonly MxAnswer[]) =>
  answers.length === 1 && (answers[0]!.exchange === '' || answers[0]!.exchange === '.');

/**
 * The hosts to try for a domain, in preference order, from its MX answers; `'none'` when it has no MX records
 * (then the domain itself is the implicit MX, with `implicit` its addresses). Equal preferences keep DNS's order.
 */
export function mxRoute(
  domain: string,
  answers: readonly MxAnswer[] | { none: true; implicit: string[] },
  own: OwnMx,
  mxPort: number,
): RouteDecision {
  if ('none' in answers) {
    if (answers.implicit.length === 0)
      return {
        ok: false,
        permanent: true,
        reason: `${domain} has no MX record and no address: it takes no mail`,
      };
    return routeOf(domain, [{ exchange: domain, priority: 0, addresses: answers.implicit }], own, mxPort);
  }
  if (isNullMx(answers))
    return {
      ok: false,
      permanent: true,
      reason: `${domain} publishes a null MX (RFC 7505): it takes no mail`,
    };
  const records = answers.filter((a) => a.exchange !== '' && a.exchange !== '.');
  return routeOf(domain, records, own, mxPort);
}

function routeOf(domain: string, records: readonly MxAnswer[], own: OwnMx, mxPort: number): RouteDecision {
  const sorted = [...records].sort((a, b) => a.priority - b.priority);
  const ours = sorted.filter((r) =>
    [r.exchange, ...r.addresses].some((e) => isOwnEndpoint(own, e, mxPort, mxPort)),
  );
  const ourPreference = ours.length > 0 ? Math.min(...ours.map((r) => r.priority)) : Number.POSITIVE_INFINITY;
  const below = sorted.filter((r) => r.priority < ourPreference);
  if (below.length === 0) {
    const us = ours.map(
      (r) =>
        `${r.exchange} (preference ${r.priority}${r.addresses.length ? `, ${r.addresses.join(' ')}` : ''})`,
    );
    return {
      ok: false,
      permanent: true,
      reason: `delivery to ${domain} would loop back to us: ${us.join(', ')} is ours and no MX of ${domain} has a lower preference (RFC 5321 5.1)`,
    };
  }
  const hosts = below.flatMap((r) =>
    r.addresses.map((address) => ({ name: r.exchange, address, port: mxPort })),
  );
  if (hosts.length === 0)
    return {
      ok: false,
      permanent: false,
      reason: `no MX host of ${domain} resolves to an address (${below.map((r) => r.exchange).join(', ')}); trying again later`,
    };
  return { ok: true, hosts };
}

/**
 * Hosts named outright (a runbook's primary, a redirect, a smarthost): tried in the order given, each at its
 * own port; refused when any of them is us, since that mail would come straight back.
 */
export function namedRoute(
  hosts: readonly { name: string; addresses: string[]; port: number }[],
  own: OwnMx,
  mxPort: number,
): RouteDecision {
  for (const h of hosts) {
    const ourAddress = h.addresses.find((a) => isOwnEndpoint(own, a, h.port, mxPort));
    if (isOwnEndpoint(own, h.name, h.port, mxPort) || ourAddress)
      return {
        ok: false,
        permanent: true,
        reason: `${h.name}:${h.port}${ourAddress && ourAddress !== h.name ? ` (${ourAddress})` : ''} is this MX failover service itself: delivering there would loop`,
      };
  }
  const route = hosts.flatMap((h) => h.addresses.map((address) => ({ name: h.name, address, port: h.port })));
  if (route.length === 0)
    return {
      ok: false,
      permanent: false,
      reason: `${hosts.map((h) => h.name).join(', ')} does not resolve to an address; trying again later`,
    };
  return { ok: true, hosts: route };
}

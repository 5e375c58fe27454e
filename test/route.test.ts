import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createActivities } from '../src/activities';
import { checkRoute, destinationOf, RouteUnusable, routeTo } from '../src/activities/route';
import { type MxAnswer, mxRoute, namedRoute, type OwnMx } from '../src/domain/route';
import { type Runbook, runbookSchema } from '../src/domain/runbook';
import { startCatcher } from './helpers/catcher';
import {
  DNS_PRIMARY_ADDRESS,
  DNS_PRIMARY_DOMAIN,
  GMAIL_ADDRESS,
  GMAIL_DOMAIN,
  LOOP_DOMAIN,
  NULL_MX_DOMAIN,
  OUR_ADDRESS,
  OUR_MX,
} from './helpers/dns-zone';
import { uniqueRunbook } from './helpers/ingest';
import { testConfig } from './helpers/stack';

// Routing by DNS (RFC 5321 5.1, RFC 7505): the rules on answers given here, then the same through the test run's
// DNS server (test/helpers/dns-zone.ts), as the worker does it.

const own: OwnMx = { names: ['mx2.failover.example'], addresses: ['203.0.113.25'], smtpPort: 2525 };
const mx = (exchange: string, priority: number, ...addresses: string[]): MxAnswer => ({
  exchange,
  priority,
  addresses,
});

test('MX answers: by preference; ours and everything at or above it dropped; our address counts as us', () => {
  const answers = [
    mx('mx3.customer.example', 30, '198.51.100.3'),
    mx('mx1.customer.example', 10, '198.51.100.1'),
    mx('mx2.failover.example', 20, '203.0.113.25'),
  ];
  assert.deepEqual(mxRoute('customer.example', answers, own, 25), {
    ok: true,
    hosts: [{ name: 'mx1.customer.example', address: '198.51.100.1', port: 25 }],
  });
  // Not listed by name, but one of our addresses is: the same.
  const byAddress = [
    mx('mx1.customer.example', 10, '198.51.100.1'),
    mx('backup.customer.example', 20, '203.0.113.25'),
  ];
  assert.equal((mxRoute('customer.example', byAddress, own, 25) as { hosts: unknown[] }).hosts.length, 1);
  // We are not in the list at all: every MX is a destination.
  const notUs = [mx('b.example', 20, '198.51.100.2'), mx('a.example', 10, '198.51.100.1')];
  assert.deepEqual(
    (mxRoute('x.example', notUs, own, 25) as { hosts: { name: string }[] }).hosts.map((h) => h.name),
    ['a.example', 'b.example'],
  );
});

test('MX answers: a loop, a null MX, no MX at all, and names that do not resolve', () => {
  const loop = mxRoute(
    'loop.example',
    [mx('mx1.loop.example', 10, '203.0.113.25'), mx('mx2.failover.example', 20)],
    own,
    25,
  );
  assert.equal(loop.ok, false);
  assert.ok(!loop.ok && loop.permanent && /loop back to us/.test(loop.reason), JSON.stringify(loop));
  const nullMx = mxRoute('null.example', [mx('', 0)], own, 25);
  assert.ok(!nullMx.ok && nullMx.permanent && /null MX/.test(nullMx.reason));
  assert.deepEqual(mxRoute('bare.example', { none: true, implicit: ['198.51.100.9'] }, own, 25), {
    ok: true,
    hosts: [{ name: 'bare.example', address: '198.51.100.9', port: 25 }],
  });
  const nothing = mxRoute('gone.example', { none: true, implicit: [] }, own, 25);
  assert.ok(!nothing.ok && nothing.permanent);
  const unresolved = mxRoute('dangling.example', [mx('mx.dangling.example', 10)], own, 25);
  assert.ok(!unresolved.ok && !unresolved.permanent, 'a name that does not resolve may yet: try again later');
});

test('named hosts: our own address on our port is a loop; the same address on another port is not', () => {
  const loop = namedRoute([{ name: '203.0.113.25', addresses: ['203.0.113.25'], port: 2525 }], own, 25);
  assert.ok(!loop.ok && loop.permanent && /itself/.test(loop.reason));
  const byName = namedRoute(
    [{ name: 'mx2.failover.example', addresses: ['198.51.100.7'], port: 25 }],
    own,
    25,
  );
  assert.ok(!byName.ok && byName.permanent);
  assert.deepEqual(namedRoute([{ name: '203.0.113.25', addresses: ['203.0.113.25'], port: 2626 }], own, 25), {
    ok: true,
    hosts: [{ name: '203.0.113.25', address: '203.0.113.25', port: 2626 }],
  });
});

const config = testConfig();

function dnsRunbook(domain: string): Runbook {
  const { primary: _none, ...rest } = uniqueRunbook('harborview-law');
  return runbookSchema.parse({ ...rest, domains: [domain], recipients: 'any' });
}

test('through DNS: a forward to gmail.example goes to its MX; a null MX and a domain that does not exist are permanent', async () => {
  assert.deepEqual(await routeTo(config, { kind: 'domain', domain: GMAIL_DOMAIN }), [
    { name: `mx.${GMAIL_DOMAIN}`, address: GMAIL_ADDRESS, port: 25 },
  ]);
  const nullMx = await checkRoute(config, { kind: 'domain', domain: NULL_MX_DOMAIN });
  assert.ok(
    !nullMx.ok && nullMx.permanent && /null MX \(RFC 7505\)/.test(nullMx.reason),
    JSON.stringify(nullMx),
  );
  const missing = await checkRoute(config, { kind: 'domain', domain: 'no-such-domain.example' });
  assert.ok(!missing.ok && missing.permanent && /NXDOMAIN/.test(missing.reason), JSON.stringify(missing));
  await assert.rejects(
    routeTo(
      config,
      destinationOf(
        config,
        { kind: 'forward', to: [`someone@${NULL_MX_DOMAIN}`] },
        dnsRunbook(DNS_PRIMARY_DOMAIN),
      ),
    ),
    (err) => err instanceof RouteUnusable && err.permanent,
  );
});

test('through DNS: a runbook without primary finds its own servers below us; one that lists our address below us is a loop', async () => {
  assert.equal(config.outbound.own.names[0], OUR_MX, 'the test stack tells every process who we are');
  const found = await routeTo(
    config,
    destinationOf(config, { kind: 'primary' }, dnsRunbook(DNS_PRIMARY_DOMAIN)),
  );
  assert.deepEqual(found, [{ name: `mx1.${DNS_PRIMARY_DOMAIN}`, address: DNS_PRIMARY_ADDRESS, port: 25 }]);
  const loop = await checkRoute(config, destinationOf(config, { kind: 'primary' }, dnsRunbook(LOOP_DOMAIN)));
  assert.ok(!loop.ok && loop.permanent, JSON.stringify(loop));
  assert.ok(
    !loop.ok && loop.reason.includes(`mx1.${LOOP_DOMAIN}`) && loop.reason.includes(OUR_ADDRESS),
    loop.ok ? '' : loop.reason,
  );
  // A redirect to ourselves is refused the same way, by address and port.
  const redirect = await checkRoute(config, {
    kind: 'named',
    hosts: [{ host: OUR_ADDRESS, port: config.outbound.own.smtpPort }],
  });
  assert.ok(!redirect.ok && redirect.permanent);
});

test('the probe follows the same route: the DNS primary answers on its MX address; a looping one fails and says why', async () => {
  const server = await startCatcher({ host: DNS_PRIMARY_ADDRESS, port: 25 });
  try {
    const activities = createActivities({
      config,
      sql: undefined as never,
      objects: undefined as never,
      log: undefined as never,
      client: undefined as never,
    });
    const [probe] = await activities.probePrimary(dnsRunbook(DNS_PRIMARY_DOMAIN));
    assert.equal(probe!.ok, true, JSON.stringify(probe));
    assert.equal(probe!.host, `mx1.${DNS_PRIMARY_DOMAIN} (${DNS_PRIMARY_ADDRESS})`);
    const [loop] = await activities.probePrimary(dnsRunbook(LOOP_DOMAIN));
    assert.equal(loop!.ok, false);
    assert.match(loop!.error ?? '', /loop back to us/);
  } finally {
    await server.close();
  }
});

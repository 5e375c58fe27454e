import { sleep } from '@temporalio/activity';
import type { Transporter } from 'nodemailer';
import type { Config } from '../config';
import type { DeliveryTarget } from '../domain/delivery';
import { rateIntervalMs, type SlowDown, slowDownOf } from '../domain/pace';
import type { Runbook } from '../domain/runbook';
import { SealError, sealForwarded } from '../mail/arc';
import { ourDkimKey } from '../mail/dkim-key';
import { dnsLookupOf, mailResolver } from '../mail/dns';
import { returnPathFor, returnPathSecret } from '../mail/return-path';
import type { Sql } from '../store/db';
import { type PaceDestination, reserveSlot, slowDown } from '../store/pace';
import { destinationOf, routeTo } from './route';
import { TargetDeferred, transportFor } from './smtp-send';

// How the copies of one batch leave for one target: by which route (MX lookup, named hosts, smarthost), at what
// pace, and in what envelope. A forward's copy gets our signed return address as envelope sender (SPF aligns
// with our forwarding domain, and a bounce names the message and the target) and an ARC set above the bytes as we
// received them; a redirect or a restore keeps the original envelope and bytes.

/** What a held message brings to its copy. */
export interface CopySource {
  id: string;
  envelope_from: string;
  recipients: string[];
  client_ip: string;
  helo: string;
}

/** When this process last sent to a set of destinations (a forward's mailboxes and domain). */
const lastSendAt = new Map<string, number>();

/** The longest a batch waits for a slot itself; past it, the batch ends and the workflow's timer waits. */
const MAX_SLOT_WAIT_MS = 30_000;

const domainOf = (address: string) => address.slice(address.lastIndexOf('@') + 1).toLowerCase();

export interface OutboundDeps {
  sql: Sql;
  config: Config;
}

export class Outbound {
  private constructor(
    private readonly deps: OutboundDeps,
    private readonly target: DeliveryTarget,
    private readonly key: string,
    readonly transports: Transporter[],
    private readonly destinations: PaceDestination[],
    private readonly localPace?: () => Promise<void>,
  ) {}

  /** Looks the route up (RouteUnusable when there is none) and opens one pooled transport per host. */
  static async open(
    deps: OutboundDeps,
    input: { runbook: Runbook; target: DeliveryTarget; ratePerSecond?: number },
    key: string,
  ): Promise<Outbound> {
    const { config } = deps;
    const { target } = input;
    const hosts = await routeTo(config, destinationOf(config, target, input.runbook));
    const requireTls = target.kind === 'redirect' && target.requireTls;
    const transports = hosts.map((h) => transportFor(config, h, requireTls));
    const local = input.ratePerSecond ? pacer(input.ratePerSecond) : undefined;
    const outbound = new Outbound(deps, target, key, transports, forwardDestinations(config, target), local);
    if (input.ratePerSecond) outbound.ratePerMinute = input.ratePerSecond * 60;
    return outbound;
  }

  /** A forward paces per receiving mailbox and domain, shared by all workers; the rest at the runbook's rate. */
  get paced(): boolean {
    return this.destinations.length > 0;
  }

  /** The pace in force, messages per minute; undefined when unpaced. */
  ratePerMinute?: number;

  /** Waits for this copy's slot; returns the time to come back instead when that is more than a short wait. */
  async waitForSlot(): Promise<{ pausedUntil: number } | undefined> {
    if (this.localPace) await this.localPace();
    if (!this.paced) return undefined;
    const slot = await reserveSlot(this.deps.sql, this.destinations, MAX_SLOT_WAIT_MS);
    this.ratePerMinute = 60_000 / slot.intervalMs;
    if ('pausedUntil' in slot) return { pausedUntil: slot.pausedUntil };
    // The slot is on the database's clock, seen through a round trip of varying length; in this process the sends
    // are also spaced by the interval on its own clock, so that latency never brings two sends closer.
    const key = this.destinations.map((d) => d.key).join(' ');
    const wait = Math.max(slot.at, (lastSendAt.get(key) ?? 0) + slot.intervalMs) - Date.now();
    if (wait > 0) await sleep(wait);
    lastSendAt.set(key, Date.now());
    return undefined;
  }

  /**
   * The envelope and bytes of one copy; `unsealable` when this message can never be sealed (then it is refused at
   * the forward and stays held for the customer's own server, and the rest of the backlog goes on).
   */
  async copyOf(
    message: CopySource,
    raw: Buffer,
  ): Promise<{ envelope: { from: string; to: string[] }; raw: Buffer } | { unsealable: string }> {
    if (this.target.kind !== 'forward')
      return { envelope: { from: message.envelope_from, to: message.recipients }, raw };
    const { config } = this.deps;
    const from = returnPathFor(
      { domain: config.outbound.returnPath.domain, secret: returnPathSecret(config) },
      message.id,
      this.key,
    );
    let seal: Buffer;
    try {
      seal = await sealForwarded(
        raw,
        { clientIp: message.client_ip, helo: message.helo, envelopeFrom: message.envelope_from },
        {
          key: ourDkimKey(config),
          lookup: dnsLookupOf(mailResolver(config.dns.servers)),
          authservId: config.hostname,
        },
      );
    } catch (err) {
      if (!(err instanceof SealError)) throw err;
      // Never sent unsealed: without ARC, Gmail may file or refuse it. Our DNS down: the batch stops, retried later.
      if (!err.temporary) return { unsealable: `not forwarded: ${err.message}` };
      throw new TargetDeferred({ at: new Date().toISOString(), replyCode: null, message: err.message });
    }
    return { envelope: { from, to: this.target.to }, raw: Buffer.concat([seal, raw]) };
  }

  /**
   * The receiver said "too fast" (450 4.2.1 for a mailbox, 421 4.7.28 / 4.7.0 for our addresses at the domain):
   * that destination slows down for everyone. Returns when it resumes; undefined when the reply was not that.
   */
  async slowDownFor(error: { replyCode: number | null; message: string }): Promise<Date | undefined> {
    const kind: SlowDown | null = slowDownOf(error.replyCode, error.message);
    if (!kind || !this.paced) return undefined;
    const keys = this.destinations.filter((d) => d.key.startsWith(`${kind}:`)).map((d) => d.key);
    const resumes = await Promise.all(keys.map((k) => slowDown(this.deps.sql, k)));
    return new Date(Math.max(...resumes.map((d) => d.getTime())));
  }

  close() {
    for (const t of this.transports) t.close();
  }
}

/** A forward's destinations: each receiving mailbox at the instruction's rate, and the receiving domain. */
function forwardDestinations(config: Config, target: DeliveryTarget): PaceDestination[] {
  if (target.kind !== 'forward') return [];
  const mailbox = rateIntervalMs(target.rate ?? config.outbound.pace.mailbox);
  // A rate set on the instruction (a customer's own server takes more) is never held back by the domain default.
  const domain = Math.min(mailbox, rateIntervalMs(config.outbound.pace.domain));
  return [
    ...target.to.map((to) => ({ key: `mailbox:${to.toLowerCase()}`, intervalMs: mailbox })),
    { key: `domain:${domainOf(target.to[0]!)}`, intervalMs: domain },
  ];
}

/**
 * Waits until the next send is due: one every 1/ratePerSecond, counted from the start of the previous send, so the
 * time a send takes is part of its interval (a pause after each send would go slower than the rate). A send that
 * took longer than its interval is not made up for by a burst: a server just coming back gets the rate at most.
 */
function pacer(ratePerSecond: number): () => Promise<void> {
  const intervalMs = 1000 / ratePerSecond;
  let lastStart = Number.NEGATIVE_INFINITY;
  return async () => {
    const wait = lastStart + intervalMs - Date.now();
    if (wait > 0) await sleep(wait);
    lastStart = Date.now();
  };
}

import { setTimeout as sleep } from 'node:timers/promises';
import type { Client } from '@temporalio/client';
import { BatchBodies, type StoredBody } from '../activities/body-reader';
import type { Config } from '../config';
import { outageWorkflowId } from '../domain/outage';
import type { Runbook } from '../domain/runbook';
import {
  SCORE_ATTEMPTS,
  type SpamPolicy,
  type SpamScore,
  type SpamVerdict,
  spamPolicySchema,
  verdictOf,
} from '../domain/spam';
import type { Logger } from '../log';
import type { Sql } from '../store/db';
import type { ObjectStore } from '../store/objects';
import { mailHeldSignal } from '../workflows/messages';
import type { ScorerMetrics } from './metrics';
import { checkMessage, type Envelope, FilterError } from './rspamd';

// The scorer: every held message is scored once, off the SMTP path, by whichever worker process claims it. A claim
// is a lease taken with FOR UPDATE SKIP LOCKED, so two workers do not score one message; a worker, filter or
// database that dies mid-batch leaves the rest unscored for the next claim (at worst after the lease lapses):
// nothing is lost, and the `scored_at is null` guard on the write makes a score final. The 250 never waited.

const BATCH = 64;
const CONCURRENCY = 16;
const IDLE_MS = 250;
const MAX_BACKOFF_MS = 30_000;
// Longer than a batch can take: four rounds of CONCURRENCY at the client's 20 s timeout.
const LEASE_SECONDS = 120;

interface Unscored extends StoredBody {
  id: string;
  queue_id: string;
  envelope_from: string;
  client_ip: string;
  helo: string;
  recipients: string[];
  customers: string[];
}

export interface ScorerDeps {
  sql: Sql;
  objects: ObjectStore;
  config: Config;
  log: Logger;
  client: Client;
  runbooks: Runbook[];
  metrics: ScorerMetrics;
}

export class Scorer {
  private stopped = false;
  private running?: Promise<void>;
  private readonly policies: Map<string, SpamPolicy>;
  private readonly lastRing = new Map<string, number>();
  private readonly pendingRings = new Map<string, NodeJS.Timeout>();

  constructor(private readonly deps: ScorerDeps) {
    this.policies = new Map(deps.runbooks.map((rb) => [rb.id, spamPolicySchema.parse(rb.spam)]));
  }

  start(): void {
    this.running ??= this.loop();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.running;
    for (const timer of this.pendingRings.values()) clearTimeout(timer);
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      let scored = 0;
      try {
        scored = await this.scoreBatch();
        if (failures > 0) this.deps.log.info('the spam filter answers again; scoring resumed');
        failures = 0;
      } catch (err) {
        failures++;
        this.deps.metrics.errors.inc();
        await this.recordHealth(err as Error).catch(() => undefined);
        this.deps.log.warn(
          { err: (err as Error).message },
          'spam scoring failed; held mail waits for its score',
        );
      }
      if (scored === 0 && !this.stopped)
        await sleep(failures ? Math.min(1_000 * 2 ** (failures - 1), MAX_BACKOFF_MS) : IDLE_MS);
    }
  }

  /** Claims, scores and records one batch; returns how many were scored. Throws when the filter fails. */
  private async scoreBatch(): Promise<number> {
    const batch = await this.claim();
    if (batch.length === 0) return 0;
    const bodies = new BatchBodies(this.deps.objects, this.deps.config.s3.bucket, batch);
    const results = await inParallel(batch, CONCURRENCY, async (m) => this.score(m, await bodies.read(m)));
    const customers = new Set<string>();
    // When the filter scored others of the batch, a message it failed on is that message's matter (it times out,
    // it is refused): counted, so that a few such messages never hold up everything behind them.
    const filterWorks = results.some((r) => r.status === 'fulfilled');
    const scored: { m: Unscored; score: SpamScore }[] = [];
    let failure: unknown;
    for (const [i, r] of results.entries()) {
      const m = batch[i]!;
      if (r.status === 'rejected') {
        if (ownFault(r.reason) || filterWorks) await this.recordFailure(m, r.reason as Error);
        else failure ??= r.reason;
        continue;
      }
      scored.push({ m, score: r.value });
      for (const c of m.customers) customers.add(c);
    }
    await this.record(scored);
    const done = scored.length;
    // What was scored is kept; the rest is let go for the next claim, and the caller backs off.
    const unscored = batch.filter((_, i) => results[i]!.status === 'rejected').map((m) => m.id);
    if (unscored.length > 0)
      await this.deps
        .sql`update held_message set score_lease_until = null where id in ${this.deps.sql(unscored)}`;
    if (failure && done === 0) throw failure;
    if (done > 0) await this.recordHealth(null);
    for (const c of customers) this.ring(c);
    return done;
  }

  /**
   * A lease, not a transaction held open while rspamd answers: a connection lost mid-batch (PostgreSQL restarted)
   * then costs nothing but the lease, which lapses after LEASE_SECONDS.
   */
  private claim(): Promise<Unscored[]> {
    const { sql } = this.deps;
    return sql<Unscored[]>`
      update held_message m set score_lease_until = clock_timestamp() + make_interval(secs => ${LEASE_SECONDS})
      where m.id in (
        select id from held_message
        where scored_at is null and score_attempts < ${SCORE_ATTEMPTS}
          and (score_lease_until is null or score_lease_until < clock_timestamp())
        order by score_attempts, id limit ${BATCH}
        for update skip locked)
      returning m.id, m.queue_id, m.object_key, m.body_offset, m.size_bytes, m.envelope_from,
        host(m.client_ip) as client_ip, m.helo,
        (select array_agg(r.recipient order by r.recipient) from held_recipient r where r.message_id = m.id)
          as recipients,
        (select array_agg(distinct r.customer_id) from held_recipient r where r.message_id = m.id) as customers`.then(
      (rows) => [...rows].sort((a, b) => Number(a.id) - Number(b.id)),
    );
  }

  private async score(m: Unscored, raw: Buffer): Promise<SpamScore> {
    const envelope: Envelope = {
      queueId: m.queue_id,
      clientIp: m.client_ip,
      helo: m.helo,
      from: m.envelope_from,
      recipients: m.recipients,
    };
    const started = process.hrtime.bigint();
    const score = await checkMessage(this.deps.config.rspamd.url, raw, envelope);
    this.deps.metrics.latency.observe(Number(process.hrtime.bigint() - started) / 1e9);
    score.auth.spf.domain = m.envelope_from.slice(m.envelope_from.lastIndexOf('@') + 1) || m.helo;
    return score;
  }

  /** The batch's scores and verdicts in one statement; a message someone else scored meanwhile keeps its score. */
  private async record(scored: { m: Unscored; score: SpamScore }[]): Promise<void> {
    if (scored.length === 0) return;
    const { sql } = this.deps;
    const rows = scored.map(({ m, score }) => {
      const policies = m.customers.map((c) => this.policies.get(c) ?? spamPolicySchema.parse(undefined));
      const { verdict, reason } = verdictOf(score, policies);
      const auth = JSON.stringify({ ...score.auth, verdictReason: reason });
      return [m.id, verdict, String(score.score), score.action, JSON.stringify(score.symbols), auth];
    });
    const written = await sql<{ verdict: SpamVerdict }[]>`
      update held_message m set scored_at = clock_timestamp(), spam_verdict = v.verdict,
        spam_score = v.score::real, spam_action = v.action, spam_symbols = v.symbols::jsonb, auth = v.auth::jsonb
      from (values ${sql(rows as never)}) as v (id, verdict, score, action, symbols, auth)
      where m.id = v.id::bigint and m.scored_at is null
      returning v.verdict`;
    for (const { verdict } of written) this.deps.metrics.scored.inc({ verdict });
  }

  /** A message that failed on its own account: tried again a few times, then left for an operator. */
  private async recordFailure(m: Unscored, err: Error): Promise<void> {
    await this.deps
      .sql`update held_message set score_attempts = score_attempts + 1, score_error = ${err.message}, score_lease_until = null
             where id = ${m.id}`;
    this.deps.log.error(
      { messageId: m.id, queueId: m.queue_id, err: err.message },
      'could not score a held message; it stays unscored (a forward leaves it) and is tried again',
    );
  }

  /** The filter's state, for the outage status: since when it fails, and with what. */
  private async recordHealth(err: Error | null): Promise<void> {
    const error = err ? (err instanceof FilterError ? err.message : `scoring failed: ${err.message}`) : null;
    await this.deps.sql`
      insert into filter_health (id, checked_at, failing_since, last_error)
      values (1, now(), ${error ? new Date() : null}, ${error})
      on conflict (id) do update set checked_at = now(), last_error = excluded.last_error,
        failing_since = case when excluded.last_error is null then null
                             else coalesce(filter_health.failing_since, now()) end`;
  }

  /**
   * A forward waits for scores: tell the customer's outage, at most once per doorbell interval, and once more at
   * the end of an interval in which scores landed (trailing), so the last scores are never left unannounced. Only
   * a running outage is told; mail is held either way, and the ingest's doorbell or the reconciler starts one.
   */
  private ring(customerId: string): void {
    if (this.pendingRings.has(customerId)) return;
    const wait = (this.lastRing.get(customerId) ?? 0) + this.deps.config.smtp.doorbellMs - Date.now();
    this.pendingRings.set(
      customerId,
      setTimeout(() => void this.signal(customerId), Math.max(wait, 0)),
    );
  }

  private async signal(customerId: string): Promise<void> {
    this.pendingRings.delete(customerId);
    this.lastRing.set(customerId, Date.now());
    try {
      await this.deps.client.workflow
        .getHandle(outageWorkflowId(customerId))
        .signal(mailHeldSignal, { acceptedSinceLastRing: 0 });
    } catch (err) {
      this.deps.log.debug({ customerId, err: (err as Error).message }, 'no running outage to tell of scores');
    }
  }
}

/**
 * A failure of the message itself (its body gone from storage, the filter refusing this message), which trying
 * again soon will not mend; anything else (the filter or storage unreachable) waits, with backoff, for them.
 */
function ownFault(err: unknown): err is Error {
  if (err instanceof FilterError) return err.aboutMessage;
  return (err as { code?: string }).code === 'NoSuchKey';
}

/** Runs `fn` over `items`, at most `limit` at once, keeping each outcome in order. */
async function inParallel<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>) {
  const results: PromiseSettledResult<R>[] = new Array(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!).then(
        (value) => ({ status: 'fulfilled', value }) as const,
        (reason) => ({ status: 'rejected', reason }) as const,
      );
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}

import type postgres from 'postgres';
import { SLOWDOWN_FLOOR, SLOWDOWN_RECOVERY_MS } from '../domain/pace';
import type { Sql } from './db';

// Pacing per destination in PostgreSQL: one row per receiving mailbox or domain, shared by every worker and every
// customer. A send reserves its slot on each destination it goes to (GCRA: the next slot is one interval after the
// later of the last slot and now), so sends are spaced by at least the interval however many workers share them,
// and a crash or a restart never brings a burst. The clock is the database's, one for all workers.

/** A destination and its interval at full pace (domain/pace.ts rateIntervalMs). */
export interface PaceDestination {
  key: string;
  intervalMs: number;
}

export type PaceSlot =
  /** Send at `at` (epoch ms, this host's clock); `intervalMs` is the pace in force (the slowest destination's). */
  | { at: number; intervalMs: number }
  /** Nothing before `until`: a receiver asked us to slow down, or the next slot is further off than we wait. */
  | { pausedUntil: number; intervalMs: number };

/**
 * A margin on every interval: smooth pacing at exactly a receiver's cap puts the (count+1)th message at the edge of
 * its window, where a few milliseconds of jitter (a busy event loop, a slow round trip) make it a 421, and a 421
 * costs minutes. 10% slower keeps that edge 100 ms away for 5/s in 1 s, 6 s for 60 in a minute.
 */
const MARGIN = 1.1;

interface PaceRow {
  destination: string;
  wait_ms: number;
  scale: number;
}

/** Reserves the next send to all of `destinations`, unless it is more than `maxWaitMs` away. */
export async function reserveSlot(
  sql: Sql,
  destinations: readonly PaceDestination[],
  maxWaitMs: number,
): Promise<PaceSlot> {
  // Sorted: rows are inserted and locked in one order, so two workers reserving the same destinations never deadlock.
  const keys = destinations.map((d) => d.key).sort();
  const intervalOf = new Map(destinations.map((d) => [d.key, d.intervalMs * MARGIN]));
  return sql.begin(async (tx) => {
    await tx`insert into delivery_pace (destination) select unnest(${keys}::text[]) on conflict do nothing`;
    // clock_timestamp(), not now(): the transaction may have waited for the lock, and the slot counts from here.
    const rows = await tx<PaceRow[]>`
      select destination,
             greatest(0, extract(epoch from (greatest(next_at, coalesce(resume_at, clock_timestamp())) - clock_timestamp())) * 1000)::float8 as wait_ms,
             ${recoveredScale(tx)} as scale
      from delivery_pace where destination = any(${keys}) order by destination for update`;
    const waitMs = Math.max(...rows.map((r) => r.wait_ms));
    const intervalMs = Math.max(...rows.map((r) => intervalOf.get(r.destination)! / r.scale));
    if (waitMs > maxWaitMs) return { pausedUntil: Date.now() + waitMs, intervalMs };
    // Every destination's next slot counts from this send's time, which is the latest of theirs.
    for (const r of rows)
      await tx`
        update delivery_pace
        set next_at = clock_timestamp() + ${waitMs + intervalOf.get(r.destination)! / r.scale} * interval '1 ms',
            scale = ${r.scale}
        where destination = ${r.destination}`;
    return { at: Date.now() + waitMs, intervalMs };
  });
}

/**
 * A receiver said "too fast" for this destination: halve its pace (not below SLOWDOWN_FLOOR) and send nothing
 * there for a while: 1 minute after the first halving, doubling with each (about half an hour at the floor).
 * Several workers hearing the same refusal within 10 s halve it once. Returns when it resumes.
 */
export async function slowDown(sql: Sql, destination: string): Promise<Date> {
  await sql`insert into delivery_pace (destination) values (${destination}) on conflict do nothing`;
  const [row] = await sql<{ resume_at: Date }[]>`
    with halved as (
      select greatest(${SLOWDOWN_FLOOR}, ${recoveredScale(sql)} / 2) as scale
      from delivery_pace
      where destination = ${destination} and (slowed_at is null or slowed_at < now() - interval '10 seconds')
      for update)
    update delivery_pace p
    set scale = h.scale, slowed_at = now(), resume_at = now() + interval '30 seconds' / h.scale
    from halved h where p.destination = ${destination}
    returning p.resume_at`;
  if (row) return row.resume_at;
  const [current] = await sql<{ resume_at: Date }[]>`
    select resume_at from delivery_pace where destination = ${destination}`;
  return current!.resume_at;
}

/** The scale in force: back to 1 an hour after the last slow-down. */
const recoveredScale = (sql: Sql | postgres.TransactionSql) =>
  sql`(case when slowed_at < now() - ${SLOWDOWN_RECOVERY_MS} * interval '1 ms' then 1 else scale end)`;

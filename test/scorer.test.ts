import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import pino from 'pino';
import { SCORE_ATTEMPTS } from '../src/domain/spam';
import { createScorerMetrics } from '../src/scorer/metrics';
import { Scorer } from '../src/scorer/scorer';
import { createSql } from '../src/store/db';
import { countSpam } from '../src/store/held';
import { commitHeldMessage } from '../src/store/messages';
import { createObjectStore } from '../src/store/objects';
import { reviewQuarantine } from '../src/store/quarantine';
import { eventually } from './helpers/eventually';
import { heldMessage } from './helpers/fixtures';
import { holdBacklog } from './helpers/held';
import { testConfig } from './helpers/stack';

// The scorer against the test stack's real rspamd, and the quarantine review's reach, on the real database.
const config = testConfig();
const sql = createSql(config);
after(() => sql.end());

async function withScorer<T>(fn: () => Promise<T>): Promise<T> {
  const client = new Client({ connection: Connection.lazy({ address: config.temporal.address }) });
  const scorer = new Scorer({
    sql,
    objects: createObjectStore(config),
    config,
    log: pino({ level: 'silent' }),
    client,
    runbooks: [],
    metrics: createScorerMetrics(),
  });
  scorer.start();
  try {
    return await fn();
  } finally {
    await scorer.stop();
    await client.connection.close();
  }
}

test('messages that cannot be scored (their bodies gone) never hold up the mail behind them', async () => {
  const customer = `poison-${randomUUID().slice(0, 8)}`;
  const to = `a@${customer}.example`;
  // More than a claim's batch of rows whose bodies are not in storage, ahead of real mail.
  const poisoned: string[] = [];
  for (let i = 0; i < 40; i++)
    poisoned.push(String(await commitHeldMessage(sql, heldMessage(customer, [to]))));
  const real = await holdBacklog(sql, customer, [to], 3, { unscored: true });
  await withScorer(async () => {
    await eventually(
      'the real mail scored',
      () => sql<{ n: number }[]>`select count(*)::int as n from held_message
                                 where id in ${sql([...real.byRowId.keys()])} and scored_at is not null`,
      ([r]) => r?.n === 3,
      20_000,
    );
    const stuck = await eventually(
      'the bodiless rows tried their share and left unscored',
      () => sql<{ attempts: number; error: string | null; scored: boolean }[]>`
        select score_attempts as attempts, score_error as error, scored_at is not null as scored
        from held_message where id in ${sql(poisoned)}`,
      (rows) => rows.every((r) => r.attempts === SCORE_ATTEMPTS),
      20_000,
    );
    assert.ok(
      stuck.every((r) => !r.scored && /key does not exist/i.test(r.error ?? '')),
      JSON.stringify(stuck[0]),
    );
  });
  const spam = await countSpam(sql, customer);
  assert.equal(spam.unscored, 40, 'left unscored, and counted as waiting');
});

test('a quarantine review reaches as far as the newest message it showed, not to mail quarantined after', async () => {
  const customer = `review-${randomUUID().slice(0, 8)}`;
  const to = `a@${customer}.example`;
  const quarantine = async () => {
    const { byRowId } = await holdBacklog(sql, customer, [to], 1);
    const id = [...byRowId.keys()][0]!;
    await sql`update held_message set spam_verdict = 'quarantined', spam_score = 15, scored_at = clock_timestamp()
              where id = ${id}`;
    return id;
  };
  const older = await quarantine();
  const newer = await quarantine();
  const first = await reviewQuarantine(sql, { customerId: customer, limit: 1, actor: 'ops:test' });
  assert.deepEqual(
    first.map((r) => r.id),
    [newer],
  );
  const later = await quarantine(); // arrives while the operator reads on
  const second = await reviewQuarantine(sql, {
    customerId: customer,
    cursor: newer,
    limit: 1,
    actor: 'ops:test',
  });
  assert.deepEqual(
    second.map((r) => r.id),
    [older],
  );
  const spam = await countSpam(sql, customer);
  assert.equal(spam.quarantined, 3);
  assert.equal(spam.unreviewed, 1, `only ${later}, which no page showed, is unreviewed`);
  await reviewQuarantine(sql, { customerId: customer, limit: 10, actor: 'ops:test' });
  assert.equal((await countSpam(sql, customer)).unreviewed, 0);
});

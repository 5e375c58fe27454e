import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { test } from 'node:test';
import { outageWorkflowId } from '../src/domain/outage';
import type { SenderAuth, SpamSymbol } from '../src/domain/spam';
import type { Sql } from '../src/store/db';
import { mailHeldSignal } from '../src/workflows/messages';
import { startOpsStack } from './helpers/api';
import { messageIdsOf, startCatcher } from './helpers/catcher';
import { eventually } from './helpers/eventually';
import { type Backlog, holdBacklog } from './helpers/held';
import { freePort } from './helpers/ports';
import { ROOT, run } from './helpers/run';
import { runbookWithPrimaryAt } from './helpers/runbooks';
import { useTemporalClient } from './helpers/temporal';

// Spam as operators see and decide it, over real HTTP against real Temporal (with a worker), PostgreSQL and MinIO:
// a message's score and authentication, a customer's quarantine, release and mark-as-spam, and the resolve gate.
// The scorer's verdicts are written straight into held_message, as the scorer would leave them.

const temporal = useTemporalClient();

const GMAIL = 'office.backup@gmail.example';

const AUTH: SenderAuth = {
  spf: { result: 'pass', domain: 'origin.example' },
  dkim: { result: 'pass', domains: ['origin.example', 'esp.example'] },
  dmarc: { result: 'fail', domain: 'bank.example', policy: 'reject' },
  arc: { result: 'none' },
};

/** Largest first by size, whichever way they push: BAYES_SPAM, HFILTER_HELO_BAREIP, DMARC_POLICY_REJECT, ... */
const SYMBOLS: Record<string, SpamSymbol> = {
  R_SPF_ALLOW: { score: -0.2, options: ['+ip4:192.0.2.1'] },
  BAYES_SPAM: { score: 5.1, options: ['99.90%'] },
  MIME_GOOD: { score: -0.1 },
  DMARC_POLICY_REJECT: { score: 2, options: ['bank.example : No valid SPF, DKIM not aligned', 'reject'] },
  HFILTER_HELO_BAREIP: { score: -3 },
  MANY_INVISIBLE_PARTS: { score: 0.3 },
};
const SORTED = [
  'BAYES_SPAM',
  'HFILTER_HELO_BAREIP',
  'DMARC_POLICY_REJECT',
  'MANY_INVISIBLE_PARTS',
  'R_SPF_ALLOW',
  'MIME_GOOD',
];

const rowId = (b: Backlog) => [...b.byRowId.keys()][0]!;

interface Verdict {
  score: number;
  action: string;
  symbols: Record<string, SpamSymbol>;
  reason: string;
}

const BY_SCORE: Verdict = { score: 9.5, action: 'add header', symbols: SYMBOLS, reason: 'score 9.50 >= 6' };
const BY_DMARC: Verdict = {
  score: 1.25,
  action: 'no action',
  symbols: { DMARC_POLICY_REJECT: { score: 2 }, R_SPF_ALLOW: { score: -0.2 } },
  reason: 'DMARC failed for bank.example, which says p=reject',
};

/** What the scorer leaves on a message it quarantined. */
async function quarantine(sql: Sql, id: string, v: Verdict) {
  await sql`
    update held_message set scored_at = now(), spam_verdict = 'quarantined', spam_score = ${v.score},
      spam_action = ${v.action}, spam_symbols = ${sql.json(v.symbols as never)},
      auth = ${sql.json({ ...AUTH, verdictReason: v.reason } as never)}
    where id = ${id}`;
}

/** A message that arrives and is quarantined at once (one statement: no delivery can see it in between). */
async function arriveQuarantined(
  sql: Sql,
  customerId: string,
  recipient: string,
  v: Verdict,
): Promise<string> {
  const queueId = randomUUID().replace(/-/g, '').toUpperCase();
  const [row] = await sql<{ message_id: string }[]>`
    with m as (
      insert into held_message (queue_id, envelope_from, size_bytes, sha256, object_key, client_ip, helo, subject,
                                scored_at, spam_verdict, spam_score, spam_action, spam_symbols, auth)
      values (${queueId}, 'late@spam.example', 10, ${Buffer.alloc(32)}, ${`held/test/${queueId}.eml`},
              '192.0.2.9', 'spam.example', 'You won', now(), 'quarantined', ${v.score}, ${v.action},
              ${sql.json(v.symbols as never)}, ${sql.json({ ...AUTH, verdictReason: v.reason } as never)})
      returning id)
    insert into held_recipient (message_id, recipient, customer_id)
    select id, ${recipient}, ${customerId} from m returning message_id::text`;
  return row!.message_id;
}

test('quarantine: spam views, list and review, release and mark as spam, and the resolve gate', async (t) => {
  const primaryPort = await freePort(); // nothing listens: the primary is down
  const gmail = await startCatcher();
  // Probes every 10 minutes: within the test nothing but a ring makes the outage recount or deliver, so what the
  // test sees follows from the rings the API sends.
  const runbook = runbookWithPrimaryAt(primaryPort, {
    detection: { probeInterval: '10m', confirmAfter: '10m' },
  });
  const customer = runbook.id;
  const to = (runbook.recipients as string[])[0]!;
  const stack = await startOpsStack([runbook], { client: temporal.client, relayPort: gmail.port });
  const { call, names, sql } = stack.api;
  const mxf = (args: string[]) =>
    run(join(ROOT, 'bin/mxf'), args, {
      ...process.env,
      MXF_API_URL: stack.api.url,
      MXF_TOKEN: stack.api.tokens.operator,
    });
  const spamColumns = async (id: string) => {
    const [row] = await sql<{ spam_review: string | null; reviewed_by: string | null }[]>`
      select spam_review, reviewed_by from held_message where id = ${id}`;
    return row!;
  };

  // Held before a worker runs: no delivery and no scorer touches them while their verdicts are set.
  const clean = await holdBacklog(sql, customer, [to], 1);
  const byScore = await holdBacklog(sql, customer, [to], 1);
  await quarantine(sql, rowId(byScore), BY_SCORE);
  const byDmarc = await holdBacklog(sql, customer, [to], 1);
  await quarantine(sql, rowId(byDmarc), BY_DMARC);
  const delivered = await holdBacklog(sql, customer, [to], 1);
  await quarantine(sql, rowId(delivered), BY_SCORE);
  await sql`insert into delivery_ledger (message_id, recipient, target, outcome)
            values (${rowId(delivered)}, ${to}, ${`forward:${GMAIL}`}, 'delivered')`;
  const unscored = await holdBacklog(sql, customer, [to], 1, { unscored: true });
  const elsewhere = await holdBacklog(sql, `other-${randomUUID().slice(0, 8)}`, ['x@other.example'], 1);
  await quarantine(sql, rowId(elsewhere), BY_SCORE);

  try {
    await t.test(
      'a message shows its spam state, score, symbols by weight, and its authentication',
      async () => {
        const q = await call('GET', `/api/messages/${rowId(byScore)}`);
        assert.equal(q.status, 200, q.text);
        assert.equal(q.json.spam.state, 'quarantined');
        assert.equal(q.json.spam.score, 9.5);
        assert.equal(q.json.spam.action, 'add header');
        assert.equal(q.json.spam.reason, 'score 9.50 >= 6');
        assert.match(q.json.spam.scoredAt, /^\d{4}-\d\d-\d\dT/);
        assert.deepEqual(
          q.json.spam.symbols.map((s: { name: string }) => s.name),
          SORTED,
        );
        assert.deepEqual(q.json.spam.symbols[2], {
          name: 'DMARC_POLICY_REJECT',
          score: 2,
          options: ['bank.example : No valid SPF, DKIM not aligned', 'reject'],
        });
        assert.deepEqual(q.json.spam.symbols.at(-1), { name: 'MIME_GOOD', score: -0.1, options: [] });
        assert.equal(q.json.spam.review, null);
        assert.deepEqual(q.json.auth, AUTH, 'the stored authentication, without the verdict reason');
        assert.equal(q.json.content.subject, 'backlog 0', 'the content is still there');

        const u = await call('GET', `/api/messages/${rowId(unscored)}`);
        assert.equal(u.json.spam.state, 'unscored');
        assert.equal(u.json.spam.score, null);
        assert.deepEqual(u.json.spam.symbols, []);
        assert.equal(u.json.auth, null);
        const c = await call('GET', `/api/messages/${rowId(clean)}`);
        assert.equal(c.json.spam.state, 'clean');
        assert.equal(c.json.spam.score, 0);

        const shown = await mxf(['messages', 'show', rowId(byScore)]);
        assert.equal(shown.code, 0, shown.stderr);
        assert.match(shown.stdout, /^State +quarantined$/m);
        assert.match(shown.stdout, /^Score +9\.50 \(rspamd: add header\), scored \d{4}-/m);
        assert.match(shown.stdout, /^Reason +score 9\.50 >= 6$/m);
        assert.match(shown.stdout, /^BAYES_SPAM +5\.10 +99\.90%$/m);
        assert.match(shown.stdout, /^SPF +pass \(origin\.example\)$/m);
        assert.match(shown.stdout, /^DKIM +pass \(origin\.example, esp\.example\)$/m);
        assert.match(shown.stdout, /^DMARC +fail \(bank\.example, policy reject\)$/m);
        assert.match(shown.stdout, /^ARC +none$/m);
        const unscoredShown = await mxf(['messages', 'show', rowId(unscored)]);
        assert.match(unscoredShown.stdout, /^State +not scored yet$/m);
        assert.match(unscoredShown.stdout, /^not checked yet/m);
      },
    );

    await t.test('release refuses what is not quarantined or no longer held; nothing changes', async () => {
      const cleanRelease = await call('POST', `/api/messages/${rowId(clean)}/release`, { body: {} });
      assert.equal(cleanRelease.status, 409);
      assert.equal(cleanRelease.json.error.code, 'NOT_QUARANTINED');
      assert.match(
        cleanRelease.json.error.message,
        /is not quarantined: the filter passed it \(score 0\.00\)/,
      );
      const unscoredRelease = await call('POST', `/api/messages/${rowId(unscored)}/release`, { body: {} });
      assert.equal(unscoredRelease.json.error.code, 'NOT_QUARANTINED');
      assert.match(unscoredRelease.json.error.message, /no spam score yet/);
      const gone = await call('POST', `/api/messages/${rowId(delivered)}/release`, { body: {} });
      assert.equal(gone.status, 409);
      assert.equal(gone.json.error.code, 'MESSAGE_NOT_HELD');
      for (const id of [rowId(clean), rowId(unscored), rowId(delivered)])
        assert.equal((await spamColumns(id)).spam_review, null, `message ${id} unchanged`);
      const missing = await call('POST', '/api/messages/999999999/release', { body: {} });
      assert.equal(missing.json.error.code, 'MESSAGE_NOT_FOUND');
      const viewer = await call('POST', `/api/messages/${rowId(byScore)}/release`, {
        as: 'viewer',
        body: {},
      });
      assert.equal(viewer.status, 403);
      assert.equal((await spamColumns(rowId(byScore))).spam_review, null);
    });

    await t.test('mark as spam: recorded with its actor, idempotent, refused once delivered', async () => {
      const r = await call('POST', `/api/messages/${rowId(unscored)}/spam`, { body: { note: 'lottery' } });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.id, rowId(unscored));
      assert.equal(r.json.spam.state, 'spam');
      assert.equal(r.json.spam.review.by, names.operator);
      assert.deepEqual(await spamColumns(rowId(unscored)), {
        spam_review: 'spam',
        reviewed_by: names.operator,
      });
      const again = await call('POST', `/api/messages/${rowId(unscored)}/spam`, { body: {} });
      assert.equal(again.status, 200);
      assert.equal(again.json.spam.review.at, r.json.spam.review.at, 'a second mark changes nothing');
      const gone = await call('POST', `/api/messages/${rowId(delivered)}/spam`, { body: {} });
      assert.equal(gone.status, 409);
      assert.equal(gone.json.error.code, 'MESSAGE_NOT_HELD');
      assert.equal((await spamColumns(rowId(delivered))).spam_review, null);
    });

    await stack.run(async () => {
      const declared = await call('POST', `/api/customers/${customer}/outages`, { body: {} });
      assert.equal(declared.status, 201, declared.text);
      const outageId: string = declared.json.id;
      const outage = () => call('GET', `/api/outages/${outageId}`, { as: 'viewer' });

      await t.test(
        'forward --deliver-unscored: the instruction carries it; quarantined mail stays',
        async () => {
          const r = await mxf([
            'instruct',
            outageId,
            'forward',
            '--to',
            GMAIL,
            '--deliver-unscored',
            '--json',
          ]);
          assert.equal(r.code, 0, r.stderr);
          const view = JSON.parse(r.stdout);
          assert.equal(view.phase, 'forwarding');
          assert.equal(view.instruction.deliverUnscored, true);
          const misplaced = await mxf(['instruct', outageId, 'hold', '--deliver-unscored']);
          assert.equal(misplaced.code, 2, 'only forward and redirect take it');
          await eventually(
            'the clean message is forwarded, and nothing is left to send',
            async () => ({ caught: messageIdsOf(gmail.caught), held: (await outage()).json.heldMessages }),
            (s) => s.caught.length === 1 && s.held === 0,
            20_000,
          );
          assert.deepEqual(messageIdsOf(gmail.caught), clean.messageIds);
        },
      );

      await t.test(
        'quarantine list: exactly the quarantined mail still held, newest first; recorded',
        async () => {
          const path = `/api/outages/${outageId}/quarantine`;
          assert.equal((await call('GET', path, { as: 'viewer' })).status, 403);
          const r = await call('GET', path);
          assert.equal(r.status, 200, r.text);
          assert.equal(r.json.customerId, customer);
          assert.deepEqual(
            r.json.messages.map((m: { id: string; state: string }) => `${m.id} ${m.state}`),
            [`${rowId(unscored)} spam`, `${rowId(byDmarc)} quarantined`, `${rowId(byScore)} quarantined`],
          );
          const top = r.json.messages[2];
          assert.equal(top.score, 9.5);
          assert.equal(top.reason, 'score 9.50 >= 6');
          assert.deepEqual(top.recipients, [to]);
          assert.equal(top.envelopeFrom, 'sender@example.net');
          assert.deepEqual(
            top.topSymbols.map((s: { name: string }) => s.name),
            SORTED.slice(0, 5),
          );
          assert.equal(r.json.messages[1].reason, BY_DMARC.reason);
          assert.equal(r.json.nextCursor, null);

          const [review] = await sql<{ actor: string; age: number }[]>`
          select actor, extract(epoch from now() - reviewed_at)::float8 as age
          from quarantine_review where customer_id = ${customer}`;
          assert.equal(review?.actor, names.operator);
          assert.ok(review!.age >= 0 && review!.age < 60, `reviewed ${review!.age} s ago`);
          const [audited] = await sql<{ actor: string; outcome: string; customer_id: string }[]>`
          select actor, outcome, customer_id from audit_event
          where action = 'quarantine.review' and target = ${outageId} order by id desc limit 1`;
          assert.deepEqual(audited, { actor: names.operator, outcome: 'ok', customer_id: customer });

          const page = await call('GET', `${path}?limit=2`);
          assert.equal(page.json.messages.length, 2);
          assert.equal(page.json.nextCursor, rowId(byDmarc));
          const next = await call('GET', `${path}?limit=2&cursor=${page.json.nextCursor}`);
          assert.deepEqual(
            next.json.messages.map((m: { id: string }) => m.id),
            [rowId(byScore)],
          );
          const nobody = await call('GET', '/api/outages/nobody-here/quarantine');
          assert.equal(nobody.status, 404);
          assert.equal(nobody.json.error.code, 'OUTAGE_NOT_FOUND');

          const cli = await mxf(['quarantine', 'list', outageId]);
          assert.equal(cli.code, 0, cli.stderr);
          const ids = cli.stdout
            .split('\n')
            .slice(1)
            .map((l) => l.split(/\s+/)[0])
            .filter((id) => /^\d+$/.test(id ?? ''));
          assert.deepEqual(ids, [rowId(unscored), rowId(byDmarc), rowId(byScore)]);
          assert.match(
            cli.stdout,
            new RegExp(`^${rowId(byScore)} .* 9\\.50 +score 9\\.50 >= 6; BAYES_SPAM 5\\.10`, 'm'),
          );
          assert.match(cli.stdout, new RegExp(`^${rowId(unscored)} .*marked as spam`, 'm'));
          assert.match(cli.stdout, /DMARC failed for bank\.example, which says p=reject/);
        },
      );

      await t.test(
        'release: the message follows the instruction in force; a retry changes nothing',
        async () => {
          const r = await call('POST', `/api/messages/${rowId(byScore)}/release`, {
            body: { note: 'invoice' },
          });
          assert.equal(r.status, 200, r.text);
          assert.equal(r.json.spam.state, 'released');
          assert.equal(r.json.spam.score, 9.5, 'the score is kept');
          assert.equal(r.json.spam.review.by, names.operator);
          assert.deepEqual(await spamColumns(rowId(byScore)), {
            spam_review: 'released',
            reviewed_by: names.operator,
          });
          // Nothing else rings this outage now: the release's own ring sends it on.
          await eventually(
            'the released message is forwarded',
            async () => messageIdsOf(gmail.caught),
            (ids) => ids.includes(byScore.messageIds[0]!),
            20_000,
          );
          assert.equal(gmail.caught.length, 2, 'only the released one went with it');
          const again = await call('POST', `/api/messages/${rowId(byScore)}/release`, { body: {} });
          assert.equal(again.status, 200, 'released already, and delivered since: answered as before');
          assert.equal(again.json.spam.review.at, r.json.spam.review.at);
          const [audited] = await sql<
            { outcome: string; detail: { outage?: string; body?: { note?: string } } }[]
          >`
          select outcome, detail from audit_event
          where action = 'message.release' and target = ${rowId(byScore)} and status_code = 200 order by id limit 1`;
          assert.equal(audited?.outcome, 'ok');
          assert.equal(audited?.detail.outage, 'signalled');
          assert.equal(audited?.detail.body?.note, 'invoice');
        },
      );

      await t.test(
        'resolve waits until quarantined mail that arrived since the last listing is seen',
        async () => {
          const late = await arriveQuarantined(sql, customer, to, BY_SCORE);
          // The doorbell the ingest rings after a commit.
          await temporal.client.workflow
            .getHandle(outageWorkflowId(customer))
            .signal(mailHeldSignal, { acceptedSinceLastRing: 1 });
          const status = await eventually(
            'the outage counts the late arrival as not reviewed',
            outage,
            (r) => r.json?.spam?.unreviewed === 1,
          );
          assert.equal(
            status.json.spam.quarantined,
            3,
            'by the DMARC verdict, the late one, and marked as spam',
          );
          assert.equal(status.json.heldMessages, 0, 'nothing else holds the resolve back');
          const shown = await mxf(['outages', 'show', outageId]);
          assert.match(shown.stdout, /^Spam +3 quarantined \(1 not reviewed: `mxf quarantine list /m);

          const refused = await call('POST', `/api/outages/${outageId}/instructions`, {
            body: { action: 'resolve' },
          });
          assert.equal(refused.status, 409, refused.text);
          assert.equal(refused.json.error.code, 'QUARANTINE_NOT_REVIEWED');
          assert.match(
            refused.json.error.message,
            /^1 quarantined message\(s\) arrived since the quarantine was last listed: `mxf quarantine list /,
          );
          assert.equal((await outage()).json.phase, 'forwarding', 'the outage runs on');

          const listed = await call('GET', `/api/outages/${outageId}/quarantine`);
          assert.equal(listed.json.messages[0].id, late, 'the late arrival, newest first');
          await eventually(
            'the listing tells the outage, which recounts',
            outage,
            (r) => r.json?.spam?.unreviewed === 0,
          );
          const resolved = await call('POST', `/api/outages/${outageId}/instructions`, {
            body: { action: 'resolve' },
          });
          assert.equal(resolved.status, 200, resolved.text);
          assert.equal(resolved.json.phase, 'closed');
        },
      );

      await t.test(
        'after resolve: quarantined mail is kept, and a release starts an outage to send it',
        async () => {
          const closed = await temporal.client.workflow.getHandle(outageWorkflowId(customer)).describe();
          const kept = await call('GET', `/api/outages/${outageId}/quarantine`);
          assert.ok(
            kept.json.messages.some((m: { id: string }) => m.id === rowId(byDmarc)),
            'still listed after resolve',
          );
          const released = await mxf([
            'quarantine',
            'release',
            rowId(byDmarc),
            '--note',
            'from the bank after all',
          ]);
          assert.equal(released.code, 0, released.stderr);
          assert.match(
            released.stdout,
            new RegExp(`^message ${rowId(byDmarc)} released by ${names.operator}`),
          );
          const next = await eventually(
            'a new outage runs for the released message',
            () => temporal.client.workflow.getHandle(outageWorkflowId(customer)).describe(),
            (d) => d.status.name === 'RUNNING' && d.runId !== closed.runId,
          );
          await temporal.client.workflow
            .getHandle(outageWorkflowId(customer), next.runId)
            .terminate('test done');
          const spammed = await mxf(['quarantine', 'spam', rowId(byDmarc)]);
          assert.equal(spammed.code, 0, spammed.stderr);
          assert.deepEqual(await spamColumns(rowId(byDmarc)), {
            spam_review: 'spam',
            reviewed_by: names.operator,
          });
        },
      );
    });

    await t.test('audit: each review and refusal, with its actor and outcome', async () => {
      const r = await call('GET', `/api/audit?customer=${customer}&limit=200`, { as: 'admin' });
      const seen = r.json.events.map(
        (e: { actor: string; action: string; outcome: string }) => `${e.actor} ${e.action} ${e.outcome}`,
      );
      for (const expected of [
        `${names.operator} quarantine.review ok`,
        `${names.operator} message.release ok`,
        `${names.operator} message.release refused`,
        `${names.operator} message.mark-spam ok`,
        `${names.operator} message.mark-spam refused`,
        `${names.operator} outage.instruct refused`,
      ])
        assert.ok(seen.includes(expected), `audit has "${expected}"`);
    });
  } finally {
    await stack.close();
    await gmail.close();
  }
});

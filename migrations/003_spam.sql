-- Spam and sender authentication, scored once per message by the worker's scorer, off the SMTP path.
-- spam_verdict is taken when the message is scored, with the runbook then in force: null means not scored yet.
-- spam_review is the operator's word, which overrides the verdict: 'released' (deliver it like clean mail) or
-- 'spam' (never deliver it anywhere). Nothing here ever deletes a body or sends a DSN.
alter table held_message
  add column scored_at      timestamptz,
  add column spam_verdict   text check (spam_verdict in ('clean', 'quarantined')),
  add column spam_score     real,
  add column spam_action    text,                   -- rspamd's own action at its thresholds, for the record
  add column spam_symbols   jsonb,                  -- {"GTUBE": {"score": 0, "options": [...]}, ...}
  add column auth           jsonb,                  -- SPF, DKIM, DMARC and ARC results (src/domain/spam.ts)
  add column spam_review    text check (spam_review in ('released', 'spam')),
  add column reviewed_by    text,
  add column reviewed_at    timestamptz,
  -- A message the scorer could not score for a reason of its own (its body unreadable, the filter refusing it),
  -- tried a few times and then left unscored, so that it never blocks the messages behind it.
  add column score_attempts int not null default 0,
  add column score_error    text,
  -- A scorer's claim on an unscored message while it asks the filter: no transaction stays open across that.
  add column score_lease_until timestamptz;
-- The scorer claims the fewest-tried first, then in arrival order (src/scorer/scorer.ts).
create index held_message_unscored on held_message (score_attempts, id) where scored_at is null;

-- When an operator last looked at a customer's quarantine: quarantined mail scored before it no longer stands
-- in the way of resolving the outage.
create table quarantine_review (
  customer_id text        primary key,
  reviewed_at timestamptz not null,
  actor       text        not null
);

-- The scorer's view of the filter, for the outage status ("12 wait for a score: rspamd refused since 10:02").
create table filter_health (
  id            int primary key default 1 check (id = 1),
  checked_at    timestamptz not null,
  failing_since timestamptz,
  last_error    text
);

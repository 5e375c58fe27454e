-- Operators' bearer tokens. Only a SHA-256 of each token is kept: tokens are 32 random bytes, so a fast hash is
-- as strong as a slow one here, and a stolen table lets nobody in.
create table api_token (
  id          bigint generated always as identity primary key,
  name        text        not null unique,       -- the operator (or script) it belongs to; the audit's actor
  role        text        not null check (role in ('viewer', 'operator', 'admin')),
  token_hash  bytea       not null unique,
  created_at  timestamptz not null default now(),
  last_used_at timestamptz,
  revoked_at  timestamptz
);

-- The audit row is written before an action runs (outcome 'pending') and completed after, so no action on
-- customer mail happens without a row, even if the API dies halfway.
alter table audit_event
  add column outcome     text not null default 'pending',  -- pending, ok, refused, invalid, denied, not-found, aborted, error
  add column status_code int,
  add column request_id  text,
  add column target      text;                               -- outage id, message id, customer id
create index audit_event_at on audit_event (at desc, id desc);

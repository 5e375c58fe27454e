-- Held mail: one row per accepted message, one per envelope recipient. The body lives in object storage under
-- object_key (a range of it, from body_offset, size_bytes long); sha256 lets a restore prove it sends the bytes
-- it accepted. One message may carry recipients of
-- two customers (both our domains), so the customer belongs to the recipient, not to the message.
create table held_message (
  id            bigint generated always as identity primary key,
  queue_id      text        not null unique,
  envelope_from text        not null,            -- '' for the null reverse-path <>
  size_bytes    bigint      not null check (size_bytes >= 0),
  sha256        bytea       not null,
  object_key    text        not null,
  body_offset   bigint      not null default 0,   -- small bodies share segment objects: bytes [offset, offset+size)
  received_at   timestamptz not null default now(),
  client_ip     inet        not null,
  helo          text        not null,
  tls           text,                            -- protocol and cipher; null for a plain session
  message_id    text,                            -- the Message-ID header, for operators' searches
  subject       text
);
create index held_message_received on held_message (received_at);

create table held_recipient (
  message_id  bigint not null references held_message (id) on delete cascade,
  recipient   text   not null,
  customer_id text   not null,                   -- the runbook id that owns the recipient's domain
  primary key (message_id, recipient)
);
create index held_recipient_customer on held_recipient (customer_id, message_id);

-- The delivery ledger makes deliveries idempotent: a retried activity skips what is recorded as delivered.
-- target says where the copy went, e.g. 'restore:mail.example.com:25' or 'forward:it@gmail.example'.
create table delivery_ledger (
  message_id    bigint      not null references held_message (id),
  recipient     text        not null,
  target        text        not null,
  outcome       text        not null check (outcome in ('delivered', 'failed')),
  smtp_response text,
  recorded_at   timestamptz not null default now(),
  primary key (message_id, recipient, target)
);

-- Every operator action, with who did it.
create table audit_event (
  id          bigint generated always as identity primary key,
  at          timestamptz not null default now(),
  actor       text        not null,
  action      text        not null,
  customer_id text,
  detail      jsonb       not null default '{}'
);
create index audit_event_customer_at on audit_event (customer_id, at);

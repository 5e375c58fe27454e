-- Temporary mailboxes, continued (issue 14).
--
-- A copy into a temporary mailbox is not a delivery: the mailbox is a working copy, and the message stays held for
-- the customer's own servers until a restore delivers it there. Its ledger rows (target 'mailbox:<customer>')
-- say 'copying' just before the copy is handed to Dovecot and 'copied' once Dovecot took it; a 'copying' row left
-- by a worker that died in between is settled by looking in the mailbox (src/activities/mailbox-fill.ts), so each
-- message is in each mailbox exactly once.
alter table delivery_ledger drop constraint delivery_ledger_outcome_check;
alter table delivery_ledger
  add constraint delivery_ledger_outcome_check check (outcome in ('delivered', 'failed', 'copying', 'copied'));

alter table mailbox
  add column closed_at        timestamptz,          -- the outage's resolve: sign-in refused from then on
  add column retention        interval not null default '30 days',
  add column deleted_at       timestamptz,          -- its mail removed from Dovecot (the row stays, for the record)
  add column failed_sign_ins  int not null default 0, -- consecutive failed web sign-ins; reset by a good one
  add column locked_until     timestamptz,          -- web sign-in refused until then, after too many failures
  add column password_set_at  timestamptz;          -- null: provisioned, no sign-in handed out yet

-- One-time web sign-in links: only a hash of the token is kept; a link works once, until it expires.
create table mailbox_sign_in_link (
  token_hash text        primary key,               -- hex SHA-256 of the token in the link
  address    text        not null references mailbox (address) on delete cascade,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  used_at    timestamptz
);

-- Mail written in a temporary mailbox (submission, web inbox). The message itself is a held_message (body in
-- MinIO) held for the sender's own address, so a restore delivers the sender a copy on their own server, and for
-- any colleague in the customer's domains, whose temporary mailbox it fills like mail from outside. Its delivery to
-- everyone else is here, one row per recipient, carried out by the submission workflow (src/workflows/submission.ts).
create table submission (
  message_id  bigint      primary key references held_message (id),
  mailbox     text        not null references mailbox (address),
  customer_id text        not null,
  created_at  timestamptz not null default now()
);
create index submission_mailbox on submission (mailbox, created_at);

create table submission_recipient (
  message_id    bigint      not null references submission (message_id),
  recipient     text        not null,
  outcome       text        check (outcome in ('delivered', 'failed')), -- null: not yet
  smtp_response text,
  recorded_at   timestamptz,
  primary key (message_id, recipient)
);

-- Temporary mailboxes (issue 14): one per recipient of a customer in an outage, on our private Dovecot. Dovecot
-- reads sign-ins from here (src/stack/dovecot.ts); the mail itself is a working copy that held_message and MinIO can
-- always rebuild. Only the password's hash is kept.
create table mailbox (
  address         text        primary key,         -- lower case, as Dovecot looks it up
  customer_id     text        not null,
  outage_id       text,
  password_hash   text        not null,            -- Dovecot's {SSHA512}
  sign_in_allowed boolean     not null default true, -- false from the outage's resolve on
  created_at      timestamptz not null default now(),
  last_sign_in_at timestamptz
);
create index mailbox_customer on mailbox (customer_id);

-- How fast deliveries may go to each destination (a receiving mailbox, a receiving domain), shared by every worker
-- and every customer, so two outages forwarding to one Gmail domain share its pace. next_at is the earliest time
-- of the next send (a reservation moves it on by one interval); scale < 1 after a receiver said "too fast"
-- (421 4.7.28, 450 4.2.1), with resume_at the time before which nothing goes there. See src/store/pace.ts.
create table delivery_pace (
  destination text primary key,
  next_at     timestamptz      not null default now(),
  scale       double precision not null default 1 check (scale > 0 and scale <= 1),
  slowed_at   timestamptz,
  resume_at   timestamptz
);

import { randomBytes } from 'node:crypto';
import type { Sql } from '../src/store/db';
import type { ObjectStore } from '../src/store/objects';
import { domainOf } from './stack';

// Held mail seeded straight into storage, as ingest would have left it, without SMTP: bodies in segment objects
// of 1,000 messages (the layout group commit produces), one held_message and one held_recipient row each. At most
// SEGMENTS distinct segments are written; past that, rows share them (the bytes are not what is measured).
const PER_SEGMENT = 1_000;
const SEGMENTS = 50;

function body(customer: string, n: number, size: number): Buffer {
  const head = `Received: from seed.bench.test\r\nMessage-ID: <seed-${n}@${customer}.bench>\r\nSubject: seeded ${n}\r\n\r\n`;
  return Buffer.concat([
    Buffer.from(head),
    Buffer.alloc(Math.max(size - head.length - 2, 0), 'x'),
    Buffer.from('\r\n'),
  ]).subarray(0, size);
}

export async function seedHeld(
  sql: Sql,
  objects: ObjectStore,
  bucket: string,
  customer: string,
  count: number,
  size = 4096,
): Promise<void> {
  if (count === 0) return;
  const run = randomBytes(4).toString('hex');
  const segments = Math.min(Math.ceil(count / PER_SEGMENT), SEGMENTS);
  for (let s = 0; s < segments; s++) {
    const bodies = Array.from({ length: PER_SEGMENT }, (_, i) => body(customer, s * PER_SEGMENT + i, size));
    await objects.putObject(bucket, `seed/${customer}/${run}/${s}`, Buffer.concat(bodies));
  }
  // One statement per 100,000 rows keeps each transaction's WAL and lock footprint modest.
  for (let from = 0; from < count; from += 100_000) {
    const to = Math.min(from + 100_000, count) - 1;
    await sql`
      with message as (
        insert into held_message (queue_id, envelope_from, size_bytes, sha256, object_key, body_offset, client_ip, helo)
        select 'SEED' || ${run} || g, 'sender@source.example', ${size}, '\\x00'::bytea,
               'seed/' || ${customer} || '/' || ${run} || '/' || ((g / ${PER_SEGMENT}) % ${segments}),
               (g % ${PER_SEGMENT}) * ${size}, '192.0.2.9', 'seed.bench.test'
        from generate_series(${from}::int, ${to}::int) g
        returning id)
      insert into held_recipient (message_id, recipient, customer_id)
      select id, 'user' || (id % 1000) || '@' || ${domainOf(customer)}, ${customer} from message`;
  }
  await sql`analyze held_message; analyze held_recipient`.simple();
}

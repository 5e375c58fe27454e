import { createHash } from 'node:crypto';
import type { Config } from '../src/config';
import type { Sql } from '../src/store/db';
import { createObjectStore, readBody } from '../src/store/objects';
import { stripArcSet } from '../test/helpers/arc-set';
import type { Copy } from './faults-mailbox';

// What the fault suite reads back after the run, reduced to what the verdict compares with the senders' side:
// for each held row and each forwarded copy, whose message it is and the SHA-256 of the sender's part of its
// bytes. A stored or forwarded message is our Received header followed by the sender's bytes, so the header is
// stripped before hashing; the sender's hash was taken by the load generator before anything was sent.

const CRLF = Buffer.from('\r\n');

/** How many trace headers of ours lead the message, and the sender's bytes after them. */
export function senderPart(raw: Buffer, hostname: string): { ours: number; rest: Buffer } {
  const ourTrace = `by ${hostname} (MX Failover)`;
  let at = 0;
  let ours = 0;
  while (raw.subarray(at, at + 10).toString('latin1') === 'Received: ') {
    // A header field ends at a CRLF not followed by folding whitespace.
    let end = raw.indexOf(CRLF, at);
    while (end !== -1 && (raw[end + 2] === 0x20 || raw[end + 2] === 0x09)) end = raw.indexOf(CRLF, end + 2);
    if (end === -1 || !raw.subarray(at, end).toString('latin1').includes(ourTrace)) break;
    at = end + 2;
    ours++;
  }
  return { ours, rest: raw.subarray(at) };
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const messageIdOf = (raw: Buffer) =>
  /^Message-ID:\s*<([^>]+)>/im.exec(raw.subarray(0, 64 * 1024).toString('latin1'))?.[1];

export interface StoredEvidence {
  messageId: string;
  queueId: string;
  /** The delivery ledger records it delivered (to the forward target, the only one this run uses). */
  ledgerDelivered: boolean;
  /** The sender's part of the body read back from MinIO; undefined when it could not be read. */
  sha256?: string;
  /** Why the row is not a readable, consistent copy of a message, if it is not. */
  defect?: string;
}

interface HeldRow {
  message_id: string | null;
  queue_id: string;
  object_key: string;
  body_offset: string;
  size_bytes: string;
  sha256: Buffer;
  delivered: boolean;
}

/** One row checked: its body read back, matched to the row's own hash, and our header stripped. */
async function storedEvidence(
  row: HeldRow,
  read: (row: HeldRow) => Promise<Buffer>,
  hostname: string,
): Promise<StoredEvidence> {
  const base = {
    messageId: row.message_id?.replace(/^<|>$/g, '') ?? '(no Message-ID)',
    queueId: row.queue_id,
    ledgerDelivered: row.delivered,
  };
  let body: Buffer;
  try {
    body = await read(row);
  } catch (err) {
    return { ...base, defect: `its body cannot be read from MinIO (${(err as Error).message})` };
  }
  if (body.length !== Number(row.size_bytes))
    return { ...base, defect: `MinIO holds ${body.length} of its ${row.size_bytes} bytes` };
  if (sha256(body) !== row.sha256.toString('hex'))
    return { ...base, defect: "its bytes in MinIO do not match the row's sha256" };
  const { ours, rest } = senderPart(body, hostname);
  if (ours !== 1) return { ...base, defect: `it starts with ${ours} Received headers of ours, not one` };
  return { ...base, sha256: sha256(rest) };
}

/** Every held row, its body read back from MinIO a few at a time. */
export async function readStored(sql: Sql, config: Config, hostname: string): Promise<StoredEvidence[]> {
  const rows = await sql<HeldRow[]>`
    select m.message_id, m.queue_id, m.object_key, m.body_offset, m.size_bytes, m.sha256,
           exists (select 1 from delivery_ledger d where d.message_id = m.id and d.outcome = 'delivered') as delivered
    from held_message m order by m.id`;
  const objects = createObjectStore(config);
  const read = (r: HeldRow) =>
    readBody(objects, config.s3.bucket, {
      objectKey: r.object_key,
      offset: Number(r.body_offset),
      length: Number(r.size_bytes),
    });
  const out: StoredEvidence[] = [];
  for (let i = 0; i < rows.length; i += 16)
    out.push(...(await Promise.all(rows.slice(i, i + 16).map((r) => storedEvidence(r, read, hostname)))));
  return out;
}

export interface CopyEvidence extends Copy {
  messageId?: string;
  sha256: string;
  /** Our Received headers on it: one, or it is not the message we stored. */
  ours: number;
}

/** The copies that reached the forward mailbox (notifications to the on-call contact go elsewhere). */
export function readCopies(copies: Copy[], forwardTo: string, hostname: string): CopyEvidence[] {
  return copies
    .filter((c) => c.to.includes(forwardTo))
    .map((c) => {
      // Forwarded copies lead with our ARC set, then our Received header, then the sender's bytes.
      const { ours, rest } = senderPart(stripArcSet(c.raw), hostname);
      return { ...c, messageId: messageIdOf(rest), sha256: sha256(rest), ours };
    });
}

import { type BodyRef, type ObjectStore, readBody } from '../store/objects';

/** Where a batch's message lives: its segment object and its byte range there. */
export interface StoredBody {
  object_key: string;
  body_offset: string;
  size_bytes: string;
}

/**
 * The batch's bodies, read with one ranged GET per segment object instead of one per message: ingest writes small
 * bodies into shared segments, and MinIO spends about a millisecond of CPU per request. Spans past
 * MAX_COALESCED_BYTES (large messages) are read one message at a time. A segment's bytes are dropped once its
 * last message in the batch is read, so memory holds about one segment, not a batch's worth of bodies.
 */
const MAX_COALESCED_BYTES = 8 * 1024 * 1024;

interface Span {
  start: number;
  end: number;
  /** Messages of the batch in this object not read yet. */
  unread: number;
  bytes?: Promise<Buffer>;
}

const refOf = (m: StoredBody): BodyRef => ({
  objectKey: m.object_key,
  offset: Number(m.body_offset),
  length: Number(m.size_bytes),
});

export class BatchBodies {
  private readonly spans = new Map<string, Span>();

  constructor(
    private readonly objects: ObjectStore,
    private readonly bucket: string,
    batch: StoredBody[],
  ) {
    for (const m of batch) {
      const { objectKey, offset, length } = refOf(m);
      const span = this.spans.get(objectKey);
      if (!span) this.spans.set(objectKey, { start: offset, end: offset + length, unread: 1 });
      else {
        span.start = Math.min(span.start, offset);
        span.end = Math.max(span.end, offset + length);
        span.unread++;
      }
    }
  }

  /** Segments whose bytes are in memory, waiting for more of their messages to be read. */
  get segmentsInMemory(): number {
    return [...this.spans.values()].filter((s) => s.bytes !== undefined).length;
  }

  async read(m: StoredBody): Promise<Buffer> {
    const ref = refOf(m);
    const span = this.spans.get(ref.objectKey)!;
    if (--span.unread === 0) this.spans.delete(ref.objectKey);
    const whole = span.end - span.start;
    if (span.bytes === undefined && (span.unread === 0 || whole > MAX_COALESCED_BYTES))
      return readBody(this.objects, this.bucket, ref);
    span.bytes ??= readBody(this.objects, this.bucket, {
      objectKey: ref.objectKey,
      offset: span.start,
      length: whole,
    });
    const bytes = await span.bytes;
    return bytes.subarray(ref.offset - span.start, ref.offset - span.start + ref.length);
  }
}

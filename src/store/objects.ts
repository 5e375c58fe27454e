import { Readable } from 'node:stream';
import { Client as MinioClient } from 'minio';
import type { Config } from '../config';
import { withTimeout } from '../timeout';

// S3-generic on purpose: MinIO here, any S3 service beyond one machine (MinIO upstream is in maintenance mode).
export type ObjectStore = MinioClient;

/** Messages up to this size go up in one PUT; larger ones stream as a multipart upload of this part size. */
const SINGLE_PUT_MAX = 1024 * 1024;
const PART_SIZE = 5 * 1024 * 1024; // the smallest part S3 allows

export function createObjectStore(config: Pick<Config, 's3'>): ObjectStore {
  const { endPoint, port, useSSL, accessKey, secretKey, region } = config.s3;
  return new MinioClient({
    endPoint,
    port,
    useSSL,
    accessKey,
    secretKey,
    region,
    pathStyle: true,
    partSize: PART_SIZE,
  });
}

export async function ensureBucket(store: ObjectStore, config: Pick<Config, 's3'>): Promise<boolean> {
  if (await store.bucketExists(config.s3.bucket)) return false;
  await store.makeBucket(config.s3.bucket, config.s3.region);
  return true;
}

/** Where a message's bytes are: a whole object, or a range of a segment object holding several messages. */
export interface BodyRef {
  objectKey: string;
  offset: number;
  length: number;
}

/**
 * Writes message bodies to object storage, batching small ones. A PUT of a 4 KB object costs MinIO about a
 * millisecond of CPU, more than everything else the ingest does for that message, so bodies up to 1 MiB that
 * arrive while a PUT is in flight go up together in one segment object (group commit, as databases do for their
 * log): at low load every body is PUT alone at once, under load they share PUTs. Each waiter learns its range
 * only after its segment is stored. Bodies past 1 MiB stream as their own multipart upload in 5 MiB parts, so no
 * body is ever held whole in memory beyond 1 MiB. An aborted multipart upload is cleaned up by MinIO's
 * stale-upload expiry; a segment no row points at is removed by the ingest's orphan sweep.
 */
export class BodyWriter {
  private readonly waiting: {
    key: string;
    body: Buffer;
    resolve: (r: BodyRef) => void;
    reject: (e: unknown) => void;
  }[] = [];
  private inFlight = 0;

  constructor(
    private readonly store: ObjectStore,
    private readonly bucket: string,
    private readonly maxInFlight = 2,
    private readonly maxSegmentBytes = 4 * 1024 * 1024,
    /**
     * Beside a PUT in flight, another starts only once this many bytes wait: small bodies then share a segment (a
     * PUT's fixed cost is most of what a small body costs MinIO), large ones still go up side by side.
     */
    private readonly minBytesBeside = 0,
  ) {}

  /** Stores `body` (a stream of unknown length, at most `maxBytes`) under `key`, or in a segment named after it. */
  async put(key: string, body: Readable, maxBytes: number): Promise<BodyRef> {
    const iterator: AsyncIterator<Buffer> = body[Symbol.asyncIterator]();
    const head: Buffer[] = [];
    let headBytes = 0;
    while (headBytes <= SINGLE_PUT_MAX) {
      const next = await iterator.next();
      if (next.done) return this.append(key, Buffer.concat(head, headBytes));
      head.push(next.value);
      headBytes += next.value.length;
    }
    let length = 0;
    const rest = Readable.from(
      (async function* () {
        for (const chunk of head) {
          length += chunk.length;
          yield chunk;
        }
        for (let next = await iterator.next(); !next.done; next = await iterator.next()) {
          length += next.value.length;
          yield next.value;
        }
      })(),
    );
    // The minio client listens for errors only on its own chunking stream, so a failing body (a client gone, a
    // refused byte) would be an uncaught error on `rest`: catch it here, and drop the incomplete upload.
    const failed = new Promise<never>((_, reject) => rest.once('error', reject));
    try {
      // The size argument only sizes the parts (the client would otherwise plan for a 5 TiB object).
      const upload = this.store.putObject(
        this.bucket,
        key,
        rest,
        Math.max(maxBytes, PART_SIZE * 2),
        CONTENT_TYPE,
      );
      await withTimeout(Promise.race([upload, failed]), LARGE_PUT_TIMEOUT_MS);
    } catch (err) {
      rest.destroy();
      void this.store.removeIncompleteUpload(this.bucket, key).catch(() => {});
      throw err;
    }
    return { objectKey: key, offset: 0, length };
  }

  private append(key: string, body: Buffer): Promise<BodyRef> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ key, body, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.maxInFlight && this.waiting.length > 0) {
      if (this.inFlight > 0 && !this.waitingAtLeast(this.minBytesBeside)) return;
      let bytes = 0;
      let n = 0;
      while (
        n < this.waiting.length &&
        (n === 0 || bytes + this.waiting[n]!.body.length <= this.maxSegmentBytes)
      ) {
        bytes += this.waiting[n]!.body.length;
        n++;
      }
      const batch = this.waiting.splice(0, n);
      this.inFlight++;
      void this.flush(batch).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  private waitingAtLeast(bytes: number): boolean {
    let sum = 0;
    for (const w of this.waiting) {
      sum += w.body.length;
      if (sum >= bytes) return true;
    }
    return sum >= bytes;
  }

  private async flush(batch: BodyWriter['waiting']): Promise<void> {
    const key = batch[0]!.key;
    const segment = Buffer.concat(batch.map((w) => w.body));
    try {
      // A stalled object store must not hold the in-flight slots for ever: time out, fail the batch (451), and
      // let the next batch try.
      await withTimeout(
        this.store.putObject(this.bucket, key, segment, segment.length, CONTENT_TYPE),
        PUT_TIMEOUT_MS,
      );
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    let offset = 0;
    for (const w of batch) {
      w.resolve({ objectKey: key, offset, length: w.body.length });
      offset += w.body.length;
    }
  }
}

const CONTENT_TYPE = { 'Content-Type': 'application/octet-stream' };
const PUT_TIMEOUT_MS = 30_000;
const LARGE_PUT_TIMEOUT_MS = 10 * 60_000;

/** The bytes of one held message. */
export async function readBody(store: ObjectStore, bucket: string, ref: BodyRef): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of await store.getPartialObject(bucket, ref.objectKey, ref.offset, ref.length))
    chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

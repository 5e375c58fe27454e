import { Readable } from 'node:stream';
import { Client as MinioClient } from 'minio';
import type { Config } from '../config';

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

/**
 * Stores a stream of unknown length without holding it whole in memory. The minio client, given no length,
 * would start a multipart upload even for 4 KB (four round trips) and size its parts for a 5 TiB object; so
 * small bodies are buffered and PUT once, and only bodies past 1 MiB stream in 5 MiB parts (`maxBytes` bounds
 * the part-size calculation). An aborted multipart upload is cleaned up by MinIO's stale-upload expiry.
 */
export async function putBody(
  store: ObjectStore,
  bucket: string,
  key: string,
  body: Readable,
  maxBytes: number,
) {
  const iterator: AsyncIterator<Buffer> = body[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let headBytes = 0;
  while (headBytes <= SINGLE_PUT_MAX) {
    const next = await iterator.next();
    if (next.done) {
      const whole = Buffer.concat(head, headBytes);
      return store.putObject(bucket, key, whole, whole.length, { 'Content-Type': 'message/rfc822' });
    }
    head.push(next.value);
    headBytes += next.value.length;
  }
  const rest = Readable.from(
    (async function* () {
      yield* head;
      for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value;
    })(),
  );
  return store.putObject(bucket, key, rest, Math.max(maxBytes, PART_SIZE * 2), {
    'Content-Type': 'message/rfc822',
  });
}

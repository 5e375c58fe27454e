import { Client as MinioClient } from 'minio';
import type { Config } from '../config';

// S3-generic on purpose: MinIO here, any S3 service beyond one machine (MinIO upstream is in maintenance mode).
export type ObjectStore = MinioClient;

export function createObjectStore(config: Pick<Config, 's3'>): ObjectStore {
  const { endPoint, port, useSSL, accessKey, secretKey, region } = config.s3;
  return new MinioClient({ endPoint, port, useSSL, accessKey, secretKey, region, pathStyle: true });
}

export async function ensureBucket(store: ObjectStore, config: Pick<Config, 's3'>): Promise<boolean> {
  if (await store.bucketExists(config.s3.bucket)) return false;
  await store.makeBucket(config.s3.bucket, config.s3.region);
  return true;
}

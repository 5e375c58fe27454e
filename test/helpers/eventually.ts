import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';

/** Reads until `ok` holds, for state that other processes change; fails with the last value read. */
export async function eventually<T>(
  what: string,
  read: () => Promise<T>,
  ok: (v: T) => boolean,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      last = await read();
      if (ok(last)) return last;
    } catch (err) {
      lastError = err;
    }
    await sleep(100);
  }
  assert.fail(
    `${what}: last value ${JSON.stringify(last)}${lastError ? `, last error ${(lastError as Error).message}` : ''}`,
  );
}

import { randomUUID } from 'node:crypto';

// The CLI's side of the ops API: bearer token, JSON, stable error codes. A request that changes something
// carries a requestId, so a retry after a timeout or a 503 is applied once.

export class CliApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export interface ApiTarget {
  url: string;
  token: string | undefined;
}

const RETRIES = 3;

export async function request<T = unknown>(
  target: ApiTarget,
  method: 'GET' | 'POST',
  path: string,
  body?: Record<string, unknown>,
  opts: { binary?: boolean } = {},
): Promise<T> {
  if (!target.token)
    throw new CliApiError(
      0,
      'NO_TOKEN',
      'set MXF_TOKEN (or pass --token); `mxf tokens create <name> <role>` makes one',
    );
  const payload = body && method === 'POST' ? { requestId: randomUUID(), ...body } : body;
  for (let attempt = 1; ; attempt++) {
    let res: Response;
    try {
      res = await fetch(new URL(path, target.url), {
        method,
        headers: {
          authorization: `Bearer ${target.token}`,
          ...(payload ? { 'content-type': 'application/json' } : {}),
        },
        body: payload ? JSON.stringify(payload) : undefined,
        signal: AbortSignal.timeout(30_000),
      });
    } catch (err) {
      if (attempt < RETRIES) continue;
      throw new CliApiError(
        0,
        'API_UNREACHABLE',
        `no answer from the ops API at ${target.url} (${(err as Error).cause ?? (err as Error).message}); is it running? Set MXF_API_URL or --api`,
      );
    }
    if (res.status === 503 && attempt < RETRIES) {
      await new Promise((r) => setTimeout(r, 1_000 * attempt));
      continue;
    }
    // A message's raw bytes are not UTF-8 text: decoding them would change 8-bit content.
    if (res.ok && opts.binary) return Buffer.from(await res.arrayBuffer()) as T;
    const text = await res.text();
    if (res.ok) {
      const type = res.headers.get('content-type') ?? '';
      return (type.includes('json') ? JSON.parse(text) : text) as T;
    }
    let error: { code?: string; message?: string } = {};
    try {
      error = JSON.parse(text).error ?? {};
    } catch {}
    throw new CliApiError(
      res.status,
      error.code ?? `HTTP_${res.status}`,
      error.message ?? text.slice(0, 200),
    );
  }
}

import { createServer } from 'node:http';
import { freePort } from './ports';

/** A POST the receiver got: its JSON body, and when it arrived (Date.now()). */
export interface Received {
  body: Record<string, unknown>;
  at: number;
}

/** A local HTTP server standing in for the phone/SMS provider's webhook. */
export async function startWebhookReceiver() {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      received.push({ body: JSON.parse(body), at: Date.now() });
      res.writeHead(202).end();
    });
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${port}/notify`,
    received,
    close: () => new Promise((r) => server.close(r)),
  };
}

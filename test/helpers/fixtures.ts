import { randomUUID } from 'node:crypto';
import type { HeldMessage } from '../../src/domain/message';

/** A held message as ingest would record it, for tests that start after the SMTP part. */
export function heldMessage(
  customerId: string,
  recipients: string[],
  overrides: Partial<HeldMessage> = {},
): HeldMessage {
  const queueId = randomUUID().replace(/-/g, '').toUpperCase();
  return {
    queueId,
    envelopeFrom: 'sender@example.net',
    sizeBytes: 100,
    sha256: '0'.repeat(64),
    objectKey: `held/test/${queueId}.eml`,
    bodyOffset: 0,
    receivedAt: new Date(),
    clientIp: '192.0.2.1',
    helo: 'mx.example.net',
    tls: null,
    messageId: null,
    subject: null,
    recipients: recipients.map((address) => ({ address, customerId })),
    ...overrides,
  };
}

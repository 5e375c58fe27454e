import { z } from 'zod';

// A held message as the store records it. Bodies never appear here: objectKey points into object storage.
export const heldRecipientSchema = z.object({
  address: z.string(),
  customerId: z.string(),
});
export type HeldRecipient = z.infer<typeof heldRecipientSchema>;

export const heldMessageSchema = z.object({
  queueId: z.string(),
  envelopeFrom: z.string(), // '' for the null reverse-path <>
  sizeBytes: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  objectKey: z.string(),
  bodyOffset: z.number().int().nonnegative(),
  receivedAt: z.date(),
  clientIp: z.string(),
  helo: z.string(),
  tls: z.string().nullable(),
  messageId: z.string().nullable(),
  subject: z.string().nullable(),
  recipients: z.array(heldRecipientSchema).min(1),
});
export type HeldMessage = z.infer<typeof heldMessageSchema>;

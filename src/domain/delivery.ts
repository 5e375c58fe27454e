import { z } from 'zod';
import type { Runbook } from './runbook';

// Where held mail goes when it is released. The destination is chosen at release time (DESIGN invariant 5): a
// message held under "hold" goes wherever the instruction in force says when it is finally delivered.
/** Everything to these mailboxes (say a Gmail account); envelope sender rewritten, bytes unchanged. */
export const forwardShape = { to: z.array(z.email()).min(1).max(10) };
/** Another SMTP server (a site in another geography), original envelope. */
export const redirectShape = {
  host: z.string().min(1),
  port: z.number().int().min(1).max(65535).default(25),
  requireTls: z.boolean().default(false),
};

export const deliveryTargetSchema = z.discriminatedUnion('kind', [
  /** The customer's own MX hosts, original envelope: the ordinary backup-MX job, and the restore. */
  z.object({ kind: z.literal('primary') }),
  z.object({ kind: z.literal('forward'), ...forwardShape }),
  z.object({ kind: z.literal('redirect'), ...redirectShape }),
]);
export type DeliveryTarget = z.infer<typeof deliveryTargetSchema>;

/** The ledger's name for a target: one row per (message, recipient, target key), so each copy goes once. */
export function targetKey(target: DeliveryTarget, runbook: Pick<Runbook, 'id'>): string {
  switch (target.kind) {
    case 'primary':
      return `primary:${runbook.id}`;
    case 'forward':
      return `forward:${[...target.to].sort().join(',')}`;
    case 'redirect':
      return `redirect:${target.host}:${target.port}`;
  }
}

export interface ProbeResult {
  host: string;
  port: number;
  ok: boolean;
  /** Where it failed: the TCP connect, or the SMTP dialogue (banner, EHLO); done when it answered. */
  stage: 'connect' | 'greeting' | 'done';
  latencyMs: number;
  error?: string;
}

export interface DeliveryBatchResult {
  delivered: number;
  /** Recipients refused permanently (5xx): recorded, never retried. */
  failed: number;
  /** Messages of this customer still waiting for this target after the batch, counted up to 1,000. */
  remaining: number;
}

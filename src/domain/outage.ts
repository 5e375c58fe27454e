import { z } from 'zod';
import { runbookSchema } from './runbook';

// One outage is one workflow run, identified by the customer: all of a customer's domains share one outage,
// because one phone call decides what happens to all of their mail.
export const outageWorkflowId = (customerId: string) => `outage:${customerId}`;

export const outagePhaseSchema = z.enum([
  'detecting', // mail arrived at the backup MX; probing the primary MX hosts to confirm an outage
  'notifying',
  'awaiting-instructions',
  'holding',
  'forwarding',
  'redirecting',
  'restoring',
  'closed',
]);
export type OutagePhase = z.infer<typeof outagePhaseSchema>;

/** The workflow's input, and what it carries across continue-as-new. Plain JSON only. */
export const outageInputSchema = z.object({
  customerId: z.string().min(1),
  // The runbook as it was when the outage started: a later edit does not change a running outage's plan.
  runbook: runbookSchema,
  carried: z
    .object({
      phase: outagePhaseSchema,
      heldMessages: z.number().int().nonnegative(),
    })
    .optional(),
});
export type OutageInput = z.input<typeof outageInputSchema>;

/** The doorbell that ingest rings after committing held mail. Counts only: the ledger lives in PostgreSQL. */
export const mailHeldSignalSchema = z.object({ acceptedSinceLastRing: z.number().int().nonnegative() });
export type MailHeld = z.infer<typeof mailHeldSignalSchema>;

export interface OutageStatus {
  customerId: string;
  phase: OutagePhase;
  heldMessages: number;
  doorbellRings: number;
}

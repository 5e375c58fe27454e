import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { CallRecord, Declaration, InstructionInput, MailHeld, OutageStatus } from '../domain/outage';

// Message definitions shared by the workflow, the ingest (signalWithStart) and the API (queries, updates).
export const mailHeldSignal = defineSignal<[MailHeld]>('mailHeld');
export const statusQuery = defineQuery<OutageStatus>('status');
/** Validated synchronously in the workflow: a bad instruction is refused with a reason, nothing is recorded. */
export const instructUpdate = defineUpdate<OutageStatus, [InstructionInput]>('instruct');
/** Closes an ops call task with its outcome; "reached" stops the escalation. */
export const recordCallUpdate = defineUpdate<OutageStatus, [CallRecord]>('recordCall');
/** Declares the outage now (an operator's word), whatever the probes say; started by update-with-start. */
export const declareUpdate = defineUpdate<OutageStatus, [Declaration]>('declare');

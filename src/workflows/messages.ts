import { defineQuery, defineSignal } from '@temporalio/workflow';
import type { MailHeld, OutageStatus } from '../domain/outage';

// Message definitions shared by the workflow, the ingest (signalWithStart) and the API (queries).
export const mailHeldSignal = defineSignal<[MailHeld]>('mailHeld');
export const statusQuery = defineQuery<OutageStatus>('status');

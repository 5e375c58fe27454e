import { z } from 'zod';
import { CUSTOMER_ID_PATTERN } from './runbook';

// An outage's id: its customer and the first 8 hex digits of its first run, e.g. harborview-law.1a2b3c4d. The
// workflow id (outage:<customer>) is reused by every outage of a customer, and a run id changes at each
// continue-as-new; this id does not. Built and read only here, so the API, the CLI and the workflow agree on it.

const RUN_PREFIX_LENGTH = 8;
const OUTAGE_ID = new RegExp(`^(${CUSTOMER_ID_PATTERN})\\.([0-9a-f]{${RUN_PREFIX_LENGTH}})$`);

export function formatOutageId(customerId: string, firstExecutionRunId: string): string {
  return `${customerId}.${firstExecutionRunId.replace(/-/g, '').slice(0, RUN_PREFIX_LENGTH)}`;
}

/** The customer and first-run prefix of an outage id; undefined for anything else (a bare customer id too). */
export function parseOutageId(text: string): { customerId: string; runPrefix: string } | undefined {
  const match = OUTAGE_ID.exec(text);
  return match ? { customerId: match[1]!, runPrefix: match[2]! } : undefined;
}

export const outageIdSchema = z
  .string()
  .regex(OUTAGE_ID, 'expected an outage id such as harborview-law.1a2b3c4d');

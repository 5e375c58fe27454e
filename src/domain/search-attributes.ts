import { defineSearchAttributeKey } from '@temporalio/common';

// Typed search attributes for the outage workflow: what an operator filters on in the Web UI, e.g.
//   WorkflowType="outageWorkflow" AND OutagePhase="awaiting-instructions"
/** Stable across continue-as-new, unlike the run id: how the API finds one outage among a customer's. */
export const outageIdKey = defineSearchAttributeKey('OutageId', 'KEYWORD');
export const customerIdKey = defineSearchAttributeKey('CustomerId', 'KEYWORD');
export const mxDomainsKey = defineSearchAttributeKey('MxDomains', 'KEYWORD_LIST');
export const outagePhaseKey = defineSearchAttributeKey('OutagePhase', 'KEYWORD');
export const instructionActionKey = defineSearchAttributeKey('InstructionAction', 'KEYWORD');
export const heldMessagesKey = defineSearchAttributeKey('HeldMessages', 'INT');

export const searchAttributeKeys = [
  outageIdKey,
  customerIdKey,
  mxDomainsKey,
  outagePhaseKey,
  instructionActionKey,
  heldMessagesKey,
];

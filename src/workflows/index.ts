export { monitorWorkflow } from './monitor';
export { outageWorkflow } from './outage';
export { mailboxRetentionWorkflow } from './retention';
export { submissionWorkflow } from './submission';

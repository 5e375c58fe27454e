export { monitorWorkflow } from './monitor';
export { outageWorkflow } from './outage';

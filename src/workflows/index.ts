export { outageWorkflow } from './outage';

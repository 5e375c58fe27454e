export { freePort } from '../../src/stack/process';

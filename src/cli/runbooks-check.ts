import { resolve } from 'node:path';
import { checkRunbooks } from '../runbooks/check';

// `npm run runbooks:check [folder]` (also `mxf runbooks check`).
void checkRunbooks(resolve(process.argv[2] ?? process.env.MXF_RUNBOOKS ?? './runbooks')).then((code) => {
  process.exitCode = code;
});

import { resolve } from 'node:path';
import { isSchemaFileCurrent, SCHEMA_FILE } from '../runbooks/json-schema';
import { formatProblem, loadRunbooks } from '../runbooks/load';

// `npm run runbooks:check [folder]`: the CI gate for runbooks as code. One line per problem, file:line first.
async function main() {
  const dir = resolve(process.argv[2] ?? process.env.MXF_RUNBOOKS ?? './runbooks');
  const { runbooks, problems } = await loadRunbooks(dir);
  for (const p of problems) console.error(formatProblem(p));
  if (!(await isSchemaFileCurrent(dir))) {
    console.error(`${SCHEMA_FILE}: out of date with src/domain/runbook.ts; run npm run runbooks:schema`);
    process.exitCode = 1;
  }
  if (problems.length > 0) {
    console.error(`${problems.length} problem(s) in ${dir}`);
    process.exitCode = 1;
    return;
  }
  console.log(
    `${runbooks.length} runbook(s) OK: ${runbooks.map((r) => `${r.id} (${r.domains.join(', ')})`).join('; ')}`,
  );
}

void main();

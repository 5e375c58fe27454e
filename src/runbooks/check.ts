import { isSchemaFileCurrent, SCHEMA_FILE } from './json-schema';
import { formatProblem, loadRunbooks } from './load';

/** The CI gate for runbooks as code: one line per problem, file:line first. Resolves to the exit code. */
export async function checkRunbooks(dir: string): Promise<number> {
  const { runbooks, problems } = await loadRunbooks(dir);
  for (const p of problems) console.error(formatProblem(p));
  let code = 0;
  if (!(await isSchemaFileCurrent(dir))) {
    console.error(`${SCHEMA_FILE}: out of date with src/domain/runbook.ts; run npm run runbooks:schema`);
    code = 1;
  }
  if (problems.length > 0) {
    console.error(`${problems.length} problem(s) in ${dir}`);
    return 1;
  }
  console.log(
    `${runbooks.length} runbook(s) OK: ${runbooks.map((r) => `${r.id} (${r.domains.join(', ')})`).join('; ')}`,
  );
  return code;
}

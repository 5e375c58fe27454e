import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, run } from './run';

/** A README.md block's commands (between <!-- name:start --> and <!-- name:end -->): continuation lines joined, comments and blank lines dropped. */
export function readmeBlock(name: string): string[] {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const block = new RegExp(
    `<!-- ${name}:start -->\\n\`\`\`sh\\n([\\s\\S]*?)\`\`\`\\n<!-- ${name}:end -->`,
  ).exec(readme)?.[1];
  assert.ok(block, `README.md has the ${name} block`);
  return block
    .replace(/\\\n\s*/g, '')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
}

/** One line of a walkthrough, through bash as a terminal would run it. */
export const sh = (command: string, env: NodeJS.ProcessEnv) =>
  run('bash', ['-o', 'pipefail', '-c', command], env);

/** Runs it, retrying for a while what the outage is not ready for yet, as an operator would. */
export async function shRetrying(command: string, env: NodeJS.ProcessEnv, forMs = 15_000) {
  let r = await sh(command, env);
  for (const started = Date.now(); r.code !== 0 && Date.now() - started < forMs; ) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    r = await sh(command, env);
  }
  return r;
}

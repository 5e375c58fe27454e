import { execFile } from 'node:child_process';
import { join } from 'node:path';

export const ROOT = join(__dirname, '../..');

/**
 * Runs a command from the repository's root as an operator would, without a shell unless asked for, and resolves
 * (never rejects) with its exit code and output. Async on purpose: a synchronous spawn would stall the servers
 * the test runs in-process.
 */
export function run(file: string, args: string[], env: NodeJS.ProcessEnv = process.env) {
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(file, args, { cwd: ROOT, env, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

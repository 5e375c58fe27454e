import { join } from 'node:path';
import { connectTemporal, ensureSearchAttributes } from '../temporal';
import { httpOk, type ManagedProcess, startedOrStopped, startProcess } from './process';

export const TOOLS_BIN = join(__dirname, '../../.tools/bin');

export async function startTemporalDevServer(opts: {
  port: number;
  namespace: string;
  logFile: string;
  /** SQLite file for persistence; in memory without it. */
  dbFile?: string;
  /** Web UI port; headless without it. */
  uiPort?: number;
  pidFile?: string;
  extraArgs?: string[];
}): Promise<ManagedProcess> {
  const args = [
    'server',
    'start-dev',
    '--ip',
    '127.0.0.1',
    '--port',
    String(opts.port),
    '--namespace',
    opts.namespace,
  ];
  args.push('--log-level', 'warn', '--log-format', 'json');
  if (opts.dbFile) args.push('--db-filename', opts.dbFile);
  if (opts.uiPort) args.push('--ui-port', String(opts.uiPort));
  else args.push('--headless');
  args.push(...(opts.extraArgs ?? []));
  const proc = startProcess('temporal', join(TOOLS_BIN, 'temporal'), args, {
    logFile: opts.logFile,
    pidFile: opts.pidFile,
  });
  const address = `127.0.0.1:${opts.port}`;
  await startedOrStopped(
    proc,
    `Temporal dev server on ${address}`,
    async () => {
      const { connection } = await connectTemporal({ address, namespace: opts.namespace }, 1_000);
      try {
        await connection.workflowService.describeNamespace({ namespace: opts.namespace });
        await ensureSearchAttributes(connection, opts.namespace);
        return true;
      } finally {
        await connection.close();
      }
    },
    { logFile: opts.logFile, timeoutMs: 90_000 },
  );
  if (opts.uiPort) {
    const ui = `http://127.0.0.1:${opts.uiPort}/`;
    await startedOrStopped(proc, `Temporal Web UI on ${ui}`, () => httpOk(ui), { logFile: opts.logFile });
  }
  return proc;
}

import { join } from 'node:path';
import { httpOk, type ManagedProcess, startedOrStopped, startProcess } from './process';
import { TOOLS_BIN } from './temporal';

export async function startMinio(opts: {
  dir: string;
  port: number;
  consolePort: number;
  accessKey: string;
  secretKey: string;
  logFile: string;
  pidFile?: string;
}): Promise<ManagedProcess> {
  const args = [
    'server',
    opts.dir,
    '--address',
    `127.0.0.1:${opts.port}`,
    '--console-address',
    `127.0.0.1:${opts.consolePort}`,
  ];
  const proc = startProcess('minio', join(TOOLS_BIN, 'minio'), [...args, '--quiet'], {
    env: {
      ...process.env,
      MINIO_ROOT_USER: opts.accessKey,
      MINIO_ROOT_PASSWORD: opts.secretKey,
      MINIO_UPDATE: 'off',
    },
    logFile: opts.logFile,
    pidFile: opts.pidFile,
  });
  return startedOrStopped(
    proc,
    `MinIO on 127.0.0.1:${opts.port}`,
    () => httpOk(`http://127.0.0.1:${opts.port}/minio/health/ready`),
    {
      logFile: opts.logFile,
    },
  );
}

import { join } from 'node:path';
import { httpOk, type ManagedProcess, startedOrStopped, startProcess } from './process';
import { TOOLS_BIN } from './temporal';

export async function startMinio(opts: {
  dir: string;
  port: number;
  consolePort: number;
  /** One folder when absent; with 4 or more, drive1..driveN under dir, erasure-coded (parity EC:2 at 4). */
  drives?: number;
  accessKey: string;
  secretKey: string;
  logFile: string;
  pidFile?: string;
}): Promise<ManagedProcess> {
  const drives = opts.drives ?? 1;
  const args = [
    'server',
    // MinIO's own expansion syntax: it makes one erasure set of drive1 to driveN.
    drives > 1 ? join(opts.dir, `drive{1...${drives}}`) : opts.dir,
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
      // Several drives on one disk: MinIO refuses folders of the root disk as drives unless told this is a test
      // bed. Production (compose) gives it real drives.
      ...(drives > 1 && { MINIO_CI_CD: 'on' }),
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

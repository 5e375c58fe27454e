import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parseConfig } from '../src/config';
import { startMinio } from '../src/stack/minio';
import { ensureDatabase, startPrivatePostgres } from '../src/stack/postgres';
import { type ManagedProcess, startTogether } from '../src/stack/process';
import { startTemporalDevServer } from '../src/stack/temporal';
import { createSql } from '../src/store/db';
import { migrate } from '../src/store/migrate';
import { createObjectStore, ensureBucket } from '../src/store/objects';
import { freePort } from '../test/helpers/ports';

// `npm test [-- file...]`: starts what the tests need on free ports in a temporary folder (Temporal dev server,
// MinIO, a fresh PostgreSQL database), runs node's test runner over test/**/*.test.ts, and stops everything,
// also when a test fails or the run is interrupted.

const ROOT = join(__dirname, '..');

function testFiles(args: string[]): string[] {
  if (args.length > 0) return args;
  const walk = (dir: string): string[] =>
    readdirSync(dir).flatMap((name) => {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) return walk(path);
      return name.endsWith('.test.ts') ? [relative(ROOT, path)] : [];
    });
  return walk(join(ROOT, 'test')).sort();
}

async function main(): Promise<number> {
  const tmp = mkdtempSync(join(tmpdir(), 'mxf-test-'));
  const running: ManagedProcess[] = [];
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    await Promise.all(running.map((p) => p.stop()));
    rmSync(tmp, { recursive: true, force: true });
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => void cleanup().then(() => process.exit(130)));
  }

  try {
    const started = Date.now();
    const [pgPort, temporalPort, minioPort, consolePort] = await Promise.all([
      freePort(),
      freePort(),
      freePort(),
      freePort(),
    ]);
    const logs = join(tmp, 'logs');
    mkdirSync(logs);

    let databaseUrl: string;
    if (process.env.DATABASE_URL) {
      // A fresh database on the given server; its name says when it was made, for whoever tidies that server.
      const name = `mxf_test_${Date.now()}`;
      await ensureDatabase(process.env.DATABASE_URL, name);
      const url = new URL(process.env.DATABASE_URL);
      url.pathname = `/${name}`;
      databaseUrl = url.toString();
    } else {
      const pg = await startPrivatePostgres({
        dir: join(tmp, 'postgres'),
        port: pgPort,
        logFile: join(logs, 'postgres.log'),
        ephemeral: true,
      });
      running.push(pg);
      await ensureDatabase(pg.url('postgres'), 'mxf_test');
      databaseUrl = pg.url('mxf_test');
    }
    const env = {
      ...process.env,
      DATABASE_URL: databaseUrl,
      TEMPORAL_ADDRESS: `127.0.0.1:${temporalPort}`,
      TEMPORAL_NAMESPACE: 'default',
      MXF_S3_ENDPOINT: `http://127.0.0.1:${minioPort}`,
      MXF_S3_ACCESS_KEY: 'mxf-test',
      MXF_S3_SECRET_KEY: 'mxf-test-secret',
      MXF_S3_BUCKET: 'held-mail-test',
      TEST_STACK_TMP: tmp,
      MXF_LOG_LEVEL: process.env.MXF_LOG_LEVEL ?? 'warn',
    };
    const config = parseConfig(env);
    await startTogether(running, [
      startTemporalDevServer({
        port: temporalPort,
        namespace: 'default',
        logFile: join(logs, 'temporal.log'),
      }),
      startMinio({
        dir: join(tmp, 'minio'),
        port: minioPort,
        consolePort,
        accessKey: config.s3.accessKey,
        secretKey: config.s3.secretKey,
        logFile: join(logs, 'minio.log'),
      }),
    ]);
    await ensureBucket(createObjectStore(config), config);
    const sql = createSql(config, { max: 1 });
    await migrate(sql).finally(() => sql.end());
    console.log(`[test] stack up in ${((Date.now() - started) / 1000).toFixed(1)} s (${tmp})`);

    const files = testFiles(process.argv.slice(2));
    const runner = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        '--test',
        '--test-concurrency=1',
        '--test-timeout=240000',
        '--test-force-exit',
        '--test-reporter=spec',
        ...files,
      ],
      { cwd: ROOT, env, stdio: 'inherit' },
    );
    const code = await new Promise<number>((resolve) => runner.once('exit', (c) => resolve(c ?? 1)));
    return code;
  } catch (err) {
    console.error(`[test] could not start the test stack: ${(err as Error).message}`);
    return 1;
  } finally {
    await cleanup();
  }
}

void main().then((code) => process.exit(code));

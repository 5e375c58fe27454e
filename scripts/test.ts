import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { freePortPair, type LaunchedStack, launchStack, mailboxEnv, type StackOptions } from '../src/stack';
import { makeTestZone, ourIdentityEnv } from '../test/helpers/dns-zone';
import { freePort } from '../test/helpers/ports';

// `npm test [-- file...]`: starts what the tests need on free ports in a temporary folder (Temporal dev server,
// MinIO, a fresh PostgreSQL database, rspamd, and a DNS server holding the tests' records), runs node's test
// runner over test/**/*.test.ts, and stops everything, also when a test fails or the run is interrupted.

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

/**
 * In memory or fsync-off: nothing here outlives the run. On DATABASE_URL, a database of its own. rspamd and DNS
 * are always the run's own, whatever the shell exports: the tests' verdicts rest on the records this run serves
 * (test/helpers/dns-zone.ts), which no other resolver or rspamd has.
 */
function stackOptions(
  tmp: string,
  ports: number[],
  rspamdPort: number,
  mailboxPorts: Record<string, string>,
): StackOptions {
  const [pgPort, temporalPort, minioPort, consolePort, dnsPort] = ports as [
    number,
    number,
    number,
    number,
    number,
  ];
  const zone = makeTestZone(tmp);
  const { MXF_RSPAMD_URL: _rspamd, MXF_DNS_SERVERS: _dns, ...inherited } = process.env;
  return {
    dir: tmp,
    env: {
      ...inherited,
      ...mailboxPorts,
      TEST_DKIM_KEY_FILE: zone.dkimKeyFile,
      // Stand-in mailboxes take any pace; a test of pacing sets the rate on its forward instruction.
      MXF_FORWARD_RATE: '100000/s',
      MXF_DOMAIN_RATE: '100000/s',
      ...ourIdentityEnv(zone.ourKeyFile, randomBytes(24).toString('hex')),
      MXF_S3_ACCESS_KEY: 'mxf-test',
      MXF_S3_SECRET_KEY: 'mxf-test-secret',
      MXF_S3_BUCKET: 'held-mail-test',
      TEST_STACK_TMP: tmp,
      MXF_LOG_LEVEL: process.env.MXF_LOG_LEVEL ?? 'warn',
    },
    // Its name says when it was made, for whoever tidies that server.
    postgres: process.env.DATABASE_URL
      ? { url: process.env.DATABASE_URL, database: `mxf_test_${Date.now()}` }
      : { port: pgPort, database: 'mxf_test', ephemeral: true },
    temporal: { port: temporalPort },
    minio: { port: minioPort, consolePort },
    rspamd: { port: rspamdPort },
    dns: { port: dnsPort, records: zone.records },
  };
}

async function main(): Promise<number> {
  const tmp = mkdtempSync(join(tmpdir(), 'mxf-test-'));
  let launched: LaunchedStack | undefined;
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    await launched?.stop();
    rmSync(tmp, { recursive: true, force: true });
  };
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => void cleanup().then(() => process.exit(130)));
  }

  try {
    const started = Date.now();
    const ports = await Promise.all(Array.from({ length: 5 }, freePort));
    // rspamd's controller takes the port after its worker's.
    launched = launchStack(stackOptions(tmp, ports, await freePortPair(), await mailboxEnv()));
    const { env } = await launched.started;
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

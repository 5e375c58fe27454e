import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { runbookSchema } from '../src/domain/runbook';
import { startOpsStack } from './helpers/api';
import { startCatcher } from './helpers/catcher';
import { freePort } from './helpers/ports';
import { ROOT } from './helpers/run';
import { recordHistory, useTemporalClient } from './helpers/temporal';
import { readmeBlock, sh, shRetrying } from './helpers/walkthrough';

// README.md's operator walkthrough, run as written: every command in its block, in order, against the real
// stack, with a local SMTP server as Harborview Law's mail server (down until the walkthrough says it is back).

const temporal = useTemporalClient();

test("README's walkthrough: a whole outage with the CLI alone", async () => {
  const commands = readmeBlock('walkthrough');
  assert.ok(commands.length >= 10, `${commands.length} commands`);
  const primaryPort = await freePort();
  const relay = await startCatcher(); // notification emails leave through it
  const base = runbookSchema.parse(parse(readFileSync(join(ROOT, 'runbooks/harborview-law.yaml'), 'utf8')));
  const runbook = runbookSchema.parse({
    ...base,
    primary: [{ host: '127.0.0.1', port: primaryPort }],
    // The operator declares, not the probes; the operator restores, not the runbook.
    detection: { probeInterval: '1s', confirmAfter: '1h' },
    notify: [{ after: '0s', channels: ['ops-call', 'email'] }],
    restore: { mode: 'approval', ratePerSecond: 50 },
  });
  const stack = await startOpsStack([runbook], { client: temporal.client, relayPort: relay.port });
  const { ingest, api } = stack;
  const env = { ...process.env, MXF_API_URL: api.url, MXF_TOKEN: api.tokens.admin };
  let primary: Awaited<ReturnType<typeof startCatcher>> | undefined;
  try {
    await stack.run(async () => {
      const outputs: string[] = [];
      for (const written of commands) {
        if (written.includes(' restore')) primary = await startCatcher({ port: primaryPort }); // the server is back
        const command = written.replace('127.0.0.1:2525', `127.0.0.1:${ingest.port}`);
        // An operator retries what the outage is not ready for yet (the call task opens a moment after declaring).
        const r = await shRetrying(command, env);
        assert.equal(r.code, 0, `${written}\n${r.stdout}${r.stderr}`);
        outputs.push(r.stdout);
      }
      const at = (prefix: string) => outputs[commands.findIndex((c) => c.startsWith(prefix))]!;
      const lastShow = outputs[commands.lastIndexOf('bin/mxf outages show harborview-law')]!;
      assert.match(
        at('bin/mxf outages declare'),
        /^declared\. harborview-law\.[0-9a-f]{8}: awaiting-instructions/,
      );
      assert.match(at('bin/mxf call'), /call-1 recorded: reached/);
      assert.match(at('bin/mxf instruct harborview-law hold'), /: holding, 1 message\(s\) held/);
      assert.match(at('bin/mxf messages list'), /reception@harborviewlaw\.example \(held\)/);
      assert.match(
        at('bin/mxf messages show'),
        /Subject +Filing deadline moved[\s\S]*Please confirm receipt\./,
      );
      assert.match(lastShow, /^Phase +closed$/m);
      assert.match(lastShow, /0 forwarded, 0 redirected, 1 restored; 0 failed/);
      assert.equal(primary?.caught.length, 1, 'the held message reached the restored server');
      assert.match(primary!.caught[0]!.raw.toString(), /Subject: Filing deadline moved/);
      const audit = at('bin/mxf audit');
      for (const action of ['outage.declare', 'outage.call', 'outage.instruct', 'message.read'])
        assert.match(
          audit,
          new RegExp(`${api.names.admin} +${action.replace('.', '\\.')} .* ok \\(20[01]\\)`),
        );
      assert.ok(
        relay.caught.some((m) => m.to.includes('harborview.backup@gmail.example')),
        'contacts emailed',
      );

      await recordHistory('outage-declared-by-hand', { workflowId: 'outage:harborview-law' });

      // The CLI's failures: the API's code and a non-zero exit, usage errors exit 2.
      const noTo = await sh('bin/mxf instruct harborview-law forward', env);
      assert.equal(noTo.code, 1);
      assert.match(noTo.stderr, /INVALID_REQUEST: .*to/);
      const unknown = await sh('bin/mxf outages show harborview-law.00000000', env);
      assert.equal(unknown.code, 1);
      assert.match(unknown.stderr, /OUTAGE_NOT_FOUND/);
      const closed = await sh('bin/mxf instruct harborview-law hold --json', env);
      assert.equal(closed.code, 1);
      assert.equal(JSON.parse(closed.stdout).error.code, 'WORKFLOW_REFUSED');
      assert.equal((await sh('bin/mxf outages frobnicate', env)).code, 2);
      const viewer = await sh('bin/mxf messages show 1', { ...env, MXF_TOKEN: api.tokens.viewer });
      assert.match(viewer.stderr, /FORBIDDEN/);
      const listed = JSON.parse((await sh('bin/mxf outages list --state resolved --json', env)).stdout);
      assert.ok(listed.outages.some((o: { customerId: string }) => o.customerId === 'harborview-law'));
    });
  } finally {
    await stack.close();
    await relay.close();
    await primary?.close();
  }
});

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import type { Config } from '../src/config';
import { runbookSchema } from '../src/domain/runbook';
import { startOpsStack } from './helpers/api';
import { startCatcher } from './helpers/catcher';
import { eventually } from './helpers/eventually';
import { imapClient } from './helpers/imap';
import { freePort } from './helpers/ports';
import { ROOT } from './helpers/run';
import { useTemporalClient } from './helpers/temporal';
import { readmeBlock, sh, shRetrying } from './helpers/walkthrough';
import { startWebhookReceiver } from './helpers/webhook';

// README.md's second walkthrough, run as written: a large organisation's outage with temporary mailboxes, against
// the real stack (Dovecot included), with a local SMS webhook and a local SMTP server as Meridian's mail server.
// Before the restore, Priya signs in over IMAP with the password the hand-out printed and finds her held mail.

const temporal = useTemporalClient();

async function inboxSubjects(user: string, pass: string, config: Pick<Config, 'mailbox'>) {
  const imap = imapClient(config, user, pass);
  await imap.connect();
  try {
    const lock = await imap.getMailboxLock('INBOX');
    try {
      const subjects: string[] = [];
      for await (const m of imap.fetch('1:*', { envelope: true })) subjects.push(m.envelope?.subject ?? '');
      return subjects;
    } finally {
      lock.release();
    }
  } finally {
    await imap.logout();
  }
}

test("README's mailboxes walkthrough: Meridian Freight's people in temporary mailboxes, then a restore", async () => {
  const commands = readmeBlock('walkthrough-mailboxes');
  const primaryPort = await freePort();
  const relay = await startCatcher();
  const sms = await startWebhookReceiver();
  const base = runbookSchema.parse(parse(readFileSync(join(ROOT, 'runbooks/meridian-freight.yaml'), 'utf8')));
  const runbook = runbookSchema.parse({
    ...base,
    primary: [{ host: '127.0.0.1', port: primaryPort }],
    detection: { probeInterval: '1s', confirmAfter: '1h' },
    notify: [{ after: '0s', channels: ['ops-call'] }],
  });
  const stack = await startOpsStack([runbook], {
    client: temporal.client,
    relayPort: relay.port,
    env: { MXF_NOTIFY_WEBHOOK_URL: sms.url },
  });
  const { ingest, api } = stack;
  const env = { ...process.env, MXF_API_URL: api.url, MXF_TOKEN: api.tokens.admin };
  let primary: Awaited<ReturnType<typeof startCatcher>> | undefined;
  try {
    await stack.run(async () => {
      const outputs: string[] = [];
      for (const written of commands) {
        if (written.includes(' restore')) {
          await priyaReadsHerMail(outputs);
          primary = await startCatcher({ port: primaryPort }); // the data centre is back
        }
        const r = await shRetrying(written.replace('127.0.0.1:2525', `127.0.0.1:${ingest.port}`), env);
        assert.equal(r.code, 0, `${written}\n${r.stdout}${r.stderr}`);
        outputs.push(r.stdout);
      }
      assert.match(
        outputs.find((o) => o.startsWith('Sign-in for')) ?? '',
        /Link sent by sms to \+44 20 7946 0388: ok/,
      );
      assert.match(String(sms.received.at(-1)?.body.text), /works once/);
      const show = outputs[commands.indexOf('bin/mxf outages show meridian-freight')]!;
      assert.match(show, /^Mailboxes +2 \(1 handed a sign-in, 0 signed in\)/m);
      await eventually(
        'the held mail at the restored server',
        async () => primary!.caught.flatMap((m) => m.to),
        (to) =>
          to.includes('priya.raman@meridianfreight.example') &&
          to.includes('dispatch@meridian-logistics.example'),
        30_000,
      );
      const closed = await eventually(
        'the mailboxes closed with the outage',
        () => sh('bin/mxf mailboxes list meridian-freight', env),
        (r) => /priya\.raman@meridianfreight\.example +closed/.test(r.stdout),
        30_000,
      );
      assert.match(closed.stdout, /dispatch@meridian-logistics\.example +closed/);
    });
  } finally {
    await stack.close();
    await relay.close();
    await sms.close();
    await primary?.close();
  }

  /** The password as the hand-out printed it, and Priya's mail app reading her held mail with it. */
  async function priyaReadsHerMail(outputs: string[]) {
    const password = /^ {2}password +(\S+)$/m.exec(
      outputs.find((o) => o.startsWith('Sign-in for')) ?? '',
    )?.[1];
    assert.ok(password, 'the hand-out printed a password');
    const subjects = await eventually(
      "Priya's held mail in her temporary inbox",
      () => inboxSubjects('priya.raman@meridianfreight.example', password, ingest.config),
      (s) => s.includes('Container release 4471'),
      30_000,
    );
    assert.deepEqual(subjects, ['Container release 4471'], 'only her own mail');
  }
});

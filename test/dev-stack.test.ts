import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Client, Connection } from '@temporalio/client';
import nodemailer from 'nodemailer';
import postgres from 'postgres';
import { outageWorkflowId } from '../src/domain/outage';
import { statusQuery } from '../src/workflows/messages';
import { devEnv, smtpBanner, startDev, stopDev } from './helpers/dev-stack';
import { eventually } from './helpers/eventually';

// The acceptance test of `npm run dev`: the whole stack on its own ports and data folder, up, healthy, stopped
// with Ctrl-C (SIGINT) leaving no process behind, and started again on the same data.

test('npm run dev: up, healthy, stopped cleanly, and restarted on the same data', async () => {
  const { env, ports } = await devEnv();
  const { smtp, api, temporal, ui, pg, metrics } = ports;
  let queueId = '';
  const first = await startDev(env);
  try {
    const health = await fetch(`http://127.0.0.1:${api}/healthz`);
    const body = (await health.json()) as { components: Record<string, { status: string }> };
    assert.equal(health.status, 200, JSON.stringify(body));
    assert.deepEqual(
      Object.entries(body.components)
        .map(([name, c]) => `${name}:${c.status}`)
        .sort(),
      ['dovecot:up', 'minio:up', 'postgres:up', 'rspamd:up', 'temporal:up'],
    );
    const inbox = await fetch(`http://127.0.0.1:${env.MXF_WEBMAIL_PORT}/`, { redirect: 'manual' });
    assert.ok(
      inbox.status === 200 || inbox.status === 302 || inbox.status === 303,
      `web inbox: ${inbox.status}`,
    );
    assert.equal((await fetch(`http://127.0.0.1:${ui}/`)).status, 200, 'Temporal Web UI');
    assert.match(await smtpBanner(smtp), /^220 /);
    // The printed admin token works against the API; no token does not.
    const token = /MXF_TOKEN=(mxf_\S+)/.exec(first.output())?.[1];
    assert.ok(token, 'an admin token is printed');
    const customers = await fetch(`http://127.0.0.1:${api}/api/customers`, {
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(customers.status, 200);
    assert.equal((await fetch(`http://127.0.0.1:${api}/api/customers`)).status, 401);
    for (const endpoint of [
      `smtp://127.0.0.1:${smtp}`,
      `http://127.0.0.1:${api}`,
      `http://127.0.0.1:${ui}`,
      `http://127.0.0.1:${env.MXF_WEBMAIL_PORT}`,
    ]) {
      assert.ok(first.output().includes(endpoint), `the endpoint ${endpoint} is printed`);
    }
    // End to end: SMTP in, held in MinIO and PostgreSQL, the doorbell starts the outage workflow, the dev
    // worker runs it and its activity counts the message.
    const transport = nodemailer.createTransport({
      host: '127.0.0.1',
      port: smtp,
      secure: false,
      ignoreTLS: true,
    });
    const info = await transport.sendMail({
      envelope: { from: 'clerk@court.example', to: ['reception@harborviewlaw.example'] },
      // A whole message: the dev stack's rspamd scores it, and Harborview's runbook keeps quarantined mail.
      from: 'Court Clerk <clerk@court.example>',
      to: 'reception@harborviewlaw.example',
      subject: 'during the outage',
      text: 'Please hold.',
    });
    queueId = /queued as (\w+)/.exec(info.response)![1]!;
    const ingestMetrics = await (await fetch(`http://127.0.0.1:${metrics}/metrics`)).text();
    assert.match(ingestMetrics, /^mxf_smtp_accepted_total 1$/m);
    const connection = await Connection.connect({ address: `127.0.0.1:${temporal}` });
    try {
      const handle = new Client({ connection }).workflow.getHandle(outageWorkflowId('harborview-law'));
      await eventually(
        'the outage workflow counts the message',
        () => handle.query(statusQuery),
        (s) => s.heldMessages === 1,
        30_000,
      );
    } finally {
      await connection.close();
    }
  } finally {
    await stopDev(first);
  }

  const second = await startDev(env);
  try {
    assert.match(second.output(), /database schema is up to date/);
    const sql = postgres(`postgres://postgres@127.0.0.1:${pg}/mxfailover`, { max: 1 });
    const rows = await sql`select queue_id from held_message where queue_id = ${queueId}`;
    await sql.end();
    assert.equal(rows.length, 1, 'held mail survives a restart of npm run dev');
  } finally {
    await stopDev(second);
  }
});

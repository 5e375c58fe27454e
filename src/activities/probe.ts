import { performance } from 'node:perf_hooks';
import SMTPConnection from 'nodemailer/lib/smtp-connection';
import type { ProbeResult } from '../domain/delivery';
import type { RouteHost } from '../domain/route';

const PROBE_TIMEOUT_MS = 10_000;

/** One SMTP probe of one MX host: connect, banner, EHLO, QUIT, each with a timeout. Never throws. */
export function probeMx(to: RouteHost, name: string): Promise<ProbeResult> {
  const { port } = to;
  // The status names the host as the runbook or DNS does, with the address when that differs.
  const host = to.name === to.address ? to.name : `${to.name} (${to.address})`;
  const started = performance.now();
  let stage: ProbeResult['stage'] = 'connect';
  return new Promise((resolve) => {
    const connection = new SMTPConnection({
      host: to.address,
      port,
      name,
      connectionTimeout: PROBE_TIMEOUT_MS,
      greetingTimeout: PROBE_TIMEOUT_MS,
      socketTimeout: PROBE_TIMEOUT_MS,
      ignoreTLS: true,
    });
    let settled = false;
    const finish = (ok: boolean, error?: string) => {
      if (settled) return;
      settled = true;
      resolve({
        host,
        port,
        ok,
        stage,
        latencyMs: Math.round(performance.now() - started),
        ...(error ? { error } : {}),
      });
    };
    // A refused, unreachable, unresolvable or silent address never got as far as SMTP.
    const failed = (err: Error & { code?: string }) => {
      const noConnection = /ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN/.test(err.message);
      stage = noConnection || err.code === 'ECONNECTION' ? 'connect' : 'greeting';
      finish(false, err.message);
    };
    connection.once('error', failed);
    connection.connect((err) => {
      if (err) return failed(err);
      stage = 'done';
      connection.quit();
      finish(true);
    });
  });
}

import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import type { Config } from '../config';
import { doveadmApiKey } from '../mailbox/doveadm';
import { masterSecret } from '../mailbox/imap';
import { startDovecot } from './dovecot';
import { type Component, restartable } from './process';

// The stack's Dovecot: temporary mailboxes on config.mailbox's ports, its state under <dir>/dovecot (a working
// copy: PostgreSQL and MinIO can always rebuild it). Its certificate is MXF_TLS_CERT/MXF_TLS_KEY when set (the
// name people's mail apps check), else a self-signed one made once and kept, so a phone that was told to trust it
// keeps trusting it after a restart.

export async function startMailServer(
  dir: string,
  config: Config,
  logs: string,
  pidFiles?: boolean,
): Promise<Component> {
  const home = join(dir, 'dovecot');
  mkdirSync(home, { recursive: true });
  const tls = config.smtp.tls
    ? { cert: config.smtp.tls.certFile, key: config.smtp.tls.keyFile }
    : await selfSigned(home, config.mailbox.publicHost);
  const { host, imapPort, lmtpPort, submissionPort, relayPort } = config.mailbox;
  const start = () =>
    startDovecot({
      dir: home,
      host,
      ports: { imap: imapPort, lmtp: lmtpPort, submission: submissionPort },
      relay: { host: config.mailbox.serviceHost, port: relayPort },
      authPolicyUrl: `http://${config.mailbox.serviceHost}:${config.mailbox.authPolicyPort}/`,
      masterSecret: masterSecret(config),
      masterNets: config.mailbox.masterNets,
      doveadm: { port: config.mailbox.doveadmPort, apiKey: doveadmApiKey(config) },
      databaseUrl: config.database.url,
      tls,
      logFile: join(logs, 'dovecot.log'),
      pidFile: pidFiles ? join(dir, 'dovecot.pid') : undefined,
    });
  return restartable(await start(), start);
}

async function selfSigned(home: string, name: string): Promise<{ cert: string; key: string }> {
  const cert = join(home, 'tls-cert.pem');
  const key = join(home, 'tls-key.pem');
  if (!existsSync(cert) || !existsSync(key) || !readFileSync(cert, 'utf8').includes('BEGIN CERTIFICATE')) {
    const pems = await generate([{ name: 'commonName', value: name }], {
      keySize: 2048,
      notAfterDate: new Date(Date.now() + 825 * 86_400_000),
      extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: name }] }],
    });
    writeFileSync(key, pems.private, { mode: 0o600 });
    writeFileSync(cert, pems.cert);
  }
  return { cert, key };
}

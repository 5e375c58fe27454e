import { readFile } from 'node:fs/promises';
import { generate } from 'selfsigned';
import type { Config } from '../config';
import type { Logger } from '../log';

/**
 * STARTTLS key and certificate: from MXF_TLS_CERT / MXF_TLS_KEY, or a self-signed pair made at start. Senders
 * use opportunistic TLS towards an MX and do not verify the certificate, so self-signed still encrypts; a real
 * certificate matters for senders that enforce MTA-STS or DANE, so production sets both variables.
 */
export async function loadTls(config: Config, log: Logger): Promise<{ key: string; cert: string }> {
  if (config.smtp.tls) {
    const [key, cert] = await Promise.all([
      readFile(config.smtp.tls.keyFile, 'utf8'),
      readFile(config.smtp.tls.certFile, 'utf8'),
    ]);
    return { key, cert };
  }
  log.warn(
    { hostname: config.hostname },
    'no MXF_TLS_CERT/MXF_TLS_KEY: STARTTLS uses a self-signed certificate',
  );
  const pems = await generate([{ name: 'commonName', value: config.hostname }], {
    keySize: 2048,
    extensions: [{ name: 'subjectAltName', altNames: [{ type: 2, value: config.hostname }] }],
  });
  return { key: pems.private, cert: pems.cert };
}

import pino, { type Logger } from 'pino';
import type { Config } from './config';

export type { Logger };

/** One logger per process, named after it (worker, ingest, api, dev). */
export function createLogger(config: Pick<Config, 'log'>, name: string): Logger {
  return pino({
    name,
    level: config.log.level,
    // Addresses and subjects are personal data: keep them out of logs unless someone is debugging.
    redact: { paths: ['*.subject', '*.envelopeFrom', '*.recipients'], censor: '[redacted]' },
    transport:
      config.log.format === 'pretty'
        ? {
            target: 'pino-pretty',
            options: { colorize: true, ignore: 'pid,hostname', translateTime: 'HH:MM:ss' },
          }
        : undefined,
  });
}

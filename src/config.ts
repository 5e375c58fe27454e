import { isIPv4 } from 'node:net';
import { hostname, networkInterfaces } from 'node:os';
import { resolve } from 'node:path';
import { z } from 'zod';
import { MAILBOX_RATE_DEFAULT, rateSchema } from './domain/pace';

// One schema over the environment, parsed once at start and frozen (the fastify way). The keys are the
// variable names themselves, so an error names exactly what the operator has to fix.

const port = (fallback: number) =>
  z
    .string()
    .default(String(fallback))
    .refine((v) => /^\d+$/.test(v) && Number(v) >= 1 && Number(v) <= 65535, 'expected a TCP port, 1-65535')
    .transform(Number);

const positiveInt = (fallback: number, what: string) =>
  z
    .string()
    .default(String(fallback))
    .refine((v) => /^\d+$/.test(v) && Number(v) > 0, `expected a positive whole number (${what})`)
    .transform(Number);

const hostAndPort = z.string().regex(/^[A-Za-z0-9.-]+:\d{1,5}$/, 'expected host:port, e.g. 127.0.0.1:7233');

const host = z.string().regex(/^[A-Za-z0-9.:-]+$/, 'expected a host name or IP address');

const domainName = z
  .string()
  .regex(
    /^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z][A-Za-z0-9-]*$/,
    'expected a domain name, e.g. failover.example.net',
  )
  .transform((v) => v.toLowerCase());

/** A comma-separated list, each item checked by `item`. */
const listOf = <T extends z.ZodType<string, string>>(item: T, example: string) =>
  z
    .string()
    .transform((v) =>
      v
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== ''),
    )
    .pipe(z.array(item, { error: `expected a comma-separated list, e.g. ${example}` }));

export interface DnsServerAddress {
  host: string;
  port: number;
}

/** `host:port` or `[v6 address]:port`, comma-separated; the port may be left off for 53. */
const DNS_SERVER = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+))(?::(\d{1,5}))?$/;

const dnsServers = z
  .string()
  .refine(
    (v) =>
      v.split(',').every((s) => {
        const m = DNS_SERVER.exec(s.trim());
        return m !== null && (m[3] === undefined || (Number(m[3]) >= 1 && Number(m[3]) <= 65535));
      }),
    'expected a comma-separated list of host:port, e.g. 127.0.0.1:5354,[::1]:53',
  )
  .transform((v) =>
    v.split(',').map((s): DnsServerAddress => {
      const m = DNS_SERVER.exec(s.trim())!;
      return { host: m[1] ?? m[2]!, port: Number(m[3] ?? 53) };
    }),
  );

export const envSchema = z
  .object({
    MXF_HOSTNAME: host.default(hostname()),
    MXF_SMTP_HOST: host.default('127.0.0.1'),
    MXF_SMTP_PORT: port(2525),
    MXF_SMTP_MAX_SIZE: positiveInt(50 * 1024 * 1024, 'bytes'),
    MXF_SMTP_MAX_CLIENTS: positiveInt(500, 'connections'),
    MXF_SMTP_MAX_PER_IP: positiveInt(50, 'connections from one address'),
    MXF_SMTP_GREET_PAUSE_MS: z
      .string()
      .default('0')
      .refine((v) => /^\d+$/.test(v) && Number(v) <= 30_000, 'expected milliseconds, 0-30000')
      .transform(Number),
    MXF_TLS_CERT: z.string().min(1).optional(),
    MXF_TLS_KEY: z.string().min(1).optional(),
    MXF_INGEST_METRICS_PORT: port(9465),
    // Processes of one ingest node sharing its SMTP port: the cores the node has to itself. 1 by default: where the
    // ingest shares its cores with MinIO, PostgreSQL and the rest of the stack (one machine, 2 cores), one process
    // took more mail than two (bench/results/ingest.md); a node with cores of its own sets it to them.
    MXF_INGEST_PROCESSES: positiveInt(1, 'processes'),
    MXF_DOORBELL_MS: positiveInt(1_000, 'milliseconds'),
    MXF_RECONCILE_MS: positiveInt(60_000, 'milliseconds'),
    MXF_SMTP_RELAY: hostAndPort.optional(),
    MXF_MX_NAMES: listOf(domainName, 'mx2.failover.example.net').optional(),
    MXF_MX_ADDRESSES: listOf(z.ipv4({ error: 'expected IPv4 addresses' }), '203.0.113.25').optional(),
    MXF_MX_PORT: port(25),
    MXF_RETURN_PATH_DOMAIN: domainName.optional(),
    MXF_RETURN_PATH_SECRET: z.string().min(16, 'expected at least 16 characters').optional(),
    MXF_DKIM_KEY_FILE: z.string().min(1).optional(),
    MXF_DKIM_SELECTOR: z
      .string()
      .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, 'expected a DKIM selector such as mxf or mxf2026')
      .default('mxf'),
    MXF_FORWARD_RATE: rateSchema.default(MAILBOX_RATE_DEFAULT),
    MXF_DOMAIN_RATE: rateSchema.default('600/min'),
    MXF_MONITOR: z.enum(['on', 'off']).default('on'),
    MXF_NOTIFY_FROM: z.email({ error: 'expected an email address' }).optional(),
    MXF_NOTIFY_WEBHOOK_URL: z
      .url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' })
      .optional(),
    MXF_API_HOST: host.default('127.0.0.1'),
    MXF_API_PORT: port(8080),
    // Read by the mxf CLI only; declared here so that exporting them never trips the unknown-variable check.
    MXF_API_URL: z
      .url({ protocol: /^https?$/, error: 'expected the ops API URL, e.g. http://127.0.0.1:8080' })
      .optional(),
    MXF_TOKEN: z.string().min(1).optional(),
    MXF_RUNBOOKS: z.string().min(1).default('./runbooks'),
    MXF_DATA_DIR: z.string().min(1).default('./.data'),
    MXF_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace']).default('info'),
    MXF_LOG_FORMAT: z.enum(['json', 'pretty']).default('json'),

    DATABASE_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'expected a postgres:// URL')
      .optional(),
    MXF_PG_PORT: port(5433),

    TEMPORAL_ADDRESS: hostAndPort.default('127.0.0.1:7233'),
    TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
    MXF_TEMPORAL_UI_PORT: port(8233),
    MXF_TASK_QUEUE: z.string().min(1).default('mx-failover'),

    MXF_S3_ENDPOINT: z
      .url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' })
      .default('http://127.0.0.1:9000'),
    MXF_S3_REGION: z.string().min(1).default('us-east-1'),
    MXF_S3_ACCESS_KEY: z.string().min(3, 'expected at least 3 characters').default('mxfailover'),
    MXF_S3_SECRET_KEY: z.string().min(8, 'expected at least 8 characters').default('mxfailover-dev-secret'),
    MXF_S3_BUCKET: z
      .string()
      .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'expected an S3 bucket name (3-63 of a-z 0-9 . -)')
      .default('held-mail'),
    MXF_S3_CONSOLE_PORT: port(9001),

    MXF_RSPAMD_URL: z
      .url({ protocol: /^https?$/, error: 'expected the rspamd worker URL, e.g. http://127.0.0.1:11333' })
      .optional(),
    MXF_RSPAMD_PORT: port(11343),
    MXF_DNS_SERVERS: dnsServers.optional(),
    MXF_DNS_PORT: port(5354),
    MXF_WORKER_METRICS_PORT: port(9466),

    // Temporary mailboxes (README "Temporary mailboxes"): our Dovecot's ports, the submission relay Dovecot hands
    // sent mail to, and the web inbox. MXF_MAILBOX_HOST is the name people type into their mail app.
    MXF_MAILBOX_HOST: host.optional(),
    MXF_DOVECOT_HOST: host.default('127.0.0.1'),
    MXF_IMAP_PORT: port(1143),
    MXF_LMTP_PORT: port(2424),
    MXF_SUBMISSION_PORT: port(1587),
    MXF_MAILBOX_SERVICE_HOST: host.default('127.0.0.1'),
    MXF_SUBMISSION_RELAY_PORT: port(10587),
    MXF_AUTH_POLICY_PORT: port(10588),
    MXF_DOVEADM_PORT: port(10589),
    MXF_DOVECOT_MASTER_SECRET: z.string().min(16, 'expected at least 16 characters').optional(),
    MXF_DOVECOT_MASTER_NETS: z
      .string()
      .regex(
        /^[0-9a-fA-F.:/]+(,[0-9a-fA-F.:/]+)*$/,
        'expected comma-separated networks, e.g. 127.0.0.0/8,10.0.0.0/8',
      )
      .default('127.0.0.0/8'),
    MXF_SUBMISSION_RECIPIENTS_PER_HOUR: positiveInt(
      300,
      'outside recipients a temporary mailbox may send to an hour',
    ),
    MXF_WEBMAIL_HOST: host.default('127.0.0.1'),
    MXF_WEBMAIL_PORT: port(8025),
    MXF_WEBMAIL_URL: z
      .url({
        protocol: /^https?$/,
        error: 'expected the web inbox URL people open, e.g. https://mail.failover.example.net',
      })
      .optional(),

    MXF_SHUTDOWN_GRACE_MS: positiveInt(10_000, 'milliseconds'),
  })
  .refine((env) => (env.MXF_TLS_CERT === undefined) === (env.MXF_TLS_KEY === undefined), {
    path: ['MXF_TLS_KEY'],
    message: 'set MXF_TLS_CERT and MXF_TLS_KEY together, or neither (then a self-signed pair is generated)',
  });

export type Env = z.input<typeof envSchema>;

function toConfig(env: z.output<typeof envSchema>) {
  const dataDir = resolve(env.MXF_DATA_DIR);
  const s3 = new URL(env.MXF_S3_ENDPOINT);
  return {
    hostname: env.MXF_HOSTNAME,
    smtp: {
      host: env.MXF_SMTP_HOST,
      port: env.MXF_SMTP_PORT,
      maxSize: env.MXF_SMTP_MAX_SIZE,
      maxClients: env.MXF_SMTP_MAX_CLIENTS,
      maxPerIp: env.MXF_SMTP_MAX_PER_IP,
      greetPauseMs: env.MXF_SMTP_GREET_PAUSE_MS,
      tls:
        env.MXF_TLS_CERT && env.MXF_TLS_KEY
          ? { certFile: env.MXF_TLS_CERT, keyFile: env.MXF_TLS_KEY }
          : undefined,
      metricsPort: env.MXF_INGEST_METRICS_PORT,
      processes: env.MXF_INGEST_PROCESSES,
      doorbellMs: env.MXF_DOORBELL_MS,
      reconcileMs: env.MXF_RECONCILE_MS,
    },
    api: {
      host: env.MXF_API_HOST,
      port: env.MXF_API_PORT,
      // Where the CLI finds the API: MXF_API_URL, else this machine's API.
      url: env.MXF_API_URL ?? `http://${env.MXF_API_HOST}:${env.MXF_API_PORT}`,
      token: env.MXF_TOKEN,
    },
    monitor: env.MXF_MONITOR === 'on',
    // At the forwarding domain, which signs notices (DKIM): the From: aligns with the signature (DMARC).
    notifyFrom:
      env.MXF_NOTIFY_FROM ?? `mx-failover@${env.MXF_RETURN_PATH_DOMAIN ?? env.MXF_HOSTNAME.toLowerCase()}`,
    notifyWebhookUrl: env.MXF_NOTIFY_WEBHOOK_URL,
    outbound: outboundOf(env),
    runbooksDir: resolve(env.MXF_RUNBOOKS),
    dataDir,
    log: { level: env.MXF_LOG_LEVEL, format: env.MXF_LOG_FORMAT },
    database: {
      // No DATABASE_URL means "the private cluster that npm run dev keeps under the data folder".
      managed: env.DATABASE_URL === undefined,
      url: env.DATABASE_URL ?? `postgres://postgres@127.0.0.1:${env.MXF_PG_PORT}/mxfailover`,
      privatePort: env.MXF_PG_PORT,
    },
    temporal: {
      address: env.TEMPORAL_ADDRESS,
      namespace: env.TEMPORAL_NAMESPACE,
      uiPort: env.MXF_TEMPORAL_UI_PORT,
      taskQueue: env.MXF_TASK_QUEUE,
    },
    s3: {
      endPoint: s3.hostname,
      port: Number(s3.port || (s3.protocol === 'https:' ? 443 : 80)),
      useSSL: s3.protocol === 'https:',
      url: env.MXF_S3_ENDPOINT,
      region: env.MXF_S3_REGION,
      accessKey: env.MXF_S3_ACCESS_KEY,
      secretKey: env.MXF_S3_SECRET_KEY,
      bucket: env.MXF_S3_BUCKET,
      consolePort: env.MXF_S3_CONSOLE_PORT,
    },
    rspamd: {
      // No MXF_RSPAMD_URL means "the private rspamd the stack runs on MXF_RSPAMD_PORT" (npm run dev); the
      // stack sets the URL in its services' environment when it starts one elsewhere (tests, bench).
      managed: env.MXF_RSPAMD_URL === undefined,
      url: (env.MXF_RSPAMD_URL ?? `http://127.0.0.1:${env.MXF_RSPAMD_PORT}`).replace(/\/+$/, ''),
      port: env.MXF_RSPAMD_PORT,
    },
    dns: {
      // The resolver for sender authentication (rspamd's SPF, DKIM, DMARC lookups) and MX lookups. Empty: the
      // system's resolvers. The stack sets it to its private DNS server when it starts one.
      servers: env.MXF_DNS_SERVERS ?? [],
      port: env.MXF_DNS_PORT,
    },
    worker: { metricsPort: env.MXF_WORKER_METRICS_PORT },
    mailbox: mailboxOf(env),
    shutdownGraceMs: env.MXF_SHUTDOWN_GRACE_MS,
  };
}

/**
 * How mail leaves us (README "Routing"): by MX lookup, or through a smarthost for forwards and notifications; who
 * we are, so that nothing is ever delivered back to us (RFC 5321 5.1); and our forwarding domain, which signs
 * (DKIM, ARC), is the envelope sender's domain (SPF) and takes the bounces of forwarded copies.
 */
function outboundOf(env: z.output<typeof envSchema>) {
  const relay = env.MXF_SMTP_RELAY;
  const listening = env.MXF_SMTP_HOST;
  const wildcard = listening === '0.0.0.0' || listening === '::';
  const domain = env.MXF_RETURN_PATH_DOMAIN ?? env.MXF_HOSTNAME.toLowerCase();
  return {
    relay: relay
      ? {
          host: relay.slice(0, relay.lastIndexOf(':')),
          port: Number(relay.slice(relay.lastIndexOf(':') + 1)),
        }
      : undefined,
    mxPort: env.MXF_MX_PORT,
    own: {
      names: env.MXF_MX_NAMES ?? [env.MXF_HOSTNAME.toLowerCase()],
      // Listening on every address: each of this machine's. Behind NAT, the public ones must be in MXF_MX_ADDRESSES.
      addresses: [
        ...new Set([
          ...(env.MXF_MX_ADDRESSES ?? []),
          ...(wildcard ? localIPv4() : isIPv4(listening) ? [listening] : []),
        ]),
      ],
      smtpPort: env.MXF_SMTP_PORT,
    },
    returnPath: { domain, secret: env.MXF_RETURN_PATH_SECRET },
    dkim: { domain, selector: env.MXF_DKIM_SELECTOR, keyFile: env.MXF_DKIM_KEY_FILE },
    pace: { mailbox: env.MXF_FORWARD_RATE, domain: env.MXF_DOMAIN_RATE },
  };
}

/** Our Dovecot, the relay that takes what its users send, and the web inbox. */
function mailboxOf(env: z.output<typeof envSchema>) {
  const webUrl = env.MXF_WEBMAIL_URL ?? `http://${env.MXF_WEBMAIL_HOST}:${env.MXF_WEBMAIL_PORT}`;
  return {
    /** What people are told to connect to; the listening address is `host`. */
    publicHost: env.MXF_MAILBOX_HOST ?? env.MXF_HOSTNAME,
    host: env.MXF_DOVECOT_HOST,
    imapPort: env.MXF_IMAP_PORT,
    lmtpPort: env.MXF_LMTP_PORT,
    submissionPort: env.MXF_SUBMISSION_PORT,
    /** Where the mailbox service's relay and policy server listen, and where Dovecot reaches them. */
    serviceHost: env.MXF_MAILBOX_SERVICE_HOST,
    relayPort: env.MXF_SUBMISSION_RELAY_PORT,
    /** Where Dovecot asks before a sign-in and reports after it (src/mailbox/auth-policy.ts), on loopback. */
    authPolicyPort: env.MXF_AUTH_POLICY_PORT,
    /** Dovecot's admin HTTP API (sessions ended at a password reset and at close), on MXF_DOVECOT_HOST. */
    doveadmPort: env.MXF_DOVEADM_PORT,
    /** Our services sign in to any mailbox as `<address>*mxf-master` with it; else keys/dovecot-master.secret. */
    masterSecret: env.MXF_DOVECOT_MASTER_SECRET,
    /** A leaked password must not turn a mailbox into a spam cannon that gets our addresses blocklisted. */
    outsideRecipientsPerHour: env.MXF_SUBMISSION_RECIPIENTS_PER_HOUR,
    /** Where our services sign in from as the master user; from anywhere else its password is refused. */
    masterNets: env.MXF_DOVECOT_MASTER_NETS,
    web: { host: env.MXF_WEBMAIL_HOST, port: env.MXF_WEBMAIL_PORT, url: webUrl.replace(/\/+$/, '') },
  };
}

const localIPv4 = () =>
  Object.values(networkInterfaces()).flatMap((list) =>
    (list ?? []).filter((i) => i.family === 'IPv4').map((i) => i.address),
  );

export type Config = Readonly<ReturnType<typeof toConfig>>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

const known = new Set(Object.keys(envSchema.shape));

/** Parses the environment; throws ConfigError with one line per bad variable. */
export function parseConfig(source: NodeJS.ProcessEnv): Config {
  // Empty values count as unset, as shells and compose files often export VAR= for "default".
  const env = Object.fromEntries(Object.entries(source).filter(([, v]) => v !== undefined && v !== ''));
  const problems: string[] = [];
  // A typo such as MXF_SMTP_PROT would otherwise be silently ignored and the default used.
  for (const name of Object.keys(env)) {
    if (name.startsWith('MXF_') && !known.has(name))
      problems.push(`${name}: unknown variable (see README.md)`);
  }
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const name = String(issue.path[0]);
      problems.push(`${name}=${JSON.stringify(env[name] ?? '')}: ${issue.message}`);
    }
  }
  if (problems.length > 0 || !parsed.success) throw new ConfigError(problems);
  return deepFreeze(toConfig(parsed.data));
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** For process entry points: parse, or print one line per problem and exit 78 (EX_CONFIG). */
export function loadConfigOrExit(source: NodeJS.ProcessEnv = process.env): Config {
  try {
    return parseConfig(source);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const problem of err.problems) console.error(`mx-failover: configuration error: ${problem}`);
    process.exit(78);
  }
}

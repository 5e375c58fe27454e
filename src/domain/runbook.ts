import { z } from 'zod';
import { spamPolicySchema } from './spam';

// The runbook: one customer's outage plan, written by people, checked by machines. Pure: no I/O here, so the
// workflow bundle can import it. Objects are strict so a misspelt field is an error, not a silent default.

const DURATION = /^(\d+)(ms|s|m|h|d)$/;
const UNIT_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** "10s", "2m", "72h", "7d": the same strings Temporal's timers accept. */
export const durationSchema = z
  .string()
  .regex(DURATION, 'expected a duration such as "10s", "2m", "72h" or "7d"')
  .meta({ description: 'A whole number and a unit: ms, s, m, h or d.', examples: ['10s', '2m', '72h'] });
export type Duration = z.infer<typeof durationSchema>;

export function durationMs(duration: Duration): number {
  const match = DURATION.exec(duration);
  if (!match) throw new Error(`not a duration: ${duration}`);
  return Number(match[1]) * UNIT_MS[match[2] as keyof typeof UNIT_MS];
}

const hostnameSchema = z
  .string()
  .regex(
    /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$/,
    'expected a lower-case fully qualified host name, e.g. mail.example.com',
  );

/** A mail server: a host name, or an IPv4 address where the customer's server has no name (and in tests). */
const mailHostSchema = z.union([hostnameSchema, z.ipv4()], {
  error: 'expected a lower-case host name such as mail.example.com, or an IPv4 address',
});

const mailboxSchema = z.email({ error: 'expected an email address, e.g. it@example.com' });

export const primaryMxSchema = z.strictObject({
  host: mailHostSchema,
  port: z.number().int().min(1).max(65535).default(25),
});

export const contactSchema = z
  .strictObject({
    name: z.string().min(1),
    role: z.string().min(1),
    phone: z
      .string()
      .regex(/^\+[0-9 ()-]{7,20}$/, 'expected an international number, e.g. "+1 212 555 0142"')
      .optional(),
    email: mailboxSchema.optional(),
  })
  .refine((c) => c.phone !== undefined || c.email !== undefined, {
    message: 'a contact needs a phone or an email, or nobody can be reached',
  });

export const notifyChannelSchema = z.enum(['ops-call', 'email', 'sms', 'webhook']);
export type NotifyChannel = z.infer<typeof notifyChannelSchema>;

export const notifyStepSchema = z.strictObject({
  after: durationSchema,
  channels: z.array(notifyChannelSchema).min(1),
});

/** What happens to held mail when nobody has said otherwise by `after`. */
export const defaultInstructionSchema = z.discriminatedUnion('action', [
  z.strictObject({ after: durationSchema, action: z.literal('hold') }),
  z.strictObject({ after: durationSchema, action: z.literal('forward'), to: mailboxSchema }),
  z.strictObject({
    after: durationSchema,
    action: z.literal('redirect'),
    host: mailHostSchema,
    port: z.number().int().min(1).max(65535).default(25),
  }),
]);

/** A slug: the shape of a customer id, which is its runbook id. */
export const CUSTOMER_ID_PATTERN = '[a-z0-9][a-z0-9-]{1,62}';
/** A customer is its runbook: the runbook id names it everywhere (workflow ids, API paths, audit rows). */
export const customerIdSchema = z
  .string()
  .regex(new RegExp(`^${CUSTOMER_ID_PATTERN}$`), 'expected a slug of a-z, 0-9 and -, e.g. harborview-law');

export const runbookSchema = z
  .strictObject({
    id: customerIdSchema,
    name: z.string().min(1),
    domains: z.array(hostnameSchema).min(1),
    recipients: z.union([z.literal('any'), z.array(mailboxSchema).min(1)]),
    // Without it, the primary hosts are the first domain's MX records with a lower preference number than ours.
    primary: z.array(primaryMxSchema).min(1).optional(),
    contacts: z.array(contactSchema).min(1),
    detection: z.strictObject({ probeInterval: durationSchema, confirmAfter: durationSchema }),
    notify: z.array(notifyStepSchema).min(1),
    instructions: z.strictObject({ default: defaultInstructionSchema }),
    restore: z.strictObject({
      mode: z.enum(['auto', 'approval']),
      ratePerSecond: z.number().int().min(1).max(1000),
    }),
    spam: spamPolicySchema,
    /** Temporary mailboxes (the mailboxes instruction): kept this long after the outage is resolved. */
    mailboxes: z.strictObject({ retention: durationSchema.default('30d') }).optional(),
  })
  .superRefine((rb, ctx) => {
    const domains = new Set(rb.domains);
    rb.domains.forEach((d, i) => {
      if (rb.domains.indexOf(d) !== i)
        ctx.addIssue({ code: 'custom', path: ['domains', i], message: `${d} is listed twice` });
    });
    if (rb.recipients !== 'any') {
      rb.recipients.forEach((r, i) => {
        const domain = r.slice(r.lastIndexOf('@') + 1).toLowerCase();
        if (!domains.has(domain))
          ctx.addIssue({
            code: 'custom',
            path: ['recipients', i],
            message: `${r} is not in one of this runbook's domains (${rb.domains.join(', ')})`,
          });
      });
    }
    if (!rb.primary && rb.domains.length > 1)
      ctx.addIssue({
        code: 'custom',
        path: ['primary'],
        message:
          "a runbook with several domains names its primary hosts: found by DNS, they would be the first domain's MX for all",
      });
    if (durationMs(rb.detection.confirmAfter) < durationMs(rb.detection.probeInterval))
      ctx.addIssue({
        code: 'custom',
        path: ['detection', 'confirmAfter'],
        message: 'must be at least probeInterval, or one failed probe would declare an outage',
      });
  });

export type Runbook = z.output<typeof runbookSchema>;
export type RunbookInput = z.input<typeof runbookSchema>;

/** How long temporary mailboxes stay after the outage is resolved; never shorter than the held mail they copy. */
export const mailboxRetention = (rb: Pick<Runbook, 'mailboxes'>): Duration =>
  rb.mailboxes?.retention ?? '30d';

/** Does this runbook accept mail for the address? Case-insensitive, as every MTA treats domains. */
export function acceptsRecipient(rb: Runbook, address: string): boolean {
  const lower = address.toLowerCase();
  const domain = lower.slice(lower.lastIndexOf('@') + 1);
  if (!rb.domains.includes(domain)) return false;
  return rb.recipients === 'any' || rb.recipients.some((r) => r.toLowerCase() === lower);
}

/** The customer's own servers as people read them: the runbook's hosts, or where DNS will name them. */
export function describePrimary(rb: Pick<Runbook, 'primary' | 'domains'>): string {
  if (rb.primary) return rb.primary.map((p) => `${p.host}:${p.port}`).join(', ');
  return `the MX hosts of ${rb.domains[0]} below ours`;
}

import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { sendNotice } from '../activities/notify';
import type { Config } from '../config';
import { parseOutageId } from '../domain/outage-id';
import type { Runbook } from '../domain/runbook';
import { kickMailboxes } from '../mailbox/doveadm';
import { issueSignInLink, LINK_TTL_MS, resetMailboxPassword } from '../mailbox/sign-in';
import type { Sql } from '../store/db';
import { listMailboxes, mailboxCounts } from '../store/mailboxes';
import { ApiFailure } from './errors';
import { outageIdParamSchema } from './outage-lookup';

// Temporary mailboxes, for operators: who has one and how far they got (provisioned, sign-in handed out, signed
// in), and the hand-out itself: a new password and a one-time web sign-in link, shown once in the reply (only
// hashes are kept), and optionally sent on by SMS (the webhook channel) or to an alternate address outside the
// domains that are down (a failed send is said in the reply, which still holds the sign-in). Every hand-out is audited (who, which mailbox, where the link went; never the secrets).

const secured = { security: [{ bearer: [] }] };

const signInBodySchema = z.object({
  /** Where the link also goes: a phone number through the SMS webhook, or an address that is not down. */
  sendLinkTo: z
    .union([
      z.object({
        sms: z
          .string()
          .regex(/^\+[0-9 ()-]{7,20}$/, 'expected an international number, e.g. "+1 212 555 0142"'),
      }),
      z.object({ email: z.email() }),
    ])
    .optional(),
  note: z.string().max(2000).optional(),
});

export interface MailboxRouteDeps {
  config: Config;
  sql: Sql;
  runbooks: ReadonlyMap<string, Runbook>;
}

export function registerMailboxRoutes(app: FastifyInstance, deps: MailboxRouteDeps): void {
  const { config, sql } = deps;
  const api = app.withTypeProvider<ZodTypeProvider>();
  const customerOf = (id: string) => {
    const runbook = deps.runbooks.get(parseOutageId(id)?.customerId ?? id);
    if (!runbook)
      throw new ApiFailure(
        404,
        'OUTAGE_NOT_FOUND',
        `no customer or outage ${id}; \`mxf outages\` lists them`,
      );
    return runbook;
  };

  api.get(
    '/api/outages/:id/mailboxes',
    {
      config: { role: 'viewer' },
      schema: {
        summary: "The customer's temporary mailboxes: counts, and each person's state and last sign-in",
        tags: ['mailboxes'],
        ...secured,
        params: z.object({ id: outageIdParamSchema }),
      },
    },
    async (req) => {
      const runbook = customerOf(req.params.id);
      const [counts, mailboxes] = await Promise.all([
        mailboxCounts(sql, runbook.id),
        listMailboxes(sql, runbook.id),
      ]);
      return { counts, mailboxes };
    },
  );

  api.post(
    '/api/outages/:id/mailboxes/:address/sign-in',
    {
      config: { role: 'operator', audit: 'mailbox.sign-in-issued' },
      schema: {
        summary:
          'Hand out a sign-in: a new password (the old one stops working) and a one-time web link, shown once',
        description:
          'The reply holds the password and link; nothing but their hashes is stored, so this is the only time they ' +
          'are shown. sendLinkTo also sends the link (never the password) by SMS or to an alternate address.',
        tags: ['mailboxes'],
        ...secured,
        params: z.object({ id: outageIdParamSchema, address: z.email() }),
        body: signInBodySchema,
      },
    },
    async (req, reply) => {
      const runbook = customerOf(req.params.id);
      const address = req.params.address.toLowerCase();
      await openMailboxOf(sql, runbook, address);
      const destination = req.body.sendLinkTo;
      if (destination && 'email' in destination && runbook.domains.includes(domainOf(destination.email)))
        throw new ApiFailure(
          422,
          'LINK_DESTINATION_REFUSED',
          `${destination.email} is in ${runbook.name}'s domains, whose mail servers are down: send the link to a personal address or a phone`,
        );
      const password = await resetMailboxPassword(sql, address);
      // A phone still signed in with the old password is signed out: it must sign in again, with this one.
      const sessionsEnded = await kickMailboxes(config, [address]).then(
        () => true,
        (err) => {
          req.log.warn({ err, address }, 'could not end the old sessions of a mailbox');
          return false;
        },
      );
      const link = `${config.mailbox.web.url}/link/${await issueSignInLink(sql, address)}`;
      const sent = destination ? await sendLink(config, runbook, address, link, destination) : null;
      req.auditNote = { customerId: runbook.id, detail: { mailbox: address, linkSent: sent } };
      void reply.header('cache-control', 'no-store');
      return { ...signInOf(config, address, password, link), sent, sessionsEnded };
    },
  );
}

const domainOf = (a: string) => a.slice(a.lastIndexOf('@') + 1).toLowerCase();

async function openMailboxOf(sql: Sql, runbook: Runbook, address: string) {
  const [row] = await sql<{ open: boolean }[]>`
    select sign_in_allowed and deleted_at is null as open from mailbox
    where address = ${address} and customer_id = ${runbook.id}`;
  if (!row)
    throw new ApiFailure(
      404,
      'MAILBOX_NOT_FOUND',
      `${address} has no temporary mailbox: give the outage the mailboxes instruction first, or check the address`,
    );
  if (!row.open)
    throw new ApiFailure(
      409,
      'MAILBOX_CLOSED',
      `${address}'s temporary mailbox is closed: the outage was resolved`,
    );
}

/** What a person needs to set up a mail app, or to open the web inbox. */
function signInOf(config: Config, address: string, password: string, link: string) {
  const { publicHost, imapPort, submissionPort } = config.mailbox;
  return {
    address,
    username: address,
    password,
    imap: { host: publicHost, port: imapPort, security: 'STARTTLS' },
    submission: { host: publicHost, port: submissionPort, security: 'STARTTLS' },
    web: {
      url: config.mailbox.web.url,
      link,
      linkExpiresAt: new Date(Date.now() + LINK_TTL_MS).toISOString(),
    },
  };
}

async function sendLink(
  config: Config,
  runbook: Runbook,
  address: string,
  link: string,
  to: { sms: string } | { email: string },
): Promise<{ channel: 'sms' | 'email'; to: string; ok: boolean; error?: string }> {
  const text = [
    `Your temporary mailbox ${address} is ready while ${runbook.name}'s mail servers are down.`,
    `Open it in a browser (this link works once, for 72 hours): ${link}`,
  ].join('\n');
  try {
    if ('sms' in to) {
      if (!config.notifyWebhookUrl) throw new Error('no MXF_NOTIFY_WEBHOOK_URL is configured for SMS');
      const res = await fetch(config.notifyWebhookUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          event: 'mailbox.sign-in-link',
          channel: 'sms',
          to: to.sms,
          customerId: runbook.id,
          text,
        }),
        signal: AbortSignal.timeout(15_000),
      });
      await res.body?.cancel();
      if (!res.ok) throw new Error(`the SMS webhook answered ${res.status}`);
    } else {
      await sendNotice(config, [to.email], {
        from: config.notifyFrom,
        subject: 'Your temporary mailbox',
        text,
      });
    }
    return { channel: 'sms' in to ? 'sms' : 'email', to: 'sms' in to ? to.sms : to.email, ok: true };
  } catch (err) {
    // The sign-in is still good and in this reply: the operator can read it out over the phone instead.
    const error = `not sent: ${(err as Error).message}; read the link out, or hand out a new sign-in later`;
    return { channel: 'sms' in to ? 'sms' : 'email', to: 'sms' in to ? to.sms : to.email, ok: false, error };
  }
}

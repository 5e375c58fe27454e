import nodemailer from 'nodemailer';
import type { Config } from '../config';
import { describePrimary, type NotifyChannel, type Runbook } from '../domain/runbook';
import { ourDkimKey } from '../mail/dkim-key';

// Telling people: email to the runbook's contacts, DKIM-signed by our forwarding domain (a notice of an outage is
// mail a spam filter must not lose), and one JSON webhook for the phone/SMS provider or pager (channels webhook
// and sms). The ops call is not sent anywhere: it is a task in the workflow that an operator closes by recording
// the call's outcome.

export interface NotifyInput {
  runbook: Runbook;
  step: number;
  channels: NotifyChannel[];
  heldMessages: number;
  declaredAt: string;
}

export interface ChannelResult {
  channel: NotifyChannel;
  ok: boolean;
  detail: string;
}

export function createNotifyActivities({ config }: { config: Config }) {
  const send = {
    async email(input: NotifyInput): Promise<string> {
      const to = input.runbook.contacts.flatMap((c) => (c.email ? [c.email] : []));
      if (to.length === 0) return 'no contact has an email address';
      const key = ourDkimKey(config);
      // TODO(route): MX routing replaces this; until then the relay, else a local MTA.
      const relay = config.outbound.relay ?? { host: '127.0.0.1', port: 25 };
      const transport = nodemailer.createTransport({
        host: relay.host,
        port: relay.port,
        name: config.hostname,
        secure: false,
        tls: { rejectUnauthorized: false },
        dkim: { domainName: key.domain, keySelector: key.selector, privateKey: key.privateKey },
      });
      try {
        const info = await transport.sendMail({
          from: config.notifyFrom,
          to,
          subject: `[MX Failover] ${input.runbook.name}: your mail servers are not answering; we are holding your mail`,
          text: [
            `Your mail servers (${describePrimary(input.runbook)}) have not answered since ${input.declaredAt}.`,
            `We are holding ${input.heldMessages} message(s) for ${input.runbook.domains.join(', ')}. Nothing is lost.`,
            '',
            'Tell your MX Failover operator what you want: keep holding, forward everything to one mailbox,',
            'redirect to another mail server, or restore when your servers are back.',
            `Unless told otherwise, after ${input.runbook.instructions.default.after} we will: ${input.runbook.instructions.default.action}.`,
          ].join('\n'),
        });
        return `sent to ${info.accepted.length} address(es): ${info.response}`;
      } finally {
        transport.close();
      }
    },

    async webhook(input: NotifyInput, channel: NotifyChannel): Promise<string> {
      if (!config.notifyWebhookUrl) return 'no MXF_NOTIFY_WEBHOOK_URL configured';
      const body = {
        event: 'outage.notify',
        channel,
        step: input.step,
        customerId: input.runbook.id,
        customerName: input.runbook.name,
        domains: input.runbook.domains,
        heldMessages: input.heldMessages,
        declaredAt: input.declaredAt,
        contacts: input.runbook.contacts.map((c) => ({ name: c.name, role: c.role, phone: c.phone ?? null })),
      };
      const res = await fetch(config.notifyWebhookUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(15_000),
      });
      await res.body?.cancel();
      if (!res.ok) throw new Error(`webhook answered ${res.status}`);
      return `webhook answered ${res.status}`;
    },
  };

  return {
    /** One escalation step. Each channel is tried once; the results are recorded, a failure does not stop the rest. */
    async notifyContacts(input: NotifyInput): Promise<ChannelResult[]> {
      const results: ChannelResult[] = [];
      for (const channel of input.channels) {
        if (channel === 'ops-call') continue; // a task in the workflow, not a message
        try {
          const detail = channel === 'email' ? await send.email(input) : await send.webhook(input, channel);
          results.push({ channel, ok: true, detail });
        } catch (err) {
          results.push({ channel, ok: false, detail: (err as Error).message });
        }
      }
      return results;
    },
  };
}

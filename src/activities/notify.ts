import type { Config } from '../config';
import { describePrimary, type NotifyChannel, type Runbook } from '../domain/runbook';
import { ourDkimKey } from '../mail/dkim-key';
import { mailboxDestination, routeTo } from './route';
import { transportFor } from './smtp-send';

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
      const mail = {
        from: config.notifyFrom,
        subject: `[MX Failover] ${input.runbook.name}: your mail servers are not answering; we are holding your mail`,
        text: noticeText(input),
      };
      // One transaction per receiving domain, each by its own route (MX, or the smarthost); every domain is tried.
      const byDomain = new Map<string, string[]>();
      for (const a of to) {
        const domain = a.slice(a.lastIndexOf('@') + 1).toLowerCase();
        byDomain.set(domain, [...(byDomain.get(domain) ?? []), a]);
      }
      const sent = await Promise.allSettled(
        [...byDomain.values()].map((group) => sendNotice(config, group, mail)),
      );
      const failed = sent.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : []));
      const accepted = sent.reduce((n, r) => n + (r.status === 'fulfilled' ? r.value : 0), 0);
      if (accepted === 0) throw new Error(failed.join('; '));
      return `sent to ${accepted} address(es)${failed.length ? `; not to the rest: ${failed.join('; ')}` : ''}`;
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

function noticeText(input: NotifyInput): string {
  return [
    `Your mail servers (${describePrimary(input.runbook)}) have not answered since ${input.declaredAt}.`,
    `We are holding ${input.heldMessages} message(s) for ${input.runbook.domains.join(', ')}. Nothing is lost.`,
    '',
    'Tell your MX Failover operator what you want: keep holding, forward everything to one mailbox,',
    'redirect to another mail server, or restore when your servers are back.',
    `Unless told otherwise, after ${input.runbook.instructions.default.after} we will: ${input.runbook.instructions.default.action}.`,
  ].join('\n');
}

/** One notice to mailboxes of one domain, DKIM-signed, host by host along the route; the count accepted. */
export async function sendNotice(
  config: Config,
  to: string[],
  mail: { from: string; subject: string; text: string },
) {
  const key = ourDkimKey(config);
  const dkim = { domainName: key.domain, keySelector: key.selector, privateKey: key.privateKey };
  let lastError: Error | undefined;
  for (const host of await routeTo(config, mailboxDestination(config, to[0]!))) {
    const transport = transportFor(config, host, false);
    try {
      const info = await transport.sendMail({ ...mail, to, dkim });
      return info.accepted.length;
    } catch (err) {
      lastError = err as Error;
      if ((err as { responseCode?: number }).responseCode) break; // an answer, not a dead host: do not go on
    } finally {
      transport.close();
    }
  }
  throw lastError ?? new Error(`no host for ${to.join(', ')}`);
}

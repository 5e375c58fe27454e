import { createHash, randomBytes, randomInt } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { withTimeout } from '../src/timeout';
import { RawSmtp } from '../test/helpers/smtp-client';

// The fault suite's senders: back-to-back SMTP transactions, one message each, every message with its own
// Message-ID and its own random body. The verdict needs the sender's side of every transaction, so each one is
// kept: what was sent (as the SHA-256 of the bytes the ingest must store), when, and how it ended.

export type Outcome = 'acked' | 'refused' | 'no-reply';

export interface SentMessage {
  messageId: string;
  recipient: string;
  /**
   * SHA-256 of the sender's message as the ingest must hold it: what the receiving SMTP server reads from the
   * DATA phase (dot-stuffing undone, the CRLF before the final dot included), with each bare LF made CRLF.
   */
  sha256: string;
  size: number;
  startedAt: number;
  endedAt: number;
  /** acked: 250 after the final dot; refused: a 4xx anywhere; no-reply: the connection died or went silent. */
  outcome: Outcome;
  /** The last reply, or the error that ended the transaction. */
  reply: string;
  /** From "queued as <id>" in the 250. */
  queueId?: string;
  /** The ingest port it was sent to. */
  port: number;
}

export const LOAD_DOMAIN = 'faults.example';
const SENDER = 'load@sender.example';
/** A sender gives up on a silent server, as real ones do (RFC 5321 says minutes; a minute suffices here). */
const REPLY_TIMEOUT_MS = 60_000;

interface Composed {
  messageId: string;
  recipient: string;
  /** DATA as it goes on the wire, without the final <CRLF>.<CRLF>. */
  wire: Buffer;
  /** What the ingest must store after its Received header. */
  expected: Buffer;
}

/**
 * A plain message with 10 to 100 lines of random text (about 1 to 8 KB), so a truncated, shifted or swapped body
 * cannot match. Every fifth has a line starting with a dot (the sender stuffs it, every hop must unstuff it);
 * every seventh ends its lines with a bare LF, as broken senders do (the ingest must store CRLF).
 */
export function composeMessage(seq: number, sender: number): Composed {
  const messageId = `fault-${sender}-${seq}@load.faults`;
  const recipient = `user${seq % 50}@${LOAD_DOMAIN}`;
  const bareLf = seq % 7 === 3;
  const lines = [
    `From: Load Sender <${SENDER}>`,
    `To: <${recipient}>`,
    `Subject: fault load ${messageId}`,
    `Message-ID: <${messageId}>`,
    `Date: ${new Date().toUTCString()}`,
    '',
    ...Array.from({ length: randomInt(10, 101) }, () => randomBytes(57).toString('base64')),
  ];
  if (seq % 5 === 0 && !bareLf) lines.splice(8, 0, `.${randomBytes(30).toString('base64')}`);
  const stuffed = lines.map((l) => (l.startsWith('.') ? `.${l}` : l));
  return {
    messageId,
    recipient,
    wire: Buffer.from(stuffed.join(bareLf ? '\n' : '\r\n')),
    expected: Buffer.from(`${lines.join('\r\n')}\r\n`),
  };
}

/** One transaction: greeting, EHLO, MAIL, RCPT, DATA, the message; stops at the first reply that is not 2xx/3xx. */
async function transact(port: number, m: Composed): Promise<string> {
  const { client, greeting } = await withTimeout(RawSmtp.open(port), REPLY_TIMEOUT_MS);
  const steps: (string | Buffer)[] = [
    'EHLO client.load.faults\r\n',
    `MAIL FROM:<${SENDER}>\r\n`,
    `RCPT TO:<${m.recipient}>\r\n`,
    'DATA\r\n',
    Buffer.concat([m.wire, Buffer.from('\r\n.\r\n')]),
  ];
  const timer = setTimeout(() => client.destroy(), REPLY_TIMEOUT_MS);
  try {
    let reply = greeting;
    for (const step of steps) {
      if (!/^[23]/.test(reply)) return reply;
      reply = await client.send(step);
    }
    return reply;
  } finally {
    clearTimeout(timer);
    client.close();
  }
}

function outcomeOf(reply: string): { outcome: Outcome; queueId?: string } {
  if (reply.startsWith('250')) return { outcome: 'acked', queueId: /queued as (\w+)/.exec(reply)?.[1] };
  if (reply.startsWith('4')) return { outcome: 'refused' };
  // A 5xx to this load is a bug (the domain is a runbook's, the bytes are clean): stop the suite on it.
  throw new Error(`unexpected reply: ${reply}`);
}

async function sendOne(port: number, seq: number, sender: number): Promise<SentMessage> {
  const m = composeMessage(seq, sender);
  const startedAt = performance.now();
  const kept = {
    messageId: m.messageId,
    recipient: m.recipient,
    sha256: createHash('sha256').update(m.expected).digest('hex'),
    size: m.expected.length,
    startedAt,
    port,
  };
  let reply: string;
  try {
    reply = await transact(port, m);
  } catch (err) {
    return { ...kept, endedAt: performance.now(), outcome: 'no-reply', reply: (err as Error).message };
  }
  return { ...kept, endedAt: performance.now(), ...outcomeOf(reply), reply };
}

export interface Load {
  /** Every transaction so far, finished ones only. */
  sent: SentMessage[];
  stop(): Promise<SentMessage[]>;
}

/** How long a sender leaves alone an MX host whose connection died, as Postfix's host status cache does. */
const HOST_DOWN_MS = 5_000;

/**
 * `senders` back-to-back senders. With several ports (MX hosts of equal preference), each sender takes them in
 * turn, message by message; one whose connection died or was refused leaves that host alone for a while and goes
 * to the next, as an MTA does. Each attempt is its own transaction with its own Message-ID, so the verdict can tell
 * a cut-off attempt from the one after it.
 */
export function startLoad(ports: number | number[], senders: number): Load {
  const hosts = Array.isArray(ports) ? ports : [ports];
  let running = true;
  let seq = 0;
  const sent: SentMessage[] = [];
  const sender = async (s: number) => {
    const downUntil = hosts.map(() => 0);
    let turn = s;
    const nextHost = () => {
      for (let i = 0; i < hosts.length; i++, turn++)
        if (downUntil[turn % hosts.length]! <= performance.now()) break;
      return turn++ % hosts.length;
    };
    while (running) {
      const host = nextHost();
      const m = await sendOne(hosts[host]!, seq++, s);
      sent.push(m);
      if (process.env.FAULTS_DEBUG && m.outcome !== 'acked')
        console.log(`faults: ${m.messageId}: ${m.reply}`);
      // A sender whose connection died backs off a little before it tries again, as MTAs do.
      if (m.outcome === 'no-reply') {
        downUntil[host] = performance.now() + HOST_DOWN_MS;
        await sleep(200);
      }
    }
  };
  const done = Promise.all(Array.from({ length: senders }, (_, s) => sender(s)));
  return {
    sent,
    stop: async () => {
      running = false;
      await done;
      return sent;
    },
  };
}

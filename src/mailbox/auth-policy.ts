import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { Logger } from '../log';
import type { Sql } from '../store/db';
import { MASTER_USER } from './imap';
import { recordFailedSignIn, recordSignIn, signInLockedUntil } from './sign-in';

// Dovecot's authentication policy (auth_policy_server_url, src/stack/dovecot.ts): before each IMAP or submission
// sign-in it asks us (command=allow), after it tells us how it went (command=report). So a phone's sign-in counts
// as "signed in, last seen" in the status like a browser's, and wrong passwords lock a mailbox whichever door they
// come through. Our own services' master sign-ins are neither counted nor limited. On loopback only; Dovecot lets
// sign-ins through when this does not answer (auth_policy_reject_on_fail = no), so it is never a single point of
// failure for people's mail.

interface PolicyRequest {
  login?: string;
  /** Who authenticated: our master user when our services sign in to someone's mailbox. */
  orig?: string;
  success?: boolean;
  policy_reject?: boolean;
}

/** Dovecot's answer format: status 0 allows, -1 refuses (with msg), a positive number delays by that many seconds. */
type PolicyReply = { status: number; msg: string };

export async function decide(sql: Sql, command: string, req: PolicyRequest): Promise<PolicyReply> {
  const login = (req.login ?? '').toLowerCase();
  if (!login || req.orig === MASTER_USER) return { status: 0, msg: '' };
  if (command === 'allow') {
    const until = await signInLockedUntil(sql, login);
    if (until)
      return { status: -1, msg: `Too many wrong passwords: try again after ${until.toISOString()} UTC` };
  } else if (command === 'report' && !req.policy_reject) {
    if (req.success) await recordSignIn(sql, login);
    else await recordFailedSignIn(sql, login);
  }
  return { status: 0, msg: '' };
}

export function startAuthPolicy(
  deps: { sql: Sql; log: Logger },
  port: number,
  host = '127.0.0.1',
): Promise<Server> {
  const server = createServer((req, res) => {
    const command = new URL(req.url ?? '/', 'http://policy').searchParams.get('command') ?? '';
    body(req)
      .then((text) => decide(deps.sql, command, JSON.parse(text || '{}') as PolicyRequest))
      .catch((err) => {
        deps.log.error({ err }, 'auth policy: could not decide; letting the sign-in through');
        return { status: 0, msg: '' };
      })
      .then((reply) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(reply)));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve(server));
  });
}

function body(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      text += chunk;
      if (text.length > 64 * 1024) req.destroy(new Error('policy request too large'));
    });
    req.on('end', () => resolve(text));
    req.on('error', reject);
  });
}

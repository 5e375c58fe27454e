import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../../config';
import type { Logger } from '../../log';
import type { Sql } from '../../store/db';
import type { Guard } from '../guard';
import type { Html } from '../html';
import type { Session } from '../session';

// What every group of routes is given, and the two things each handler does: answer with a page, and know who
// is signed in.

export interface SubmitMessage {
  raw: Buffer;
  envelopeFrom: string;
  recipients: string[];
}

export interface RouteContext {
  config: Config;
  sql: Sql;
  log: Logger;
  guard: Guard;
  submit(mailbox: string, message: SubmitMessage): Promise<{ messageId: string }>;
}

export const sendPage = (reply: FastifyReply, page: Html, status = 200) =>
  reply.code(status).type('text/html; charset=utf-8').send(page.value);

/** The signed-in session: the routes that call this run behind requireSignedIn, which guarantees one. */
export function signedIn(req: FastifyRequest): Session & { address: string } {
  const session = req.webmailSession;
  if (!session?.address) throw new Error('route reached without a signed-in session');
  return session as Session & { address: string };
}

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { mailboxOpen } from '../mailbox/sign-in';
import type { Sql } from '../store/db';
import { SIGN_IN_AGAIN, WebmailError } from './errors';
import { setSecurityHeaders } from './headers';
import { csrfMatches, type Session, SessionStore } from './session';

// Who is asking, checked before anything else runs: the session from the cookie, the CSRF token of every form
// posted, and, on every signed-in request, whether the mailbox is still open (the outage's resolve closes it, and
// a person signed in before that must not read on).

declare module 'fastify' {
  interface FastifyRequest {
    webmailSession?: Session;
  }
}

export interface Guard {
  store: SessionStore;
  /** Starts a session (anonymous before sign-in) and hands its cookie to the browser. */
  startSession(reply: FastifyReply, address?: string): Session;
  endSession(req: FastifyRequest, reply: FastifyReply): void;
  /** An onRequest hook for the routes behind sign-in: runs before a body (an upload) is even read. */
  requireSignedIn(req: FastifyRequest, reply: FastifyReply): Promise<void>;
  /**
   * A preValidation hook, added after the body parsers of its scope: every form we serve carries its session's
   * token, and a post from any other page does not. Checked before the body is validated, so a forged post learns
   * nothing from validation errors.
   */
  checkCsrf(req: FastifyRequest): Promise<void>;
}

/** A form field's value, from a urlencoded body ("a") or a multipart one ({ value: "a" }). */
export function formField(body: unknown, name: string): string | undefined {
  const value = (body as Record<string, unknown> | undefined)?.[name];
  const first = Array.isArray(value) ? value[0] : value;
  if (typeof first === 'string') return first;
  if (first && typeof first === 'object' && (first as { type?: string }).type === 'field') {
    const v = (first as { value: unknown }).value;
    return typeof v === 'string' ? v : undefined;
  }
  return undefined;
}

const SWEEP_MS = 60_000;

export function installGuard(app: FastifyInstance, deps: { sql: Sql; secure: boolean }): Guard {
  const store = new SessionStore();
  // The __Host- prefix makes the browser refuse this cookie from anything but this exact origin over HTTPS.
  const cookie = deps.secure ? '__Host-mxf_webmail' : 'mxf_webmail';
  const cookieOptions = { path: '/', httpOnly: true, sameSite: 'lax' as const, secure: deps.secure };
  const sweeper = setInterval(() => store.sweep(), SWEEP_MS).unref();
  app.addHook('onClose', async () => clearInterval(sweeper));

  app.addHook('onRequest', async (req, reply) => {
    setSecurityHeaders(reply);
    req.webmailSession = store.get(req.cookies[cookie]);
  });
  const guard: Guard = {
    store,
    startSession(reply, address) {
      const session = store.create(address);
      void reply.setCookie(cookie, session.id, cookieOptions);
      return session;
    },
    endSession(req, reply) {
      if (req.webmailSession) store.delete(req.webmailSession.id);
      req.webmailSession = undefined;
      void reply.clearCookie(cookie, cookieOptions);
    },
    async requireSignedIn(req, reply) {
      const address = req.webmailSession?.address;
      if (!address) {
        if (req.method === 'GET') return reply.redirect('/signin', 303);
        throw new WebmailError(
          401,
          'You are signed out',
          'Sign in again, then send it once more.',
          SIGN_IN_AGAIN,
        );
      }
      if (await mailboxOpen(deps.sql, address)) return;
      guard.endSession(req, reply);
      throw mailboxClosed();
    },
    async checkCsrf(req) {
      if (req.method !== 'POST') return;
      const session = req.webmailSession;
      if (!session || !csrfMatches(session, formField(req.body, '_csrf')))
        throw new WebmailError(
          403,
          'This form has expired',
          'The page you sent it from is too old, or was not ours. Go back, reload the page, and send it again.',
          session?.address ? undefined : SIGN_IN_AGAIN,
        );
    },
  };
  return guard;
}

export const mailboxClosed = () =>
  new WebmailError(
    403,
    'This temporary mailbox is closed',
    "Your company's own mail server is back, so this temporary mailbox no longer opens. Your mail is on your own server now; if something is missing, ask your IT contact.",
    SIGN_IN_AGAIN,
  );

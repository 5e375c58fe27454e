import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { checkMailboxPassword, redeemSignInLink, type SignIn } from '../../mailbox/sign-in';
import { SIGN_IN_AGAIN, WebmailError } from '../errors';
import { mailboxClosed } from '../guard';
import { linkPage, signInPage } from '../views/pages';
import { type RouteContext, sendPage } from './context';

// Signing in and out. Every way in ends the same: the session that asked is dropped and a new one is started for
// the mailbox, so an id someone planted in the browser before sign-in is worth nothing after it.

const WRONG_PASSWORD =
  'That address and password do not match. Check both and try again. After 5 wrong tries, sign-in is locked for 15 minutes. Lost your password? Ask your IT contact for a new sign-in link.';
const LOCKED =
  'Too many wrong passwords: sign-in to this mailbox is locked for 15 minutes. Wait and try again, or ask your IT contact for a new sign-in link.';

const signInBody = z.object({ address: z.string().trim().max(320), password: z.string().max(200) });
const linkBody = z.object({ token: z.string().max(200) });

function refusal(result: Exclude<SignIn, { ok: true }>): string | WebmailError {
  if (result.reason === 'closed') return mailboxClosed();
  if (result.reason === 'locked') return LOCKED;
  return WRONG_PASSWORD;
}

export function registerAuthRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  const signInWith = (req: FastifyRequest, reply: FastifyReply, address: string) => {
    ctx.guard.endSession(req, reply);
    ctx.guard.startSession(reply, address);
    return reply.redirect('/', 303);
  };
  const anonymous = (req: FastifyRequest, reply: FastifyReply) =>
    req.webmailSession ?? ctx.guard.startSession(reply);

  r.get('/signin', async (req, reply) => {
    if (req.webmailSession?.address) return reply.redirect('/', 303);
    return sendPage(reply, signInPage(anonymous(req, reply).csrf));
  });

  r.post('/signin', { schema: { body: signInBody } }, async (req, reply) => {
    const { address, password } = req.body;
    const result = await checkMailboxPassword(ctx.sql, address, password);
    if (result.ok) return signInWith(req, reply, result.address);
    const why = refusal(result);
    if (why instanceof WebmailError) throw why;
    const status = result.reason === 'locked' ? 429 : 401;
    return sendPage(reply, signInPage(anonymous(req, reply).csrf, { error: why, address }), status);
  });

  r.get(
    '/link/:token',
    { schema: { params: z.object({ token: z.string().max(200) }) } },
    async (req, reply) => sendPage(reply, linkPage(anonymous(req, reply).csrf, req.params.token)),
  );

  r.post('/link', { schema: { body: linkBody } }, async (req, reply) => {
    const result = await redeemSignInLink(ctx.sql, req.body.token);
    if (result.ok) return signInWith(req, reply, result.address);
    if (result.reason === 'closed') throw mailboxClosed();
    throw new WebmailError(
      403,
      'This sign-in link no longer works',
      'A sign-in link works once, for a few days. Sign in with your password, or ask your IT contact for a new sign-in link.',
      SIGN_IN_AGAIN,
    );
  });

  r.post('/signout', async (req, reply) => {
    ctx.guard.endSession(req, reply);
    return reply.redirect('/signin', 303);
  });
}

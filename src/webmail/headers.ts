import type { FastifyReply } from 'fastify';

// No page of the web inbox runs a script, so the policy allows none at all: a message that slipped something past
// the sanitizer still cannot run it. Images come from us (inline cid: parts) unless the reader asked to load a
// message's remote images, which tells its sender that it was opened and from where. Inline styles stay allowed
// because mail is laid out with style attributes; without scripts, images or fonts from elsewhere, a style can
// change how a message looks but cannot send anything anywhere.

const policy = (remoteImages: boolean) =>
  [
    "default-src 'none'",
    "style-src 'self' 'unsafe-inline'",
    remoteImages ? "img-src 'self' https: http: data:" : "img-src 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
  ].join('; ');

export function setSecurityHeaders(reply: FastifyReply, opts: { remoteImages?: boolean } = {}): void {
  reply.header('content-security-policy', policy(opts.remoteImages === true));
  reply.header('x-frame-options', 'DENY');
  reply.header('x-content-type-options', 'nosniff');
  reply.header('referrer-policy', 'no-referrer');
  // Pages show someone's mail: no shared cache or back-button copy should keep them after sign-out.
  reply.header('cache-control', 'no-store');
}

/** A part of a message (attachment, inline image) is the sender's content, served from our origin: keep it inert. */
export function setDownloadHeaders(reply: FastifyReply): void {
  setSecurityHeaders(reply);
  reply.header('content-security-policy', "default-src 'none'; sandbox; frame-ancestors 'none'");
}

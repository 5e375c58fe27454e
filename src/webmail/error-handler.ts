import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { WebmailError } from './errors';
import { setSecurityHeaders } from './headers';
import { errorPage } from './views/pages';

// Every failure becomes a page that says what happened and what to do, with the signed-in header still there so
// the reader is not lost. Details stay in our log.

const UPLOAD_ERRORS: Record<string, string> = {
  FST_REQ_FILE_TOO_LARGE: 'One of the files is larger than 20 MB.',
  FST_FILES_LIMIT: 'A message can carry at most 10 files.',
  FST_PARTS_LIMIT: 'The form has too many parts.',
  FST_FIELDS_LIMIT: 'The form has too many fields.',
  FST_ERR_CTP_BODY_TOO_LARGE: 'The form is larger than we take.',
};

function toWebmailError(err: Error & { code?: string }, req: FastifyRequest): WebmailError {
  if (err instanceof WebmailError) return err;
  if (hasZodFastifySchemaValidationErrors(err) && err.validationContext === 'body')
    return new WebmailError(
      400,
      'The form was not complete',
      'Go back, fill in every field of the form, and send it again.',
    );
  if (hasZodFastifySchemaValidationErrors(err))
    return new WebmailError(
      404,
      'Page not found',
      'This address is not a page of your mailbox. Use the links on the page instead of typing one.',
    );
  const upload = err.code ? UPLOAD_ERRORS[err.code] : undefined;
  if (upload)
    return new WebmailError(
      413,
      'Your message was not sent',
      `${upload} Go back, remove or shrink what you attached (or share large files another way), and send it again.`,
    );
  const status = (err as { statusCode?: number }).statusCode ?? 500;
  if (status >= 400 && status < 500)
    return new WebmailError(
      400,
      'That request could not be read',
      'Go back, reload the page, and try again from there.',
    );
  req.log.error({ err }, 'web inbox request failed');
  return new WebmailError(
    500,
    'Something went wrong on our side',
    'Your request did not go through. Try again in a minute; if it keeps happening, tell your IT contact.',
  );
}

function send(req: FastifyRequest, reply: FastifyReply, error: WebmailError) {
  const session = req.webmailSession;
  const chrome = session?.address ? { address: session.address, csrf: session.csrf } : undefined;
  // A download that failed midway may have set its own headers already (attachment, a sandboxing CSP).
  reply.removeHeader('content-disposition');
  setSecurityHeaders(reply);
  return reply
    .code(error.statusCode)
    .type('text/html; charset=utf-8')
    .send(errorPage(error.title, error.message, error.next, chrome).value);
}

export function registerErrorPages(app: FastifyInstance): void {
  app.setNotFoundHandler((req, reply) =>
    send(
      req,
      reply,
      new WebmailError(
        404,
        'Page not found',
        'This address is not a page of your mailbox. Use the links on the page instead of typing one.',
      ),
    ),
  );
  app.setErrorHandler((err: Error & { code?: string }, req, reply) =>
    send(req, reply, toWebmailError(err, req)),
  );
}

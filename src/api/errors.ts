import type { FastifyInstance } from 'fastify';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { z } from 'zod';

// API errors are JSON with a stable code an operator's script can match on, and a message a person can act on.
// No stack trace or internal detail reaches a client: a 500 says where to look (the API's log). Every code listed
// here is produced somewhere; a code nothing sends only misleads the scripts written against it.

export const errorCodes = [
  'INVALID_REQUEST', // 400: the body, query or path does not match the schema; `issues` says where
  'UNAUTHENTICATED', // 401: no bearer token, or one that is unknown or revoked
  'FORBIDDEN', // 403: the token's role may not do this
  'NOT_FOUND', // 404: no such route
  'CUSTOMER_NOT_FOUND',
  'OUTAGE_NOT_FOUND',
  'MESSAGE_NOT_FOUND',
  'MAILBOX_NOT_FOUND', // 404: no temporary mailbox with that address for this customer
  'MAILBOX_CLOSED', // 409: the outage was resolved; its temporary mailboxes take no sign-in
  'LINK_DESTINATION_REFUSED', // 422: a sign-in link may not go to a mailbox in the domains that are down
  'WORKFLOW_REFUSED', // 409: the outage refused the action in its current state; the message says why
  'NOT_QUARANTINED', // 409: a release of a message the filter passed (or has not scored): it is not held back
  'MESSAGE_NOT_HELD', // 409: the message was delivered already (or refused for good); there is nothing to act on
  'QUARANTINE_NOT_REVIEWED', // 409: resolve before an operator listed the quarantined mail that arrived lately
  'ROUTE_UNUSABLE', // 422: the instruction's destination takes no mail (null MX, no such domain) or would loop back to us
  'BODY_TOO_LARGE', // 413
  'MESSAGE_TOO_LARGE_TO_PARSE', // 413: read it with /raw instead
  'UNSUPPORTED_MEDIA_TYPE', // 415
  'WORKFLOW_UNAVAILABLE', // 503: Temporal or the worker did not answer in time
  'PARSE_TIMEOUT', // 503: the message took too long to parse; read it with /raw
  'INTERNAL', // 500
] as const;
export type ErrorCode = (typeof errorCodes)[number];

export const apiErrorSchema = z
  .object({
    error: z.object({
      code: z.enum(errorCodes),
      message: z.string(),
      issues: z.array(z.object({ path: z.string(), message: z.string() })).optional(),
    }),
  })
  .meta({ id: 'ApiError', description: 'Every error: a stable code, and a message that says what to do' });
export type ApiError = z.infer<typeof apiErrorSchema>;

/** Thrown by handlers; the error handler turns it into the JSON error. */
export class ApiFailure extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export function apiError(code: ErrorCode, message: string, issues?: ApiError['error']['issues']): ApiError {
  return { error: { code, message, ...(issues ? { issues } : {}) } };
}

// Fastify's own errors (body parsing, limits) by their code, with what the client should do about them.
const FASTIFY_ERRORS: Record<string, [number, ErrorCode, string]> = {
  FST_ERR_CTP_BODY_TOO_LARGE: [
    413,
    'BODY_TOO_LARGE',
    'the request body is too large; requests are small JSON',
  ],
  FST_ERR_CTP_INVALID_MEDIA_TYPE: [
    415,
    'UNSUPPORTED_MEDIA_TYPE',
    'send the body as JSON with Content-Type: application/json',
  ],
  FST_ERR_CTP_EMPTY_JSON_BODY: [400, 'INVALID_REQUEST', 'the JSON body is empty; send {} at least'],
  FST_ERR_CTP_INVALID_JSON_BODY: [400, 'INVALID_REQUEST', 'the body is not valid JSON'],
};

export function registerErrorHandlers(app: FastifyInstance): void {
  app.setNotFoundHandler((req, reply) => {
    void reply
      .code(404)
      .send(apiError('NOT_FOUND', `no route ${req.method} ${req.url}; the API is described at /docs`));
  });
  app.setErrorHandler((err: Error & { statusCode?: number; code?: string }, req, reply) => {
    if (err instanceof ApiFailure) return reply.code(err.statusCode).send(apiError(err.code, err.message));
    if (hasZodFastifySchemaValidationErrors(err)) {
      const issues = err.validation.map((v) => ({
        path: [err.validationContext ?? 'body', ...v.instancePath.split('/')].filter(Boolean).join('.'),
        message: v.message ?? 'invalid',
      }));
      const summary = issues.map((i) => `${i.path}: ${i.message}`).join('; ');
      return reply.code(400).send(apiError('INVALID_REQUEST', `invalid request: ${summary}`, issues));
    }
    const known = err.code ? FASTIFY_ERRORS[err.code] : undefined;
    if (known) return reply.code(known[0]).send(apiError(known[1], known[2]));
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500)
      return reply.code(400).send(apiError('INVALID_REQUEST', err.message));
    req.log.error({ err }, 'request failed');
    return reply.code(500).send(apiError('INTERNAL', 'internal error; the API log has the details'));
  });
}

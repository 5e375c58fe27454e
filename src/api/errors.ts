import type { FastifyInstance } from 'fastify';

// API errors are JSON with a stable code an operator's script can match on, and a message a person can act on.
export interface ApiError {
  error: { code: string; message: string };
}

export function apiError(code: string, message: string): ApiError {
  return { error: { code, message } };
}

export function registerErrorHandlers(app: FastifyInstance): void {
  app.setNotFoundHandler((req, reply) => {
    void reply
      .code(404)
      .send(apiError('NOT_FOUND', `no route ${req.method} ${req.url}; see README.md for the API`));
  });
  app.setErrorHandler((err: { statusCode?: number; validation?: unknown; message: string }, req, reply) => {
    if (err.validation) return reply.code(400).send(apiError('INVALID_REQUEST', err.message));
    const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500;
    if (status === 500) req.log.error({ err }, 'request failed');
    return reply
      .code(status)
      .send(
        apiError(
          status === 500 ? 'INTERNAL' : 'BAD_REQUEST',
          status === 500 ? 'internal error; see the API log' : err.message,
        ),
      );
  });
}

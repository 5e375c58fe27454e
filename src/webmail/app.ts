import cookie from '@fastify/cookie';
import formbody from '@fastify/formbody';
import multipart from '@fastify/multipart';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { Config } from '../config';
import type { Logger } from '../log';
import type { Sql } from '../store/db';
import { registerErrorPages } from './error-handler';
import { installGuard } from './guard';
import { registerAuthRoutes } from './routes/auth';
import { registerComposeRoutes } from './routes/compose';
import type { RouteContext, SubmitMessage } from './routes/context';
import { registerExportRoutes } from './routes/export';
import { registerFolderRoutes } from './routes/folders';
import { registerMessageRoutes } from './routes/message';

// The web inbox: temporary mailboxes for people who have only a browser. Server-rendered pages, no script at all,
// every read through IMAP as the person's own mail app would (so both see the same flags and folders), and
// sending handed to `submit`, which files the Sent copy and queues the message on our outbound path.

export interface WebmailDeps {
  config: Config;
  sql: Sql;
  log: Logger;
  /**
   * Sends a message written in the web inbox from `mailbox` (the signed-in address). Resolves once it is stored and
   * queued; the implementation also files the copy in Sent. Throws an Error with a user-readable message when refused.
   */
  submit(mailbox: string, message: SubmitMessage): Promise<{ messageId: string }>;
}

/** Forms are small; the compose form's files are bounded by multipart's own limits below. */
const FORM_LIMIT_BYTES = 1024 * 1024;
const FILE_LIMIT_BYTES = 20 * 1024 * 1024;

export async function buildWebmail(deps: WebmailDeps): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: deps.log as FastifyBaseLogger,
    bodyLimit: FORM_LIMIT_BYTES,
    exposeHeadRoutes: false,
    routerOptions: { maxParamLength: 1000 },
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  await app.register(cookie);
  await app.register(formbody, { bodyLimit: FORM_LIMIT_BYTES });
  registerErrorPages(app);
  const secure = deps.config.mailbox.web.url.startsWith('https:');
  const guard = installGuard(app, { sql: deps.sql, secure });
  const ctx: RouteContext = { ...deps, guard };
  await app.register(async (signIn) => {
    signIn.addHook('preValidation', guard.checkCsrf);
    registerAuthRoutes(signIn, ctx);
  });
  await app.register(async (signedIn) => {
    signedIn.addHook('onRequest', guard.requireSignedIn);
    // Uploads only here, behind sign-in: nobody else gets to make us hold files in memory. Its preValidation hook
    // parses the form, so it comes before the CSRF check that reads it.
    await signedIn.register(multipart, {
      attachFieldsToBody: true,
      limits: { fileSize: FILE_LIMIT_BYTES, files: 10, fields: 20, fieldSize: FORM_LIMIT_BYTES, parts: 40 },
    });
    signedIn.addHook('preValidation', guard.checkCsrf);
    registerFolderRoutes(signedIn, ctx);
    registerMessageRoutes(signedIn, ctx);
    registerComposeRoutes(signedIn, ctx);
    registerExportRoutes(signedIn, ctx);
  });
  await app.ready();
  return app;
}

import type { Client } from '@temporalio/client';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Config } from '../config';
import type { SenderAuth } from '../domain/spam';
import type { Sql } from '../store/db';
import {
  findMessage,
  listOutageMessages,
  type MessageRow,
  type StoredMessage,
} from '../store/held-mail-queries';
import { type ObjectStore, readBody } from '../store/objects';
import { ApiFailure } from './errors';
import { assertParsable, authView, parseForReading, type SpamView, spamView } from './message-view';
import { findOutage, outageIdParamSchema, outageState } from './outage-lookup';
import { pageSchema } from './paging';

export const messageListQuerySchema = z.object({
  recipient: z.string().max(320).optional(),
  sender: z.string().max(320).optional(),
  status: z.enum(['held', 'delivered', 'failed']).optional(),
  since: z.iso.datetime({ offset: true }).optional(),
  until: z.iso.datetime({ offset: true }).optional(),
  ...pageSchema.shape,
});

const messageIdParams = z.object({
  id: z.string().regex(/^\d{1,18}$/, 'expected a message id, as `mxf messages list` shows it'),
});

export function registerMessageRoutes(
  app: FastifyInstance,
  deps: { sql: Sql; client: Client; objects: ObjectStore; config: Config },
): void {
  const { sql, client, objects, config } = deps;
  const api = app.withTypeProvider<ZodTypeProvider>();

  api.get(
    '/api/outages/:id/messages',
    {
      config: { role: 'viewer' },
      schema: {
        summary:
          "An outage's messages, newest first: what is held now and what it delivered, with each recipient's status",
        tags: ['messages'],
        security: [{ bearer: [] }],
        params: z.object({ id: outageIdParamSchema }),
        querystring: messageListQuerySchema,
      },
    },
    async (req) => {
      const found = await findOutage(client, req.params.id);
      const state = await outageState(client, found, req.params.id);
      const q = req.query;
      const messages = await listOutageMessages(sql, {
        customerId: state.customerId,
        includeHeld: found.running,
        window: {
          from: new Date(state.startedAt ?? 0),
          to: state.resolvedAt ? new Date(state.resolvedAt) : new Date(Date.now() + 60_000),
        },
        recipient: q.recipient,
        sender: q.sender,
        status: q.status,
        since: q.since ? new Date(q.since) : undefined,
        until: q.until ? new Date(q.until) : undefined,
        cursor: q.cursor,
        limit: q.limit,
      });
      return { messages, nextCursor: messages.length === q.limit ? messages.at(-1)!.id : null };
    },
  );

  async function storedMessage(id: string, req: FastifyRequest): Promise<StoredMessage> {
    const message = await findMessage(sql, id);
    if (!message)
      throw new ApiFailure(
        404,
        'MESSAGE_NOT_FOUND',
        `no held message ${id}; \`mxf messages list <outage>\` shows them`,
      );
    req.auditNote = {
      customerId: message.recipients[0]?.customerId,
      detail: { queueId: message.queueId },
    };
    return message;
  }

  api.get(
    '/api/messages/:id',
    {
      config: { role: 'operator', audit: 'message.read' },
      schema: {
        summary:
          'One held message: envelope, spam score and sender authentication, headers, text, sanitized HTML and the attachment list',
        description:
          'Parsed on demand, with a size cap and a time cap; past them, read it with /raw. `spam.state` is the ' +
          "operator's review when there is one, else the filter's verdict (unscored until scored); `auth` is null " +
          'until scored. Every read is audited.',
        tags: ['messages'],
        security: [{ bearer: [] }],
        params: messageIdParams,
      },
    },
    async (req) => {
      const message = await storedMessage(req.params.id, req);
      assertParsable(message.sizeBytes); // before reading: a 50 MB body is never loaded to be refused
      const body = await readBody(objects, config.s3.bucket, {
        objectKey: message.objectKey,
        offset: message.bodyOffset,
        length: message.sizeBytes,
      });
      const { objectKey: _key, bodyOffset: _offset, spam, ...envelope } = message;
      const detail: MessageDetail = {
        ...envelope,
        spam: spamView(spam),
        auth: authView(spam),
        content: await parseForReading(body, message.sizeBytes),
      };
      return detail;
    },
  );

  api.get(
    '/api/messages/:id/raw',
    {
      config: { role: 'operator', audit: 'message.raw' },
      schema: {
        summary: 'One held message exactly as accepted, as message/rfc822. Every read is audited.',
        tags: ['messages'],
        security: [{ bearer: [] }],
        params: messageIdParams,
      },
    },
    async (req, reply) => {
      const message = await storedMessage(req.params.id, req);
      const stream = await objects.getPartialObject(
        config.s3.bucket,
        message.objectKey,
        message.bodyOffset,
        message.sizeBytes,
      );
      return reply
        .type('message/rfc822')
        .header('content-length', message.sizeBytes)
        .header(
          'content-disposition',
          `attachment; filename="${message.queueId.replace(/[^\w.-]/g, '_')}.eml"`,
        )
        .send(stream);
    },
  );
}

export type MessageDetail = Omit<StoredMessage, 'objectKey' | 'bodyOffset' | 'spam'> & {
  spam: SpamView;
  auth: SenderAuth | null;
  content: Awaited<ReturnType<typeof parseForReading>>;
};
export interface MessagePage {
  messages: MessageRow[];
  nextCursor: string | null;
}

import type { FastifyInstance, FastifyReply } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Attachment } from 'mailparser';
import { z } from 'zod';
import { messageNotFound } from '../errors';
import { setDownloadHeaders, setSecurityHeaders } from '../headers';
import { useMailbox } from '../imap';
import { inFolder, listFolders, messageSource, requireFolder, setSeen } from '../mail-store';
import {
  attachmentAt,
  attachmentsOf,
  bodyOf,
  contentDisposition,
  parseMail,
  partByCid,
  safeContentType,
} from '../reading';
import { folderHref } from '../views/layout';
import { messageHref } from '../views/list';
import { messagePage } from '../views/message';
import { type RouteContext, sendPage, signedIn } from './context';

// Reading one message, its parts, its source; marking it unread again.

const messageParams = z.object({
  folder: z.string().min(1).max(500),
  uid: z.coerce.number().int().min(1).max(4_294_967_295),
});

/** The message's bytes from its folder, for one request. */
async function source(ctx: RouteContext, address: string, folder: string, uid: number) {
  return useMailbox(ctx, address, (imap) => inFolder(imap, folder, () => messageSource(imap, uid)));
}

function sendPart(reply: FastifyReply, part: Attachment, disposition: 'attachment' | 'inline') {
  setDownloadHeaders(reply);
  if (disposition === 'attachment')
    reply.header('content-disposition', contentDisposition(part.filename || 'attachment'));
  return reply.type(safeContentType(part.contentType)).send(part.content);
}

export function registerMessageRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.get(
    '/folder/:folder/:uid',
    { schema: { params: messageParams, querystring: z.object({ images: z.literal('1').optional() }) } },
    async (req, reply) => {
      const session = signedIn(req);
      const { folder: path, uid } = req.params;
      const { raw, folders } = await useMailbox(ctx, session.address, async (imap) => {
        const found = await inFolder(imap, path, async () => {
          const m = await messageSource(imap, uid);
          // Opening it here is reading it, as in any mail app: the phone's inbox shows it read too.
          await setSeen(imap, uid, true);
          return m;
        });
        return { raw: found.source, folders: await listFolders(imap) };
      });
      const folder = requireFolder(folders, path);
      const parsed = await parseMail(raw);
      const remoteImages = req.query.images === '1';
      const base = messageHref(path, uid);
      const body = bodyOf(parsed, {
        remoteImages,
        cidUrl: (cid) => `${base}/cid/${encodeURIComponent(cid)}`,
      });
      if (remoteImages) setSecurityHeaders(reply, { remoteImages: true });
      const chrome = { address: session.address, csrf: session.csrf, folders, current: path };
      return sendPage(
        reply,
        messagePage({ chrome, folder, uid, parsed, body, attachments: attachmentsOf(parsed) }),
      );
    },
  );

  r.get(
    '/folder/:folder/:uid/attachment/:index',
    { schema: { params: messageParams.extend({ index: z.coerce.number().int().min(0).max(10_000) }) } },
    async (req, reply) => {
      const { folder, uid, index } = req.params;
      const parsed = await parseMail((await source(ctx, signedIn(req).address, folder, uid)).source);
      return sendPart(reply, attachmentAt(parsed, index), 'attachment');
    },
  );

  // A picture inside an HTML message; anything but an image is not served inline.
  r.get(
    '/folder/:folder/:uid/cid/:cid',
    { schema: { params: messageParams.extend({ cid: z.string().min(1).max(1000) }) } },
    async (req, reply) => {
      const { folder, uid, cid } = req.params;
      const parsed = await parseMail((await source(ctx, signedIn(req).address, folder, uid)).source);
      const part = partByCid(parsed, cid);
      if (!part.contentType?.startsWith('image/')) throw messageNotFound();
      return sendPart(reply, part, 'inline');
    },
  );

  r.get('/folder/:folder/:uid/eml', { schema: { params: messageParams } }, async (req, reply) => {
    const { folder, uid } = req.params;
    const found = await source(ctx, signedIn(req).address, folder, uid);
    const name = `${found.subject.replace(/[\\/:*?"<>|\r\n]+/g, ' ').trim() || `message-${uid}`}.eml`.slice(
      -120,
    );
    setDownloadHeaders(reply);
    reply.header('content-disposition', contentDisposition(name));
    return reply.type('message/rfc822').send(found.source);
  });

  r.post('/folder/:folder/:uid/unread', { schema: { params: messageParams } }, async (req, reply) => {
    const { folder, uid } = req.params;
    await useMailbox(ctx, signedIn(req).address, (imap) =>
      inFolder(imap, folder, () => setSeen(imap, uid, false)),
    );
    return reply.redirect(`${folderHref(folder)}?notice=unread`, 303);
  });
}

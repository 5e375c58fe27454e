import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { useMailbox } from '../imap';
import { inFolder, listFolders, listMessages, requireFolder } from '../mail-store';
import { folderHref } from '../views/layout';
import { listPage } from '../views/list';
import { type RouteContext, sendPage, signedIn } from './context';

// The folder list and the message list with its search.

// Fixed sentences by key: a notice in the address bar must not be a place to write text onto our page.
const NOTICES = {
  sent: 'Your message is on its way. A copy is in Sent.',
  unread: 'Marked as unread.',
} as const;

const listQuery = z.object({
  page: z.coerce.number().int().min(1).max(100_000).default(1),
  q: z.string().trim().max(200).optional(),
  in: z.enum(['all', 'from', 'subject', 'body']).default('all'),
  notice: z.enum(['sent', 'unread']).optional(),
});

export function registerFolderRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const r = app.withTypeProvider<ZodTypeProvider>();

  r.get('/', async (_req, reply) => reply.redirect(folderHref('INBOX'), 303));

  r.get(
    '/folder/:folder',
    { schema: { params: z.object({ folder: z.string().min(1).max(500) }), querystring: listQuery } },
    async (req, reply) => {
      const session = signedIn(req);
      const query = { page: req.query.page, q: req.query.q || undefined, field: req.query.in };
      const view = await useMailbox(ctx, session.address, async (imap) => {
        const folders = await listFolders(imap);
        const folder = requireFolder(folders, req.params.folder);
        const result = await inFolder(imap, folder.path, () => listMessages(imap, query));
        const chrome = { address: session.address, csrf: session.csrf, folders, current: folder.path };
        return { chrome, folder, query, result };
      });
      const notice = req.query.notice ? NOTICES[req.query.notice] : undefined;
      return sendPage(reply, listPage({ ...view, notice }));
    },
  );
}

import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { ImapFlow } from 'imapflow';
import type { Logger } from '../../log';
import { setDownloadHeaders } from '../headers';
import { closeMailbox, openMailbox } from '../imap';
import { listFolders } from '../mail-store';
import { mboxrdEntry } from '../mbox';
import { contentDisposition } from '../reading';
import { type RouteContext, signedIn } from './context';

// The whole mailbox, every folder, as one mbox file: what people keep when the temporary mailbox goes away. It is
// streamed a message at a time, so a mailbox of any size costs one message of memory.

/** Takes over `imap` and signs it out when the download ends, completed, failed or abandoned by the browser. */
async function* mboxOf(imap: ImapFlow, log: Logger): AsyncGenerator<Buffer> {
  try {
    for (const folder of await listFolders(imap)) {
      const lock = await imap.getMailboxLock(folder.path);
      try {
        if (!imap.mailbox || imap.mailbox.exists === 0) continue;
        for await (const m of imap.fetch('1:*', { source: true, internalDate: true })) {
          if (!m.source) continue;
          const date = m.internalDate ? new Date(m.internalDate) : new Date(0);
          yield mboxrdEntry({ source: m.source, date, folder: folder.path });
        }
      } finally {
        lock.release();
      }
    }
  } catch (err) {
    // Headers are gone already: the browser sees a failed download, and we say why here.
    log.error({ err }, 'web inbox: mbox export failed midway');
    throw err;
  } finally {
    await closeMailbox(imap);
  }
}

export function registerExportRoutes(app: FastifyInstance, ctx: RouteContext): void {
  app.get('/export.mbox', async (req, reply) => {
    const { address } = signedIn(req);
    // Signed in before the first byte, so a mail server that is down is an error page, not a broken file.
    const imap = await openMailbox(ctx, address);
    const day = new Date().toISOString().slice(0, 10);
    setDownloadHeaders(reply);
    reply.header('content-disposition', contentDisposition(`${address}-${day}.mbox`));
    return reply.type('application/mbox').send(Readable.from(mboxOf(imap, ctx.log)));
  });
}

import type { MultipartFile } from '@fastify/multipart';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { buildMessage, type Draft, parseAddresses, replyDraft, type Upload } from '../compose-message';
import { WebmailError } from '../errors';
import { formField } from '../guard';
import { useMailbox } from '../imap';
import { inFolder, listFolders, messageSource } from '../mail-store';
import { attachmentAt, attachmentsOf, parseMail } from '../reading';
import type { Session } from '../session';
import { composePage } from '../views/compose';
import { type RouteContext, sendPage, signedIn } from './context';

// Writing: a new message, a reply, a reply to all, a forward. A message that is refused comes back in its form
// with the reason, so nothing written is lost (files must be attached again: browsers never refill a file field).

/** What one message may carry in attachments together, about what most mail servers take. */
export const MAX_ATTACHMENTS_BYTES = 25 * 1024 * 1024;

const composeQuery = z.object({
  mode: z.enum(['reply', 'all', 'forward']).optional(),
  folder: z.string().min(1).max(500).optional(),
  uid: z.coerce.number().int().min(1).optional(),
  /** From a mailto: link in a message. */
  to: z.string().max(2000).optional(),
});

type Signed = Session & { address: string };

function draftFrom(body: unknown): Draft {
  const get = (name: string) => formField(body, name) ?? '';
  return {
    to: get('to'),
    cc: get('cc'),
    bcc: get('bcc'),
    subject: get('subject'),
    text: get('text'),
    inReplyTo: get('inReplyTo') || undefined,
    references: get('references') || undefined,
  };
}

async function uploadsFrom(body: unknown): Promise<Upload[]> {
  const value = (body as Record<string, unknown> | undefined)?.attachments;
  const files = [value ?? []].flat() as MultipartFile[];
  const uploads: Upload[] = [];
  for (const file of files.filter((f) => f?.type === 'file' && f.filename)) {
    const content = await file.toBuffer();
    uploads.push({ filename: file.filename, contentType: file.mimetype, content });
  }
  return uploads;
}

/** The original's attachments, for a forward: read again from the mailbox, never taken from the form. */
async function forwardedUploads(ctx: RouteContext, address: string, body: unknown): Promise<Upload[]> {
  const folder = formField(body, 'forwardFolder');
  const uid = Number(formField(body, 'forwardUid'));
  if (!folder || !Number.isInteger(uid) || uid < 1) return [];
  const { source } = await useMailbox(ctx, address, (imap) =>
    inFolder(imap, folder, () => messageSource(imap, uid)),
  );
  const parsed = await parseMail(source);
  return attachmentsOf(parsed).map((a) => {
    const part = attachmentAt(parsed, a.index);
    return { filename: a.filename, contentType: a.contentType, content: part.content };
  });
}

/** What is wrong with the addresses, said so a person can fix it; undefined when they will do. */
function recipientProblem(draft: Draft): string | undefined {
  const fields = [draft.to, draft.cc, draft.bcc].map(parseAddresses);
  const bad = fields.flatMap((f) => f.bad);
  if (bad.length)
    return `These are not email addresses: ${bad.join(', ')}. Write each one as name@example.com, separated by commas.`;
  if (!fields.some((f) => f.ok.length)) return 'Add at least one address to send it to.';
  return undefined;
}

async function composeForm(ctx: RouteContext, session: Signed, query: z.infer<typeof composeQuery>) {
  return useMailbox(ctx, session.address, async (imap) => {
    const chrome = { address: session.address, csrf: session.csrf, folders: await listFolders(imap) };
    const { mode, folder, uid } = query;
    if (!mode || !folder || !uid)
      return { chrome, draft: { to: query.to ?? '', cc: '', bcc: '', subject: '', text: '' } };
    const { source } = await inFolder(imap, folder, () => messageSource(imap, uid));
    const parsed = await parseMail(source);
    const draft = replyDraft(parsed, mode, session.address);
    const forward = mode === 'forward' ? { folder, uid, attachments: attachmentsOf(parsed) } : undefined;
    return { chrome, draft, forward };
  });
}

async function send(ctx: RouteContext, req: FastifyRequest, reply: FastifyReply) {
  const session = signedIn(req);
  const draft = draftFrom(req.body);
  const chrome = { address: session.address, csrf: session.csrf };
  const refuse = (error: string) => sendPage(reply, composePage({ chrome, draft, error }), 422);
  const problem = recipientProblem(draft);
  if (problem) return refuse(`${problem} Then attach your files again, if any.`);
  const uploads = [
    ...(await uploadsFrom(req.body)),
    ...(await forwardedUploads(ctx, session.address, req.body)),
  ];
  if (uploads.reduce((n, u) => n + u.content.length, 0) > MAX_ATTACHMENTS_BYTES)
    return refuse(
      'The attachments are more than 25 MB together. Attach fewer or smaller files, or share them another way.',
    );
  const built = await buildMessage(session.address, draft, uploads);
  try {
    await ctx.submit(session.address, {
      raw: built.raw,
      envelopeFrom: session.address,
      recipients: built.recipients,
    });
  } catch (err) {
    req.log.warn({ err }, 'web inbox: message refused');
    const reason = (err as Error).message.replace(/[.\s]+$/, '');
    return refuse(`Your message was not sent: ${reason}. Attach your files again, if any.`);
  }
  return reply.redirect('/folder/INBOX?notice=sent', 303);
}

export function registerComposeRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const r = app.withTypeProvider<ZodTypeProvider>();
  r.get('/compose', { schema: { querystring: composeQuery } }, async (req, reply) => {
    const view = await composeForm(ctx, signedIn(req), req.query);
    return sendPage(reply, composePage(view));
  });
  r.post('/compose', async (req, reply) => {
    if (!req.isMultipart())
      throw new WebmailError(
        400,
        'The form was not complete',
        'Go back, reload the page, and send it again.',
      );
    return send(ctx, req, reply);
  });
}

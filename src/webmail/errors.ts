// What goes wrong in the web inbox, said to a person: what happened, and what to do about it. The reader is
// someone whose company's mail is down, on whatever device they have; no codes, no stack traces.

export class WebmailError extends Error {
  constructor(
    readonly statusCode: number,
    readonly title: string,
    message: string,
    /** Where the page's one button leads: back to the inbox by default, or to sign-in. */
    readonly next: { href: string; label: string } = { href: '/', label: 'Back to your inbox' },
  ) {
    super(message);
  }
}

export const SIGN_IN_AGAIN = { href: '/signin', label: 'Sign in' };

export const messageNotFound = () =>
  new WebmailError(
    404,
    'Message not found',
    'This message is no longer in this folder: it may have been moved or deleted from another device. Go back to the folder and open it from the list.',
  );

export const folderNotFound = () =>
  new WebmailError(
    404,
    'Folder not found',
    'There is no folder of that name in your mailbox (it may have been renamed from another device). Pick one from the list on the left.',
  );

export const mailServerDown = () =>
  new WebmailError(
    503,
    'Your mail could not be reached',
    'The mail server did not answer just now. Wait a minute and reload the page; if it keeps happening, tell your IT contact.',
  );

import { SMTPConnection } from 'smtp-server/lib/smtp-connection';

// SMTP replies with the enhanced status code we choose. smtp-server derives the enhanced code from the reply code
// alone (550 always becomes 5.1.1), so "relaying denied" could not say 5.7.1. Replies built here carry their
// enhanced code at the start of the text; the patch below sends it as the enhanced code instead of adding one.

export type SmtpReply = Error & { responseCode: number };

export function smtpReply(code: number, enhanced: string, text: string): SmtpReply {
  return Object.assign(new Error(`${enhanced} ${text}`), { responseCode: code });
}

export const replies = {
  relayDenied: () =>
    smtpReply(550, '5.7.1', 'Relaying denied: this server is not a mail exchanger for that domain'),
  unknownRecipient: () => smtpReply(550, '5.1.1', 'No such recipient here'),
  addressTrick: () =>
    smtpReply(550, '5.7.1', 'Relaying denied: %, !, @ and source routes in the local part are not accepted'),
  tooManyFromYou: () => smtpReply(421, '4.7.0', 'Too many connections from your address; try again later'),
  bareCr: () =>
    smtpReply(
      550,
      '5.6.0',
      'Message refused: bare CR in the data; lines must end with CRLF (RFC 5321 2.3.8)',
    ),
  nul: () => smtpReply(550, '5.6.0', 'Message refused: NUL byte in the data (RFC 5321 2.3.8)'),
  oversize: (limit: number) => smtpReply(552, '5.3.4', `Message exceeds the maximum size of ${limit} bytes`),
  localError: () =>
    smtpReply(451, '4.3.0', 'Local error in processing; the message was not stored, please try again later'),
};

const ENHANCED_AT_START = /^([245])\.\d{1,3}\.\d{1,3} /;
type Send = (this: unknown, code: number, data?: unknown, context?: unknown) => unknown;
const proto = SMTPConnection.prototype as unknown as { send: Send; __mxfPatched?: boolean };
if (!proto.__mxfPatched) {
  const send = proto.send;
  proto.send = function (code, data, context) {
    const match = typeof data === 'string' && ENHANCED_AT_START.exec(data);
    // context false tells smtp-server to add no enhanced code of its own; ours stays at the start of the text.
    if (match && match[1] === String(code)[0]) return send.call(this, code, data, false);
    return send.call(this, code, data, context);
  };
  proto.__mxfPatched = true;
}

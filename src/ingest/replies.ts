// SMTP replies with the enhanced status code we choose, at the start of the text; see smtp-server-patches.ts for
// why smtp-server sends it as the enhanced code instead of adding one of its own.

/**
 * A reply we chose, as an Error because smtp-server's callbacks take one. A class, so that the ingest can tell it
 * from an error thrown by a bug or a dependency, whose message smtp-server would otherwise send to the client.
 */
export class SmtpReply extends Error {
  constructor(
    readonly responseCode: number,
    text: string,
  ) {
    super(text);
  }
}

export function smtpReply(code: number, enhanced: string, text: string): SmtpReply {
  return new SmtpReply(code, `${enhanced} ${text}`);
}

export const replies = {
  relayDenied: () =>
    smtpReply(550, '5.7.1', 'Relaying denied: this server is not a mail exchanger for that domain'),
  unknownRecipient: () => smtpReply(550, '5.1.1', 'No such recipient here'),
  addressTrick: () =>
    smtpReply(550, '5.7.1', 'Relaying denied: %, !, @ and source routes in the local part are not accepted'),
  tooManyRecipients: () =>
    smtpReply(452, '4.5.3', 'Too many recipients; send the rest in another transaction'),
  tooManyFromYou: () => smtpReply(421, '4.7.0', 'Too many connections from your address; try again later'),
  bareCr: () =>
    smtpReply(
      550,
      '5.6.0',
      'Message refused: bare CR in the data; lines must end with CRLF (RFC 5321 2.3.8)',
    ),
  nul: () => smtpReply(550, '5.6.0', 'Message refused: NUL byte in the data (RFC 5321 2.3.8)'),
  oversize: (limit: number) => smtpReply(552, '5.3.4', `Message exceeds the maximum size of ${limit} bytes`),
  // Bounces of forwarded copies, to our signed return addresses (src/ingest/bounces.ts).
  notReturnAddress: () =>
    smtpReply(
      550,
      '5.1.1',
      'No such recipient: not a valid return address of ours; do not retry this bounce',
    ),
  expiredReturnAddress: () =>
    smtpReply(550, '5.1.1', 'This return address has expired (21 days after sending); discard the bounce'),
  bouncedMessageGone: () =>
    smtpReply(550, '5.1.1', 'No such recipient: the message this address names is not held here any more'),
  bounceTooEarly: () =>
    smtpReply(451, '4.3.0', 'The copy this bounce is for is not recorded yet; please try again later'),
  bounceNotAlone: () =>
    smtpReply(
      452,
      '4.5.3',
      'Bounces to return addresses and other mail cannot share a transaction; send this recipient separately',
    ),
  localError: () =>
    smtpReply(451, '4.3.0', 'Local error in processing; the message was not stored, please try again later'),
};

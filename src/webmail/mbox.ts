// The export people keep when the temporary mailbox goes away: one mboxrd file (RFC 4155's mbox with the
// reversible "From " quoting), which Thunderbird, Apple Mail, mutt and Gmail's importers read. Each message gets a
// separator line with its envelope sender and date, its line ends become LF as mbox files have them, and every
// line that starts with ">"s and "From " gains one more ">", so a reader that strips one gets the line back.
// Like Gmail's Takeout, which puts every label into one mbox, each message carries the folder it came from, in an
// X-Folder header above its own headers.

const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const two = (n: number) => String(n).padStart(2, '0');

/** C's asctime() in UTC, as mbox separator lines carry it: "Thu Nov  9 14:02:11 2026". */
export function asctime(date: Date): string {
  const d = Number.isNaN(date.getTime()) ? new Date(0) : date;
  const day = String(d.getUTCDate()).padStart(2, ' ');
  const time = `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}`;
  return `${DAYS[d.getUTCDay()]} ${MONTHS[d.getUTCMonth()]} ${day} ${time} ${d.getUTCFullYear()}`;
}

/** The envelope sender Dovecot recorded (Return-Path), or MAILER-DAEMON for a bounce or a message without one. */
export function envelopeSender(source: Buffer): string {
  const head = source.subarray(0, Math.min(source.length, 64 * 1024)).toString('latin1');
  const end = head.search(/\r?\n\r?\n/);
  const headers = end < 0 ? head : head.slice(0, end);
  const match = /^Return-Path:[ \t]*<([^>\s]*)>/im.exec(headers);
  return match?.[1] ? match[1] : 'MAILER-DAEMON';
}

export interface MboxEntry {
  source: Buffer;
  date: Date;
  folder: string;
}

/** One message as it goes into the mbox file, separator line and trailing empty line included. */
export function mboxrdEntry(entry: MboxEntry): Buffer {
  // latin1 maps each byte to one character and back, so 8-bit bodies in any charset pass through unchanged.
  let text = entry.source.toString('latin1').replace(/\r\n/g, '\n');
  text = text.replace(/^(>*From )/gm, '>$1');
  if (!text.endsWith('\n')) text += '\n';
  const separator = `From ${envelopeSender(entry.source)} ${asctime(entry.date)}\n`;
  const folder = `X-Folder: ${entry.folder.replace(/[\r\n]/g, ' ')}\n`;
  return Buffer.concat([Buffer.from(separator + folder, 'utf8'), Buffer.from(`${text}\n`, 'latin1')]);
}

import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

// A bare SMTP client for the cases real clients refuse to produce: bare CR/LF, NUL, smuggling sequences,
// routing tricks. It speaks the protocol as written in RFC 5321, one reply at a time.
export class RawSmtp {
  private buffer = '';
  private waiters: { resolve: (reply: string) => void; reject: (err: Error) => void }[] = [];
  private closed: Error | undefined;
  private constructor(private readonly socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.buffer += d;
      this.drain();
    });
    // A server that dies mid-dialogue: whoever waits for a reply learns it, as a real client would.
    const fail = (err?: Error) => {
      this.closed ??= err ?? new Error('connection closed by the server');
      for (const w of this.waiters.splice(0)) w.reject(this.closed);
    };
    socket.on('error', fail);
    socket.on('close', () => fail());
  }

  static async open(port: number): Promise<{ client: RawSmtp; greeting: string }> {
    const socket = connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const client = new RawSmtp(socket);
    return { client, greeting: await client.reply() };
  }

  /** Connected, without waiting for the greeting: for talking too soon. */
  static async connectOnly(port: number): Promise<RawSmtp> {
    const socket = connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return new RawSmtp(socket);
  }

  private drain() {
    // A reply is complete at a line whose fourth character is a space ("250 ok"), not a dash ("250-PIPELINING").
    for (;;) {
      const lines = this.buffer.split('\r\n');
      const end = lines.findIndex((l, i) => i < lines.length - 1 && /^\d{3}( |$)/.test(l));
      if (end === -1 || this.waiters.length === 0) return;
      const reply = lines.slice(0, end + 1).join('\r\n');
      this.buffer = lines.slice(end + 1).join('\r\n');
      this.waiters.shift()!.resolve(reply);
    }
  }

  reply(): Promise<string> {
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.drain();
      // Replies already buffered are delivered first; a closed connection answers the rest with its error.
      if (this.closed) for (const w of this.waiters.splice(0)) w.reject(this.closed);
    });
  }

  /** Sends raw bytes (include the CRLF yourself) and waits for one reply. */
  async send(bytes: string | Buffer): Promise<string> {
    const reply = this.reply();
    this.socket.write(bytes);
    return reply;
  }

  /**
   * Goes on over TLS after the server's 220 to STARTTLS, as a client does, in a new client on the upgraded socket
   * (the test server's certificate is self-signed, so it is not checked). Anything the server sent in plaintext
   * after its 220 is a protocol violation, and refused here.
   */
  async startTls(): Promise<RawSmtp> {
    if (this.buffer)
      throw new Error(`the server went on in plaintext after its 220: ${JSON.stringify(this.buffer)}`);
    this.socket.removeAllListeners('data');
    const secure = tlsConnect({ socket: this.socket, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
    return new RawSmtp(secure);
  }

  write(bytes: string | Buffer): void {
    this.socket.write(bytes);
  }

  close(): void {
    this.socket.end('QUIT\r\n');
  }

  /** Drops the connection without a word, as a crashed sender would. */
  destroy(): void {
    this.socket.destroy();
  }
}

/** EHLO, MAIL, RCPTs, DATA: returns each reply, stopping at the first refusal. */
export async function transaction(
  port: number,
  opts: { from: string; to: string[]; data?: Buffer | string },
) {
  const { client } = await RawSmtp.open(port);
  try {
    const ehlo = await client.send('EHLO client.test\r\n');
    const mail = await client.send(`MAIL FROM:<${opts.from}>\r\n`);
    const rcpts: string[] = [];
    for (const to of opts.to) rcpts.push(await client.send(`RCPT TO:<${to}>\r\n`));
    if (opts.data === undefined || !rcpts.some((r) => r.startsWith('250'))) return { ehlo, mail, rcpts };
    const data = await client.send('DATA\r\n');
    const end = await client.send(Buffer.concat([Buffer.from(opts.data), Buffer.from('\r\n.\r\n')]));
    return { ehlo, mail, rcpts, data, end };
  } finally {
    client.close();
  }
}

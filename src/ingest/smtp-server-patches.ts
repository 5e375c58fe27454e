import { SMTPConnection } from 'smtp-server/lib/smtp-connection';

// Three adaptations of smtp-server (pinned to ~3.21, and covered by tests that fail if its internals move):
//
// 1. Enhanced status codes. smtp-server derives the enhanced code from the reply code alone (550 is always 5.1.1),
//    so "relaying denied" could not say 5.7.1. A reply whose text starts with an enhanced code of the same class
//    (src/ingest/replies.ts) is sent with that code instead of an added one.
// 2. The greeting pause. smtp-server waits a fixed 100 ms before its 220 and answers clients that talk first with
//    421 (early-talker detection). At a fixed number of connections that pause caps the rate at sessions/0.1 s
//    (the ingest benchmark measured 177 msg/s against Postfix's 741, and 625 against 591 without it). Postfix's smtpd
//    greets at once; we do the same by default and make the pause MXF_SMTP_GREET_PAUSE_MS, for operators who want
//    early-talker rejection in front of a backup MX that spammers aim at.
// 3. Declared sizes. smtp-server itself refuses a MAIL FROM whose SIZE= is over the limit, before onMailFrom, so
//    the ingest never learnt of the refusals most oversize mail gets (MTAs declare the size when SIZE is
//    advertised) and mxf_smtp_rejected_total{reason="oversize"} counted only senders that did not declare it. The
//    server's onDeclaredOversize option hears of each.

const ENHANCED_AT_START = /^([245])\.\d{1,3}\.\d{1,3} /;

interface Connection {
  name: string;
  _server: {
    options: { maxClients?: number; greetPauseMs?: number; onDeclaredOversize?: () => void };
    connections: Set<unknown>;
  };
  _validateMailParams(parsed: unknown): { enhancedCode?: string } | null;
  _setListeners(ready: () => void): void;
  connectionReady(): void;
  send(code: number, data?: unknown, context?: unknown): unknown;
}

const proto = SMTPConnection.prototype as unknown as Connection & { init(): void; __mxfPatched?: boolean };
if (!proto.__mxfPatched) {
  const send = proto.send;
  proto.send = function (this: Connection, code, data, context) {
    const match = typeof data === 'string' && ENHANCED_AT_START.exec(data);
    // context false: smtp-server adds no enhanced code of its own; ours stays at the start of the text.
    if (match && match[1] === String(code)[0]) return send.call(this, code, data, false);
    return send.call(this, code, data, context);
  };

  // The same as smtp-server's init(), with the pause taken from the server options instead of a fixed 100 ms.
  proto.init = function (this: Connection) {
    this._setListeners(() => {
      const { maxClients, greetPauseMs } = this._server.options;
      if (maxClients && this._server.connections.size > maxClients) {
        return this.send(421, `${this.name} Too many connected clients, try again in a moment`, false);
      }
      setTimeout(() => this.connectionReady(), greetPauseMs ?? 100).unref();
    });
  };

  const validateMailParams = proto._validateMailParams;
  proto._validateMailParams = function (this: Connection, parsed) {
    const refusal = validateMailParams.call(this, parsed);
    if (refusal?.enhancedCode === 'MESSAGE_TOO_BIG') this._server.options.onDeclaredOversize?.();
    return refusal;
  };
  proto.__mxfPatched = true;
}

export type PatchOptions = { greetPauseMs: number; onDeclaredOversize: () => void };

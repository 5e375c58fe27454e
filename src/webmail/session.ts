import { randomBytes, timingSafeEqual } from 'node:crypto';

// Web inbox sessions live in this process's memory: a restart signs everyone out, which costs a person one sign-in
// (a password or a fresh link from their IT contact) and spares us a table of live session secrets. Several web
// inbox processes behind one name would need sticky routing or a shared store; we run one.
//
// A session starts before sign-in (the sign-in form needs its CSRF token, so nobody can sign a victim in to an
// attacker's mailbox), and is replaced by a new id at sign-in, so an id planted before it is worth nothing after.

export const IDLE_MS = 30 * 60_000;
export const ABSOLUTE_MS = 12 * 3_600_000;
/** Enough for every person of a large customer several times over; beyond it the stalest go first. */
const MAX_SESSIONS = 50_000;

export interface Session {
  readonly id: string;
  readonly csrf: string;
  readonly createdAt: number;
  lastSeenAt: number;
  /** The signed-in mailbox; undefined before sign-in. */
  address?: string;
}

const newSecret = () => randomBytes(32).toString('base64url');

export class SessionStore {
  private readonly sessions = new Map<string, Session>();

  constructor(private readonly now: () => number = Date.now) {}

  create(address?: string): Session {
    this.evictIfFull();
    const at = this.now();
    const session: Session = { id: newSecret(), csrf: newSecret(), createdAt: at, lastSeenAt: at, address };
    this.sessions.set(session.id, session);
    return session;
  }

  /** The live session with this id, its idle clock restarted; expired ones are dropped on the way. */
  get(id: string | undefined): Session | undefined {
    if (!id) return undefined;
    const session = this.sessions.get(id);
    if (!session) return undefined;
    const at = this.now();
    if (at - session.lastSeenAt > IDLE_MS || at - session.createdAt > ABSOLUTE_MS) {
      this.sessions.delete(id);
      return undefined;
    }
    session.lastSeenAt = at;
    return session;
  }

  delete(id: string): void {
    this.sessions.delete(id);
  }

  /** Drops every expired session: run now and then, so the map does not keep the sessions nobody came back to. */
  sweep(): void {
    const at = this.now();
    for (const [id, s] of this.sessions)
      if (at - s.lastSeenAt > IDLE_MS || at - s.createdAt > ABSOLUTE_MS) this.sessions.delete(id);
  }

  get size(): number {
    return this.sessions.size;
  }

  private evictIfFull(): void {
    if (this.sessions.size < MAX_SESSIONS) return;
    this.sweep();
    // Map keeps insertion order: the first entries are the oldest sessions.
    for (const id of this.sessions.keys()) {
      if (this.sessions.size < MAX_SESSIONS) break;
      this.sessions.delete(id);
    }
  }
}

/** Constant-time comparison of a submitted CSRF token with the session's. */
export function csrfMatches(session: Session, submitted: unknown): boolean {
  if (typeof submitted !== 'string') return false;
  const a = Buffer.from(submitted);
  const b = Buffer.from(session.csrf);
  return a.length === b.length && timingSafeEqual(a, b);
}

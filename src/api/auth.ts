import { createHash, randomBytes } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Sql } from '../store/db';
import { ApiFailure } from './errors';

// Bearer tokens per operator, each with a role. viewer: read outages, customers and message metadata. operator:
// also act on outages and read message content. admin: also read the audit log. A token is shown once, at
// creation; only its SHA-256 is stored.

export const roleSchema = z.enum(['viewer', 'operator', 'admin']);
export type Role = z.infer<typeof roleSchema>;
const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

export const tokenNameSchema = z
  .string()
  .regex(/^[a-z0-9][a-z0-9._@-]{0,62}$/, 'expected a lower-case name such as alice or ops-bot');

export interface Operator {
  name: string;
  role: Role;
}

declare module 'fastify' {
  interface FastifyRequest {
    operator?: Operator;
  }
  interface FastifyContextConfig {
    /** The least role a route needs; routes without one (healthz, metrics, docs) are open. */
    role?: Role;
  }
}

const hashToken = (token: string) => createHash('sha256').update(token).digest();

export class TokenExistsError extends Error {}

/**
 * Creates the named token and returns it: the only time it is ever shown. An active token of that name is
 * replaced only when asked, and either way the change is audited under `actor` (who ran the command).
 */
export async function createToken(
  sql: Sql,
  name: string,
  role: Role,
  opts: { actor: string; replace?: boolean },
): Promise<string> {
  const token = `mxf_${randomBytes(32).toString('base64url')}`;
  await sql.begin(async (tx) => {
    const [existing] = await tx<{ role: string }[]>`
      select role from api_token where name = ${name} and revoked_at is null for update`;
    if (existing && !opts.replace)
      throw new TokenExistsError(
        `${name} already has an active ${existing.role} token; revoke it, or pass --replace`,
      );
    await tx`
      insert into api_token (name, role, token_hash) values (${name}, ${role}, ${hashToken(token)})
      on conflict (name) do update set role = excluded.role, token_hash = excluded.token_hash,
        created_at = now(), last_used_at = null, revoked_at = null`;
    await tx`
      insert into audit_event (actor, action, target, outcome, detail)
      values (${opts.actor}, 'token.create', ${name}, 'ok', ${tx.json({ role, replaced: Boolean(existing) })})`;
  });
  return token;
}

export async function revokeToken(sql: Sql, name: string, opts: { actor: string }): Promise<boolean> {
  return sql.begin(async (tx) => {
    const rows =
      await tx`update api_token set revoked_at = now() where name = ${name} and revoked_at is null`;
    await tx`
      insert into audit_event (actor, action, target, outcome)
      values (${opts.actor}, 'token.revoke', ${name}, ${rows.count > 0 ? 'ok' : 'not-found'})`;
    return rows.count > 0;
  });
}

async function operatorOf(sql: Sql, token: string): Promise<Operator | undefined> {
  const [row] = await sql<Operator[]>`
    update api_token set last_used_at = now()
    where token_hash = ${hashToken(token)} and revoked_at is null
    returning name, role`;
  return row;
}

/** Checks the bearer token of every route that names a role, before its body is even parsed. */
export function registerAuth(app: FastifyInstance, sql: Sql): void {
  app.addHook('onRequest', async (req: FastifyRequest) => {
    const needed = req.routeOptions.config.role;
    if (!needed) return;
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (!match)
      throw new ApiFailure(
        401,
        'UNAUTHENTICATED',
        'send Authorization: Bearer <token>; `mxf tokens create` makes one',
      );
    const operator = await operatorOf(sql, match[1]!);
    if (!operator)
      throw new ApiFailure(
        401,
        'UNAUTHENTICATED',
        'this token is unknown or revoked; ask an admin for a new one',
      );
    req.operator = operator;
    if (RANK[operator.role] < RANK[needed])
      throw new ApiFailure(
        403,
        'FORBIDDEN',
        `${operator.name} is a ${operator.role}; this needs the ${needed} role or higher`,
      );
  });
}

/** The authenticated operator of a route that requires one. */
export function operatorOfRequest(req: FastifyRequest): Operator {
  if (!req.operator) throw new Error(`route ${req.routeOptions.url} has no role but needs an operator`);
  return req.operator;
}

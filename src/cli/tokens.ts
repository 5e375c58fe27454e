import { userInfo } from 'node:os';
import { createToken, type Role, revokeToken, TokenExistsError } from '../api/auth';
import type { Config } from '../config';
import { createSql } from '../store/db';
import { migrate } from '../store/migrate';

// Tokens are made against PostgreSQL directly, not through the API: the first admin token has no token to ask
// with, and whoever can reach the database already holds every key. The token is printed once, never stored.
export async function tokensCommand(
  config: Config,
  cmd: { create: string; role: Role; replace: boolean } | { revoke: string },
): Promise<number> {
  const actor = `cli:${userInfo().username}`;
  const sql = createSql(config, { connect_timeout: 5 });
  try {
    await migrate(sql);
    if ('revoke' in cmd) {
      const revoked = await revokeToken(sql, cmd.revoke, { actor });
      console.error(revoked ? `revoked ${cmd.revoke}` : `no active token named ${cmd.revoke}`);
      return revoked ? 0 : 1;
    }
    const token = await createToken(sql, cmd.create, cmd.role, { actor, replace: cmd.replace });
    console.error(`token for ${cmd.create} (${cmd.role}); shown once, keep it in a password manager:`);
    console.log(token);
    return 0;
  } catch (err) {
    if (err instanceof TokenExistsError) {
      console.error(`mxf: ${err.message}`);
      return 1;
    }
    console.error(`mxf: cannot reach PostgreSQL at ${config.database.url}: ${(err as Error).message}`);
    return 1;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

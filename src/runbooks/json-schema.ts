import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { runbookSchema } from '../domain/runbook';

// Editors validate runbooks against this file (the yaml-language-server comment at the top of each runbook).
export const SCHEMA_FILE = 'runbook.schema.json';

export function runbookJsonSchema(): string {
  const schema = z.toJSONSchema(runbookSchema, { io: 'input', target: 'draft-2020-12' });
  return `${JSON.stringify({ ...schema, title: 'MX Failover runbook' }, null, 2)}\n`;
}

export async function isSchemaFileCurrent(dir: string): Promise<boolean> {
  const current = await readFile(join(dir, SCHEMA_FILE), 'utf8').catch(() => '');
  return current === runbookJsonSchema();
}

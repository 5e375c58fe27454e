import { writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { runbookJsonSchema, SCHEMA_FILE } from '../runbooks/json-schema';

const dir = resolve(process.argv[2] ?? './runbooks');
void writeFile(join(dir, SCHEMA_FILE), runbookJsonSchema()).then(() =>
  console.log(`wrote ${join(dir, SCHEMA_FILE)}`),
);

import { parseArgs } from 'node:util';
import { loadConfigOrExit } from '../config';
import { CliApiError } from './api-client';
import { COMMANDS, findCommand, GLOBAL_OPTIONS, UsageError } from './commands';

// mxf: the operator's CLI over the ops API. Tables for people, --json for scripts; a non-zero exit on failure
// (1: the API refused or failed, 2: a usage error). `mxf tokens` talks to PostgreSQL directly: it is how the
// first token comes to exist. The commands themselves are in commands.ts, one entry each.

const USAGE = [
  'usage: mxf <command> [options]',
  '',
  ...COMMANDS.flatMap((c) => c.usage.map((line) => `  ${line}`)),
  '',
  '<outage> is an outage id (harborview-law.1a2b3c4d) or a customer id, for its latest outage.',
  'Options: --api URL (or MXF_API_URL), --token TOKEN (or MXF_TOKEN), --json',
].join('\n');

/** Every option of every command: enough to tell the command's words from option values, before it is known. */
const EVERY_OPTION = Object.assign({}, ...COMMANDS.map((c) => c.options), GLOBAL_OPTIONS);

async function main(argv: string[]): Promise<number> {
  let words: string[];
  let flags: { help?: boolean; json?: boolean; api?: string; token?: string };
  try {
    ({ positionals: words, values: flags } = parseArgs({
      args: argv,
      options: EVERY_OPTION,
      allowPositionals: true,
      strict: true,
    }));
  } catch (err) {
    console.error(`mxf: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (flags.help || words.length === 0) {
    console.log(USAGE);
    return flags.help ? 0 : 2;
  }
  const out = (text: string, json: unknown) => console.log(flags.json ? JSON.stringify(json, null, 2) : text);
  try {
    const config = loadConfigOrExit();
    const api = { url: flags.api ?? config.api.url, token: flags.token ?? config.api.token };
    return await findCommand(words).run({ config, api, out }, argv);
  } catch (err) {
    if (err instanceof UsageError) {
      console.error(`mxf: ${err.message}\n\n${USAGE}`);
      return 2;
    }
    if (err instanceof CliApiError) {
      if (flags.json)
        console.log(JSON.stringify({ error: { code: err.code, message: err.message } }, null, 2));
      console.error(`mxf: ${err.code}: ${err.message}`);
      return 1;
    }
    console.error(`mxf: ${(err as Error).message}`);
    return 1;
  }
}

void main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});

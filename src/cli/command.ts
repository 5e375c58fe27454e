import { type ParseArgsConfig, parseArgs } from 'node:util';
import type { Config } from '../config';
import type { ApiTarget } from './api-client';

// What every mxf command is made of: the words that name it, its lines of the usage text, the options it takes,
// and what it does with its own arguments (src/cli/commands.ts lists them).

export class UsageError extends Error {}

/** What every command may use: where the API is, and how to print (a table for people, or --json). */
export interface CommandContext {
  config: Config;
  api: ApiTarget;
  out: (text: string, json: unknown) => void;
}

type OptionSpecs = NonNullable<ParseArgsConfig['options']>;

/** Options every command takes. */
export const GLOBAL_OPTIONS = {
  api: { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies OptionSpecs;

type Values<O extends OptionSpecs> = ReturnType<
  typeof parseArgs<{ options: O & typeof GLOBAL_OPTIONS; allowPositionals: true }>
>['values'];

export interface Command {
  /** The words that name it, e.g. "outages list". */
  name: string;
  usage: string[];
  options: OptionSpecs;
  /** Its arguments and options, from the whole command line; a usage error for anything it does not take. */
  run(ctx: CommandContext, argv: string[]): Promise<number>;
}

export function command<const O extends OptionSpecs>(spec: {
  name: string;
  usage: string[];
  options: O;
  /** How many words may follow the name. */
  maxArgs: number;
  run(ctx: CommandContext, args: string[], opts: Values<O>): Promise<number>;
}): Command {
  return {
    name: spec.name,
    usage: spec.usage,
    options: spec.options,
    run(ctx, argv) {
      let parsed: ReturnType<typeof parseArgs>;
      try {
        parsed = parseArgs({
          args: argv,
          options: { ...GLOBAL_OPTIONS, ...spec.options },
          allowPositionals: true,
          strict: true,
        });
      } catch (err) {
        throw new UsageError(`${spec.name}: ${(err as Error).message}`);
      }
      const args = parsed.positionals.slice(spec.name.split(' ').length);
      if (args.length > spec.maxArgs)
        throw new UsageError(`${spec.name}: unexpected argument ${args[spec.maxArgs]}`);
      return spec.run(ctx, args, parsed.values as Values<O>);
    },
  };
}

export function query(params: Record<string, string | undefined>): string {
  const entries = Object.entries(params).filter((e): e is [string, string] => e[1] !== undefined);
  return entries.length ? `?${new URLSearchParams(entries)}` : '';
}

export const need = (value: string | undefined, what: string): string => {
  if (!value) throw new UsageError(`missing ${what}`);
  return value;
};
export const seg = (value: string | undefined, what: string) => encodeURIComponent(need(value, what));

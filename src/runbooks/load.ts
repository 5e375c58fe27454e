import { readdir, readFile } from 'node:fs/promises';
import { basename, extname, join, relative } from 'node:path';
import { type Document, isNode, LineCounter, parseDocument } from 'yaml';
import { type Runbook, runbookSchema } from '../domain/runbook';

export interface RunbookProblem {
  file: string;
  line?: number;
  column?: number;
  field: string;
  message: string;
}

export function formatProblem(p: RunbookProblem): string {
  const where = p.line ? `${p.file}:${p.line}:${p.column}` : p.file;
  return `${where}: ${p.field || '(file)'}: ${p.message}`;
}

export interface RunbookSet {
  runbooks: Runbook[];
  problems: RunbookProblem[];
}

const RUNBOOK_EXT = new Set(['.yaml', '.yml']);

/** Loads every runbook in a folder and checks them against each other. Never throws for bad content. */
export async function loadRunbooks(dir: string): Promise<RunbookSet> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => RUNBOOK_EXT.has(extname(n))).sort();
  } catch (err) {
    return {
      runbooks: [],
      problems: [
        { file: dir, field: '', message: `cannot read the runbooks folder: ${(err as Error).message}` },
      ],
    };
  }
  const runbooks: Runbook[] = [];
  const problems: RunbookProblem[] = [];
  const files = new Map<Runbook, { file: string; doc: Document; lines: LineCounter }>();
  for (const name of names) {
    const path = join(dir, name);
    const file = relative(process.cwd(), path) || path;
    const parsed = parseRunbook(file, await readFile(path, 'utf8'));
    problems.push(...parsed.problems);
    if (!parsed.runbook) continue;
    const stem = basename(name, extname(name));
    if (parsed.runbook.id !== stem)
      problems.push(
        at(
          parsed,
          ['id'],
          `is "${parsed.runbook.id}" but the file is ${name}; name the file ${parsed.runbook.id}.yaml`,
        ),
      );
    runbooks.push(parsed.runbook);
    files.set(parsed.runbook, parsed);
  }
  // Two customers claiming one domain would send one customer's mail to the other's outage.
  const ids = new Map<string, string>();
  const domains = new Map<string, string>();
  for (const rb of runbooks) {
    const source = files.get(rb)!;
    const otherId = ids.get(rb.id);
    if (otherId) problems.push(at(source, ['id'], `"${rb.id}" is also the id in ${otherId}`));
    else ids.set(rb.id, source.file);
    rb.domains.forEach((d, i) => {
      const owner = domains.get(d);
      if (owner) problems.push(at(source, ['domains', i], `${d} is already claimed by ${owner}`));
      else domains.set(d, `${source.file} (${rb.id})`);
    });
  }
  return { runbooks: problems.length ? [] : runbooks, problems };
}

interface Parsed {
  file: string;
  doc: Document;
  lines: LineCounter;
  runbook?: Runbook;
  problems: RunbookProblem[];
}

export function parseRunbook(file: string, text: string): Parsed {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  const result: Parsed = { file, doc, lines, problems: [] };
  if (doc.errors.length > 0) {
    for (const e of doc.errors) {
      const pos = lines.linePos(e.pos[0]);
      result.problems.push({
        file,
        line: pos.line,
        column: pos.col,
        field: '',
        message: `YAML: ${e.message.split('\n')[0]}`,
      });
    }
    return result;
  }
  const checked = runbookSchema.safeParse(doc.toJS());
  if (checked.success) result.runbook = checked.data;
  else
    for (const issue of checked.error.issues) result.problems.push(at(result, issue.path, describe(issue)));
  return result;
}

function describe(issue: { code: string; message: string; keys?: string[] }): string {
  if (issue.code === 'unrecognized_keys' && issue.keys)
    return `unknown field ${issue.keys.join(', ')} (misspelt?)`;
  if (issue.code === 'invalid_type' && issue.message.endsWith('received undefined'))
    return 'is required but missing';
  return issue.message;
}

/** A problem located at the deepest YAML node that exists on the path. */
function at(
  source: Pick<Parsed, 'file' | 'doc' | 'lines'>,
  path: PropertyKey[],
  message: string,
): RunbookProblem {
  const keys = path.map((k) => (typeof k === 'symbol' ? String(k) : k)) as (string | number)[];
  let node: unknown;
  for (let depth = keys.length; depth > 0 && !isNode(node); depth--)
    node = source.doc.getIn(keys.slice(0, depth), true);
  const offset = isNode(node) && node.range ? node.range[0] : undefined;
  const pos = offset === undefined ? undefined : source.lines.linePos(offset);
  return { file: source.file, line: pos?.line, column: pos?.col, field: keys.join('.'), message };
}

/** For process entry points: the runbooks, or every problem on stderr and exit 78 (EX_CONFIG). */
export async function loadRunbooksOrExit(dir: string): Promise<Runbook[]> {
  const { runbooks, problems } = await loadRunbooks(dir);
  if (problems.length === 0) return runbooks;
  for (const p of problems) console.error(`mx-failover: runbook error: ${formatProblem(p)}`);
  process.exit(78);
}

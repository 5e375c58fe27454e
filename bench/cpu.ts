import { readFileSync } from 'node:fs';
import { descendants } from '../test/helpers/procs';

const TICKS = 100; // USER_HZ on Linux

/** CPU seconds (user + system) used so far by a process and all its descendants that are still alive. */
export function cpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of [pid, ...descendants(pid)]) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // exited
    }
  }
  return ticks / TICKS;
}

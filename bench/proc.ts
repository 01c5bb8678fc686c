// Linux /proc readings of a server under test, shared by the benchmarks: its process tree (a
// primary and its workers) and the CPU time that tree has used.

import { readFileSync } from 'node:fs';

/** The process and its descendants (the primary and its workers with --workers). */
export function processTree(pid: number): number[] {
  let children: number[] = [];
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter((p) => p !== '')
      .map(Number);
  } catch {
    // gone
  }
  return [pid, ...children.flatMap(processTree)];
}

const TICKS_PER_SECOND = 100;

/** CPU seconds (user + system, every thread) used so far by `pid` and its descendants. */
export function treeCpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    try {
      // Fields after the command name: state is field 3, utime 14 and stime 15 (1-based).
      const fields = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // exited in between
    }
  }
  return ticks / TICKS_PER_SECOND;
}

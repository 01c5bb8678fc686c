// vegeta (constant-rate load, `make bench-tools`): its report of one attack, shared by the
// benchmarks that drive a fixed request rate (bench/proxy.ts, bench/pods.ts).

import { execFile, execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

export const VEGETA = path.join(__dirname, '..', '..', '..', '.cache', 'bin', 'vegeta');

export interface Latency {
  p50ms: number;
  p99ms: number;
  maxMs: number;
  /** Requests per second vegeta reached. */
  rate: number;
  /** Answers other than 200, and failed requests. */
  errors: number;
}

/** `vegeta report` of an attack's output (its binary results). */
export function vegetaReport(attack: Buffer): Latency {
  const report = JSON.parse(
    execFileSync(VEGETA, ['report', '-type=json'], {
      input: attack,
      maxBuffer: 1 << 28,
    }).toString(),
  ) as {
    latencies: { '50th': number; '99th': number; max: number };
    rate: number;
    status_codes: Record<string, number>;
  };
  const ok = report.status_codes['200'] ?? 0;
  const total = Object.values(report.status_codes).reduce((a, b) => a + b, 0);
  const ms = (ns: number): number => Math.round(ns / 1e4) / 100;
  return {
    p50ms: ms(report.latencies['50th']),
    p99ms: ms(report.latencies['99th']),
    maxMs: ms(report.latencies.max),
    rate: Math.round(report.rate),
    errors: total - ok,
  };
}

let attacks = 0;

/**
 * One `vegeta attack` (its `args`), run through `prefix` (taskset, nsenter), and its report. The
 * results go to a file, read once the attack is over: streamed to this process, they would wake it
 * a thousand times a second, on the CPUs the run measures.
 */
export async function attack(prefix: readonly string[], args: readonly string[]): Promise<Latency> {
  const results = path.join(tmpdir(), `mooring-vegeta-${process.pid}-${attacks++}.bin`);
  try {
    const [command, ...rest] = [...prefix, VEGETA, 'attack', ...args, `-output=${results}`];
    await promisify(execFile)(command, rest);
    return vegetaReport(readFileSync(results));
  } finally {
    rmSync(results, { force: true });
  }
}

// wrk for the benchmarks: a Lua script that POSTs a body file, and one run read back as
// requests/s, p50/p99 (from --latency) and errors (non-2xx responses and socket errors).

import { execFile, execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { promisify } from 'node:util';

/** Writes a wrk script to `path` that POSTs the content of `bodyFile` with `headers`. */
export function luaPost(path: string, bodyFile: string, headers: Record<string, string>): string {
  const lines = [
    'wrk.method = "POST"',
    `local f = assert(io.open(${JSON.stringify(bodyFile)}, "rb"))`,
    'wrk.body = f:read("*a")',
    'f:close()',
    ...Object.entries(headers).map(
      ([k, v]) => `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`,
    ),
  ];
  writeFileSync(path, `${lines.join('\n')}\n`);
  return path;
}

export interface WrkResult {
  readonly rps: number;
  readonly p50ms: number;
  readonly p99ms: number;
  readonly errors: number;
}

interface WrkOptions {
  readonly connections: number;
  readonly duration: number;
  readonly script?: string;
  readonly pinned?: string;
}

function wrkCommand(url: string, options: WrkOptions): [string, string[]] {
  const pin = options.pinned === undefined ? [] : ['-c', options.pinned, 'wrk'];
  return [
    options.pinned === undefined ? 'wrk' : 'taskset',
    [
      ...pin,
      '-t1',
      `-c${options.connections}`,
      `-d${options.duration}s`,
      '--latency',
      ...(options.script === undefined ? [] : ['-s', options.script]),
      url,
    ],
  ];
}

/** One wrk run, one thread, keep-alive, against `url` (with `script`, or plain GETs). */
export function runWrkOnce(url: string, options: WrkOptions): WrkResult {
  const [command, args] = wrkCommand(url, options);
  return parseWrk(execFileSync(command, args, { encoding: 'utf8' }));
}

/** runWrkOnce without blocking this process' event loop (it serves or drains while wrk runs). */
export async function runWrk(url: string, options: WrkOptions): Promise<WrkResult> {
  const [command, args] = wrkCommand(url, options);
  return parseWrk((await promisify(execFile)(command, args, { encoding: 'utf8' })).stdout);
}

function parseWrk(out: string): WrkResult {
  const toMs = (value: string, unit: string): number =>
    unit === 'us' ? Number(value) / 1000 : unit === 's' ? Number(value) * 1000 : Number(value);
  const pct = (p: string): number => {
    const m = new RegExp(`\\s${p}%\\s+([0-9.]+)(us|ms|s)`).exec(out);
    return m?.[1] !== undefined && m[2] !== undefined
      ? Math.round(toMs(m[1], m[2]) * 100) / 100
      : NaN;
  };
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  return {
    rps: Math.round(Number(/Requests\/sec:\s+([0-9.]+)/.exec(out)?.[1] ?? NaN)),
    p50ms: pct('50'),
    p99ms: pct('99'),
    errors: non2xx + (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0),
  };
}

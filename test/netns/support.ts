// What the network-namespace tests share: running commands (in a namespace), the preconditions
// (root, tools, a fresh build), leftovers of killed runs, and long-running helper processes.

import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';

// MOORING_ROOT: the repository, when this runs compiled elsewhere (`make demo`: .cache/demo).
export const ROOT = process.env.MOORING_ROOT ?? join(__dirname, '../..');
export const MOORING = join(ROOT, 'bin/mooring.js');
export const NODE = process.execPath;
/** Every namespace of these tests is named `${PREFIX}<pid>-...`, for removeLeftovers. */
export const PREFIX = 'mooring-t-';

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** The most output a command may give (a proxy's metrics page grows past Node's 1 MiB default). */
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

export function run(command: string, args: readonly string[], timeout = 20_000): Promise<Result> {
  return new Promise((resolve) => {
    const options = { timeout, encoding: 'utf8' as const, maxBuffer: MAX_OUTPUT_BYTES };
    execFile(command, [...args], options, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
      resolve({ code, stdout, stderr: err !== null && stderr === '' ? err.message : stderr });
    });
  });
}

export async function must(command: string, args: readonly string[]): Promise<string> {
  const result = await run(command, args);
  if (result.code !== 0) {
    throw new Error(`${[command, ...args].join(' ')} failed (${result.code}): ${result.stderr}`);
  }
  return result.stdout;
}

export const inNs = (ns: string, command: string, args: readonly string[]): Promise<Result> =>
  run('ip', ['netns', 'exec', ns, command, ...args]);

/** Root, the tools, Node runnable by an ordinary UID, and dist/ built since each source changed. */
export async function checkPreconditions(
  tools: readonly string[],
  built: readonly (readonly [src: string, dist: string])[],
): Promise<void> {
  if (process.getuid?.() !== 0) {
    throw new Error(
      'the netns tests must run as root (they create network namespaces and iptables rules): ' +
        'run `sudo make netns` (CI runs them as root); they do not skip',
    );
  }
  for (const tool of tools) {
    const found = await run('sh', ['-c', 'command -v "$0"', tool]);
    if (found.code !== 0) {
      throw new Error(
        `${tool} is not installed: apt-get install iproute2 iptables util-linux (the netns tests need them)`,
      );
    }
  }
  const unprivileged = await run('setpriv', [
    '--reuid=1000',
    '--regid=1000',
    '--clear-groups',
    NODE,
    '-e',
    '0',
  ]);
  if (unprivileged.code !== 0) {
    throw new Error(
      `${NODE} cannot run as an ordinary UID: install Node system-wide (e.g. /usr/bin/node), ` +
        `not under a private home: ${unprivileged.stderr}`,
    );
  }
  // `make build` stamps dist/.built after each successful tsc; tsc (incremental) leaves an output
  // whose text did not change untouched, so a source only touched (a git checkout) is built
  // when the stamp is newer.
  const stamp = join(ROOT, 'dist', '.built');
  const stampMs = existsSync(stamp) ? statSync(stamp).mtimeMs : 0;
  for (const [src, dist] of built) {
    const file = join(ROOT, dist);
    const srcMs = statSync(join(ROOT, src)).mtimeMs;
    if (!existsSync(file) || Math.max(statSync(file).mtimeMs, stampMs) < srcMs) {
      throw new Error(`${dist} is missing or older than ${src}: run \`make build\` first`);
    }
  }
}

/** Removes namespaces of earlier runs whose process is gone (a run killed before afterAll). */
export async function removeLeftovers(): Promise<void> {
  const list = await must('ip', ['netns', 'list']);
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const pid = new RegExp(`^${PREFIX}(\\d+)-`).exec(name)?.[1];
    if (pid === undefined || Number(pid) === process.pid) continue;
    let alive = true;
    try {
      process.kill(Number(pid), 0);
    } catch {
      alive = false;
    }
    if (!alive) await run('ip', ['netns', 'del', name]);
  }
}

/**
 * Starts a long-running command and resolves with it and the first line it prints once that
 * line contains `ready`; rejects if it exits or stays silent for 10 s.
 */
export function startReady(
  command: string,
  args: readonly string[],
): Promise<{ child: ChildProcess; line: string }> {
  const child = spawn(command, [...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const what = [command, ...args.slice(0, 4)].join(' ');
    const timer = setTimeout(
      () => reject(new Error(`${what}: not ready after 10 s: ${err}`)),
      10_000,
    );
    child.stderr?.on('data', (c: Buffer) => (err += c.toString()));
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const line = out.split('\n').find((l) => l.includes('ready'));
      if (line !== undefined) {
        clearTimeout(timer);
        resolve({ child, line });
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}): ${err}`));
    });
  });
}

/** SIGKILLs each child still running and waits for its exit. */
export async function killAll(children: readonly ChildProcess[]): Promise<void> {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGKILL');
      await exited;
    }
  }
}

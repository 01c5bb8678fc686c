// Processes of the end-to-end harnesses (the control plane, Jaeger): each one leads its own
// process group, logs into a file, and is killed with everything it started when the harness
// stops it or when the test process goes away first.
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';

export interface Proc {
  readonly name: string;
  readonly pid: number;
  readonly logPath: string;
  readonly exited: Promise<void>;
  exitCode(): string | undefined;
}

export function spawnLogged(
  name: string,
  bin: string,
  args: readonly string[],
  logPath: string,
): Proc {
  const fd = fs.openSync(logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(bin, args, { detached: true, stdio: ['ignore', fd, fd] });
  } finally {
    fs.closeSync(fd);
  }
  const pid = child.pid;
  if (pid === undefined) {
    throw new Error(`could not start ${name} (${bin})`);
  }
  let status: string | undefined;
  const exited = new Promise<void>((resolve) => {
    child.on('exit', (code, signal) => {
      status = signal === null ? `exit code ${String(code)}` : `signal ${signal}`;
      resolve();
    });
  });
  // Let the test process end even if a test forgets stop(): the exit handler kills the group.
  child.unref();
  return { name, pid, logPath, exited, exitCode: () => status };
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // ESRCH: the group is gone already.
  }
}

export async function stopProc(proc: Proc, graceMs: number): Promise<void> {
  if (proc.exitCode() === undefined) {
    killGroup(proc.pid, 'SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      proc.exited.then(() => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), graceMs))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      killGroup(proc.pid, 'SIGKILL');
      await proc.exited;
    }
  }
  // Anything the leader left behind in its group.
  killGroup(proc.pid, 'SIGKILL');
}

// Control planes still running, killed synchronously if this process goes away first.
interface Live {
  readonly procs: readonly Proc[];
  readonly tmpDir: string;
  readonly keepTmpDir: boolean;
}
const live = new Set<Live>();

function removeDir(dir: string): void {
  try {
    // Retries: a process killed a moment ago may still be writing into the directory.
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 50 });
  } catch {
    // Best effort on the way out; it is a temporary directory.
  }
}

function killAllNow(): void {
  for (const entry of live) {
    for (const proc of entry.procs) killGroup(proc.pid, 'SIGKILL');
    if (!entry.keepTmpDir) removeDir(entry.tmpDir);
  }
  live.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  killAllNow();
  uninstallExitHandlers();
  // Re-raise so that the default behaviour (or another listener) decides what happens next.
  process.kill(process.pid, signal);
}
const onSigint = (): void => onSignal('SIGINT');
const onSigterm = (): void => onSignal('SIGTERM');
let handlersInstalled = false;

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  process.on('exit', killAllNow);
  process.on('SIGINT', onSigint);
  process.on('SIGTERM', onSigterm);
}

function uninstallExitHandlers(): void {
  if (!handlersInstalled) return;
  handlersInstalled = false;
  process.off('exit', killAllNow);
  process.off('SIGINT', onSigint);
  process.off('SIGTERM', onSigterm);
}

/**
 * Tracks the processes that a harness will start (push them into `procs`): `stop()` stops them
 * in reverse order (SIGTERM, then SIGKILL after `graceMs`) and removes `tmpDir` unless kept; an
 * exit or a signal of this process kills them at once. `stop()` is safe to call more than once.
 */
export function trackProcesses(
  tmpDir: string,
  keepTmpDir: boolean,
  graceMs = 10_000,
  options: { readonly persistent?: boolean } = {},
): { procs: Proc[]; stop(): Promise<void> } {
  const procs: Proc[] = [];
  const entry: Live = { procs, tmpDir, keepTmpDir };
  // Persistent processes (make cluster-up) outlive this process: no exit handler kills them.
  if (options.persistent !== true) {
    live.add(entry);
    installExitHandlers();
  }
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      for (const proc of [...procs].reverse()) await stopProc(proc, graceMs);
      live.delete(entry);
      if (live.size === 0) uninstallExitHandlers();
      if (!keepTmpDir) removeDir(tmpDir);
    })();
    return stopped;
  };
  return { procs, stop };
}

// ---------------------------------------------------------------------------------------------
// Small helpers.

/** The part of `fetch` the harnesses use: the global one, or netnsFetch's. */
export type Fetch = (
  url: string,
  init?: { method?: string; headers?: Record<string, string>; body?: string },
) => Promise<{ status: number; text(): Promise<string>; json(): Promise<unknown> }>;

/**
 * A `fetch` from inside a network namespace (root: `ip netns exec NS curl`), for a harness whose
 * tool listens where only that namespace reaches (Jaeger and Prometheus in the hub of the netns
 * tests). A connection failure rejects, as `fetch` does.
 */
export function netnsFetch(ns: string): Fetch {
  return (url, init = {}) => {
    const args = ['netns', 'exec', ns, 'curl', '-sS', '--max-time', '20', '-o', '-'];
    args.push('-w', '\n%{http_code}', '-X', init.method ?? 'GET');
    for (const [k, v] of Object.entries(init.headers ?? {})) args.push('-H', `${k}: ${v}`);
    if (init.body !== undefined) args.push('--data-binary', init.body);
    args.push('--', url);
    return new Promise((resolve, reject) => {
      execFile('ip', args, { encoding: 'utf8', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
        if (err !== null) {
          reject(new Error(`curl ${url} in ${ns}: ${stderr.trim() || err.message}`));
          return;
        }
        const cut = stdout.lastIndexOf('\n');
        const body = stdout.slice(0, cut);
        resolve({
          status: Number(stdout.slice(cut + 1)),
          text: () => Promise.resolve(body),
          json: () => Promise.resolve(JSON.parse(body) as unknown),
        });
      });
    });
  };
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Distinct free TCP ports on 127.0.0.1 (all held open together, then released). */
export async function freePorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < count; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', resolve);
      });
      const address = server.address();
      if (address === null || typeof address === 'string') throw new Error('no port');
      ports.push(address.port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

/** The last `lines` lines of a log file ('' if it does not exist). */
export function tailFile(file: string, lines = 40): string {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

/** Polls `probe` until it returns true; fails early when a `proc` exits, or at `deadline`. */
export async function waitUntil(
  what: string,
  proc: Proc | readonly Proc[],
  deadline: number,
  probe: () => Promise<boolean>,
): Promise<void> {
  let last = 'not tried';
  while (Date.now() < deadline) {
    for (const p of ([] as readonly Proc[]).concat(proc)) {
      const status = p.exitCode();
      if (status !== undefined) throw new Error(`${p.name} exited (${status}) before ${what}`);
    }
    try {
      if (await probe()) return;
      last = 'not ready';
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await delay(200);
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}

/** What a harness's tool (Jaeger, Prometheus) is given while it starts. */
export interface ToolStart {
  readonly tmpDir: string;
  readonly logPath: string;
  /** When the start must be done. */
  readonly deadline: number;
  /** A fetch that reaches the tool (the global one, or one inside `netns`). */
  readonly fetch: Fetch;
  /** Starts the binary with `args` (in `netns` when given), tracked and logged to logPath. */
  spawn(args: readonly string[]): Proc;
  stop(): Promise<void>;
}

/**
 * The common start of a harness's tool: the binary must exist (else `missing` says how to get
 * it), a temporary directory with its log, its processes tracked; `start` launches it and waits
 * until it answers. When `start` fails, everything is stopped and the error carries the log's
 * tail.
 */
export async function startTool<T>(
  spec: {
    /** For messages (`Jaeger`); its lower case names the directory and the log. */
    readonly title: string;
    readonly binary: string;
    readonly missing: string;
    readonly startTimeoutMs?: number;
    readonly keepTmpDir?: boolean;
    readonly netns?: string;
  },
  start: (tool: ToolStart) => Promise<T>,
): Promise<T> {
  try {
    fs.accessSync(spec.binary, fs.constants.X_OK);
  } catch {
    throw new Error(`${spec.binary} is missing: ${spec.missing}`);
  }
  const name = spec.title.toLowerCase();
  const deadline = Date.now() + (spec.startTimeoutMs ?? 60_000);
  const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), `mooring-${name}-`));
  const { procs, stop } = trackProcesses(tmpDir, spec.keepTmpDir ?? false, 5_000);
  const logPath = path.join(tmpDir, `${name}.log`);
  const { netns } = spec;
  const fetch: Fetch = netns === undefined ? globalThis.fetch : netnsFetch(netns);
  const spawnTool = (args: readonly string[]): Proc => {
    const proc =
      netns === undefined
        ? spawnLogged(name, spec.binary, args, logPath)
        : spawnLogged(name, 'ip', ['netns', 'exec', netns, spec.binary, ...args], logPath);
    procs.push(proc);
    return proc;
  };
  try {
    return await start({ tmpDir, logPath, deadline, fetch, spawn: spawnTool, stop });
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const log = tailFile(logPath);
    await stop();
    throw new Error(
      `${spec.title} did not start: ${message}\n--- ${name} log (tail) ---\n${log || '(empty)'}`,
      { cause: err },
    );
  }
}

// Real-TLS clients for the serve tests: every request pins the trust bundle (never
// rejectUnauthorized: false) and reports the serving certificate it saw.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { connect as netConnect, createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Agent } from 'node:https';
import { request as httpsRequest } from 'node:https';
import type { TLSSocket } from 'node:tls';

export interface TlsAnswer {
  readonly status: number;
  readonly body: string;
  readonly serial: string;
  readonly socket: TLSSocket;
  readonly reusedSocket: boolean;
}

export function httpsCall(options: {
  port: number;
  ca: string;
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: string;
  agent?: Agent | false;
  host?: string;
}): Promise<TlsAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: options.host ?? '127.0.0.1',
        port: options.port,
        method: options.method,
        path: options.path,
        headers:
          options.body === undefined
            ? options.headers
            : { ...options.headers, 'content-length': Buffer.byteLength(options.body) },
        ca: options.ca,
        agent: options.agent ?? false,
      },
      (res) => {
        // Read the socket now: a kept-alive socket goes back to the agent at 'end'.
        const socket = res.socket as TLSSocket;
        const serial = socket.getPeerCertificate().serialNumber;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          resolve({
            status: res.statusCode ?? 0,
            body: Buffer.concat(chunks).toString('utf8'),
            serial,
            socket,
            reusedSocket: req.reusedSocket,
          });
        });
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

export function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 15_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

// --- `mooring serve` as a process (dist/) ---------------------------------------------------

const ROOT = join(__dirname, '..', '..');

export interface Spawned {
  readonly child: ChildProcess;
  readonly stderr: string[];
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function spawnServe(args: string[]): Spawned {
  const child = spawn(process.execPath, [join(ROOT, 'bin', 'mooring.js'), 'serve', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr: string[] = [];
  let partial = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    const lines = (partial + chunk.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    stderr.push(...lines);
  });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, stderr, exit };
}

/** `mooring serve` on `dataDir`, both ports on 127.0.0.1 and chosen by the system. */
export function spawnLocalServe(dataDir: string, ...extra: string[]): Spawned {
  return spawnServe([
    ...extra,
    '--data-dir',
    dataDir,
    '--listen',
    '127.0.0.1:0',
    '--admin-listen',
    '127.0.0.1:0',
  ]);
}

export async function readyPorts(s: Spawned): Promise<{ webhook: number; admin: number }> {
  const line = await waitFor('mooring serve is ready', () =>
    s.stderr
      .map((l) =>
        l.includes('"mooring serve is ready"')
          ? (JSON.parse(l) as { listen: string; adminListen: string })
          : undefined,
      )
      .find((x) => x !== undefined),
  );
  return {
    webhook: Number(line.listen.split(':').pop()),
    admin: Number(line.adminListen.split(':').pop()),
  };
}

export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: '127.0.0.1', port }, () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}

/** Brings dist/ up to date (incremental, fast when it is): the processes run the compiled CLI. */
export function buildDist(): void {
  execFileSync(
    process.execPath,
    [
      join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'),
      '-p',
      join(ROOT, 'tsconfig.build.json'),
    ],
    {
      cwd: ROOT,
      stdio: 'ignore',
    },
  );
}

/**
 * Starts `mooring serve` with `flag` on a port another listener holds, and expects exit 1 with a
 * message naming the flag, the address and EADDRINUSE. Resolves with the process's stderr lines.
 */
export async function servesOnTakenPort(
  flag: '--listen' | '--admin-listen',
  args: readonly string[],
): Promise<string[]> {
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const port = (blocker.address() as AddressInfo).port;
  const other = flag === '--listen' ? '--admin-listen' : '--listen';
  const s = spawnServe([...args, flag, `127.0.0.1:${port}`, other, '127.0.0.1:0']);
  try {
    const { code } = await s.exit;
    expect(code).toBe(1);
    expect(s.stderr.join('\n')).toMatch(
      new RegExp(`SRV_ERR_LISTEN: ${flag} 127\\.0\\.0\\.1:${port}: cannot listen: .*EADDRINUSE`),
    );
    return s.stderr;
  } finally {
    blocker.close();
    s.child.kill('SIGKILL');
  }
}

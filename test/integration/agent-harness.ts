// Shared by the agent's integration tests: a real `mooring serve` in local mode (spawned from
// the compiled CLI), a kubelet-style ConfigMap volume for the root file, and small helpers.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  promises as fs,
  readdirSync,
  rmdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';

export const ROOT = path.resolve(__dirname, '../..');
export const BIN = path.join(ROOT, 'bin/mooring.js');

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(p) : statSync(p).mtimeMs);
  }
  return newest;
}

/**
 * Builds dist/ when it is missing or older than src/ (`make test` builds first; this keeps a
 * lone `npx jest test/integration/agent-...` honest). One build at a time across test workers.
 */
export function ensureBuilt(): void {
  const main = path.join(ROOT, 'dist/cli/main.js');
  if (existsSync(main) && statSync(main).mtimeMs >= newestMtime(path.join(ROOT, 'src'))) return;
  const lock = path.join(ROOT, '.cache/agent-test-build.lock');
  mkdirSync(path.dirname(lock), { recursive: true });
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // A lock older than any build is a killed run's: taken over, not waited for.
      const since = statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now();
      if (Date.now() - since > 90_000) {
        rmSync(lock, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`build lock ${lock} held for too long`);
      execFileSync('sleep', ['0.2']);
    }
  }
  try {
    execFileSync(
      process.execPath,
      [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
      {
        cwd: ROOT,
        stdio: 'pipe',
      },
    );
  } finally {
    rmdirSync(lock);
  }
}

export const tempDir = (prefix: string): string => mkdtempSync(path.join(tmpdir(), `${prefix}-`));

/** A free TCP port on 127.0.0.1 (closed again; fine for tests). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns a value other than undefined/false. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 20_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: Error | undefined;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err instanceof Error ? err : new Error(String(err));
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting for ${what}${lastError ? ` (last error: ${lastError.message})` : ''}`,
      );
    }
    await sleep(intervalMs);
  }
}

export interface Identity {
  readonly namespace: string;
  readonly serviceAccount: string;
}

export interface ServeProcess {
  readonly dataDir: string;
  readonly url: string;
  readonly adminUrl: string;
  /** Everything serve wrote to stderr (JSON log lines), across restarts. */
  logs(): string;
  setTokens(tokens: Record<string, Identity>): void;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** <data-dir>/root-cert.pem: serve's export of its trust bundle. */
  readonly rootsFile: string;
  /** The configuration file serve runs with, when one was given. */
  readonly configFile: string | undefined;
}

export interface ServeOptions {
  readonly tokens?: Record<string, Identity>;
  /** A configuration file's content (JSON). */
  readonly config?: unknown;
}

/** Starts `mooring serve` in local mode in a fresh data dir; resolves once /readyz is 200. */
export async function startServe(options: ServeOptions = {}): Promise<ServeProcess> {
  ensureBuilt();
  const dataDir = tempDir('mooring-serve');
  const port = await freePort();
  const adminPort = await freePort();
  const args = [
    BIN,
    'serve',
    '--data-dir',
    dataDir,
    '--listen',
    `127.0.0.1:${port}`,
    '--admin-listen',
    `127.0.0.1:${adminPort}`,
  ];
  let configFile: string | undefined;
  if (options.config !== undefined) {
    configFile = path.join(dataDir, 'config.json');
    writeFileSync(configFile, JSON.stringify(options.config));
    args.push('--config', configFile);
  }
  let child: ChildProcess | null = null;
  let logs = '';
  const url = `https://127.0.0.1:${port}`;
  const adminUrl = `http://127.0.0.1:${adminPort}`;

  const setTokens = (tokens: Record<string, Identity>): void => {
    const tmp = path.join(dataDir, 'tokens.json.tmp');
    writeFileSync(tmp, JSON.stringify(tokens), { mode: 0o600 });
    execFileSync('mv', [tmp, path.join(dataDir, 'tokens.json')]);
  };
  if (options.tokens) setTokens(options.tokens);

  const start = async (): Promise<void> => {
    const c = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: ROOT });
    child = c;
    c.stderr?.on('data', (chunk: Buffer) => {
      logs += chunk.toString();
    });
    await eventually(
      'mooring serve to be ready',
      async () => {
        if (c.exitCode !== null)
          throw new Error(`serve exited ${c.exitCode}: ${logs.slice(-2000)}`);
        const res = await fetch(`${adminUrl}/readyz`);
        return res.status === 200;
      },
      30_000,
      100,
    );
  };
  const stop = async (): Promise<void> => {
    const c = child;
    child = null;
    if (c === null || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  await start();
  return {
    dataDir,
    url,
    adminUrl,
    logs: () => logs,
    setTokens,
    start,
    stop,
    rootsFile: path.join(dataDir, 'root-cert.pem'),
    configFile,
  };
}

/**
 * A directory laid out like a ConfigMap volume, updated as the kubelet does: a new timestamped
 * directory, then the `..data` symlink renamed over; `root-cert.pem` -> `..data/root-cert.pem`.
 */
export class ConfigMapVolume {
  readonly dir = tempDir('mooring-root-cm');
  readonly file = path.join(this.dir, 'root-cert.pem');
  private n = 0;
  private current = '';

  async write(content: string): Promise<boolean> {
    if (content === this.current) return false;
    this.n += 1;
    const version = `..2030_01_01_00_00_00.${String(this.n).padStart(6, '0')}`;
    await fs.mkdir(path.join(this.dir, version));
    await fs.writeFile(path.join(this.dir, version, 'root-cert.pem'), content);
    await fs.symlink(version, path.join(this.dir, '..data_tmp'));
    await fs.rename(path.join(this.dir, '..data_tmp'), path.join(this.dir, '..data'));
    if (this.n === 1) await fs.symlink('..data/root-cert.pem', this.file);
    this.current = content;
    return true;
  }
}

/** GET /v1/trust-bundle from a local serve, its own certificate verified against `roots`. */
export async function fetchTrustBundle(url: string, roots: string): Promise<string[]> {
  const https = await import('node:https');
  return new Promise((resolve, reject) => {
    https
      .get(`${url}/v1/trust-bundle`, { ca: roots, agent: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => {
          try {
            resolve((JSON.parse(body) as { trustBundle: string[] }).trustBundle);
          } catch (err) {
            reject(err instanceof Error ? err : new Error(String(err)));
          }
        });
      })
      .on('error', reject);
  });
}

/** Certificates of a PEM text. */
export const pemCertificates = (text: string): X509Certificate[] =>
  (text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (p) => new X509Certificate(p),
  );

/** `openssl verify` of a chain file against a roots file; returns openssl's output or throws. */
export function opensslVerify(rootsFile: string, chainFile: string): string {
  const dir = tempDir('mooring-verify');
  const certs = pemCertificates(execFileSync('cat', [chainFile]).toString());
  const leaf = path.join(dir, 'leaf.pem');
  const untrusted = path.join(dir, 'untrusted.pem');
  writeFileSync(leaf, certs[0]?.toString() ?? '');
  writeFileSync(
    untrusted,
    certs
      .slice(1)
      .map((c) => c.toString())
      .join(''),
  );
  const args = ['verify', '-CAfile', rootsFile];
  if (certs.length > 1) args.push('-untrusted', untrusted);
  args.push(leaf);
  return execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
}

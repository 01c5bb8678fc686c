// `mooring serve` as a process (dist/, as `make run` starts it): graceful shutdown on SIGTERM
// and SIGINT with a request in flight, exit codes, and a clear failure when a port is taken.

import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import {
  buildDist,
  portOpen,
  readyPorts,
  servesOnTakenPort,
  spawnLocalServe,
  spawnServe,
  waitFor,
} from './serve-helpers';

const ROOT = join(__dirname, '..', '..');
const FIXTURE = join(ROOT, 'test', 'fixtures', 'admission', 'pod-create-deployment.json');

// The process runs the compiled CLI: bring dist/ up to date (incremental, fast when it is).
beforeAll(buildDist, 120_000);

describe('mooring serve as a process', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mooring-proc-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it.each<[NodeJS.Signals]>([['SIGTERM'], ['SIGINT']])(
    'on %s stops accepting, finishes the request in flight, and exits 0',
    async (signal) => {
      const s = spawnLocalServe(join(dir, 'store'));
      try {
        const ports = await readyPorts(s);
        const ca = readFileSync(join(dir, 'store', 'root-cert.pem'), 'utf8');
        const body = Buffer.from(readFileSync(FIXTURE, 'utf8'));
        const uid = (JSON.parse(body.toString()) as { request: { uid: string } }).request.uid;

        // A slow upload: headers and half of the body, then the signal, then the rest.
        const socket = tlsConnect({ host: '127.0.0.1', port: ports.webhook, ca });
        await new Promise<void>((resolve, reject) => {
          socket.once('secureConnect', resolve);
          socket.once('error', reject);
        });
        const chunks: Buffer[] = [];
        socket.on('data', (c: Buffer) => chunks.push(c));
        const ended = new Promise<void>((resolve) => socket.once('end', resolve));
        const half = Math.floor(body.length / 2);
        socket.write(
          `POST /inject HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
        );
        socket.write(body.subarray(0, half));
        await new Promise((r) => setTimeout(r, 200));

        s.child.kill(signal);
        await waitFor('the listener to close', async () =>
          (await portOpen(ports.webhook)) ? undefined : true,
        );
        expect(s.child.exitCode).toBeNull(); // still finishing the request in flight

        socket.write(body.subarray(half));
        await ended; // the server closes the connection once the answer is out
        const response = Buffer.concat(chunks).toString('utf8');
        expect(response).toMatch(/^HTTP\/1\.1 200 /);
        expect(response).toContain(`"uid":"${uid}"`);

        const { code } = await s.exit;
        expect(code).toBe(0);
        expect(await portOpen(ports.webhook)).toBe(false);
        expect(await portOpen(ports.admin)).toBe(false);
        const messages = s.stderr.map((l) => (JSON.parse(l) as { msg: string }).msg);
        expect(messages).toContain(
          'shutting down: no new connections, finishing requests in flight',
        );
        expect(messages[messages.length - 1]).toBe('stopped');
        // Finished by itself, not cut by the grace period.
        expect(messages).not.toContain('grace period over: closing connections');
      } finally {
        s.child.kill('SIGKILL');
      }
    },
    60_000,
  );

  it('exits 1 with a clear message when the HTTPS port is taken', async () => {
    await servesOnTakenPort('--listen', ['--data-dir', join(dir, 'store')]);
  }, 60_000);

  // The admin port opens first (its /readyz says 503 while the CA loads); a bad configuration is
  // refused before any port opens.
  it.each<[string, (store: string) => void, string, boolean]>([
    [
      'a tokens.json that is not valid JSON',
      (store) => writeFileSync(join(store, 'tokens.json'), '{"t": {', { mode: 0o600 }),
      'tokens.json: not valid JSON',
      false,
    ],
    [
      'a data directory others can write to',
      (store) => chmodSync(store, 0o777),
      'is writable by group or others (mode 0777)',
      false,
    ],
    [
      'a root lifetime inside its own rotation window',
      (store) => writeFileSync(join(store, 'config.yaml'), 'ca:\n  rootLifetimeSeconds: 3600\n'),
      'CFG_ERR_INVALID: ca.rootLifetimeSeconds (3600) must exceed',
      true,
    ],
  ])(
    'exits 1 at start, before serving, for %s',
    async (_name, spoil, message, beforeAnyPort) => {
      const store = join(dir, 'store');
      mkdirSync(store, { mode: 0o700 });
      spoil(store);
      const config = join(store, 'config.yaml');
      const s = spawnServe([
        ...['--data-dir', store, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'],
        ...(existsSync(config) ? ['--config', config] : []),
      ]);
      const { code } = await s.exit;
      expect(code).toBe(1);
      expect(s.stderr.join('\n')).toContain(message);
      expect(s.stderr.join('\n').includes('listening')).toBe(!beforeAnyPort);
    },
    60_000,
  );

  it('exits 2 for a malformed --listen', async () => {
    const s = spawnServe(['--data-dir', join(dir, 'store'), '--listen', 'localhost']);
    const { code } = await s.exit;
    expect(code).toBe(2);
    expect(s.stderr.join('\n')).toContain('--listen must be HOST:PORT, got "localhost"');
  }, 60_000);
});

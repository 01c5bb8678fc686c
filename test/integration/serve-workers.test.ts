// `mooring serve --workers 2` as a process (dist/): the primary and its node:cluster workers.
// Both workers answer on the one HTTPS port (each has its own serving certificate, so the
// serial a TLS client sees tells which one answered), the admin port sums their metrics, a
// killed worker is replaced, a worker that cannot start stops the server, SIGTERM stops all.

import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  buildDist,
  httpGet,
  httpsCall,
  portOpen,
  readyPorts,
  servesOnTakenPort,
  spawnLocalServe,
  spawnServe,
  waitFor,
  type Spawned,
} from './serve-helpers';

beforeAll(buildDist, 120_000);

const ADMISSION = join(__dirname, '..', 'fixtures', 'admission', 'pod-create-deployment.json');

interface LogLine {
  readonly msg: string;
  readonly pid: number;
  readonly role?: string;
  readonly workers?: number;
  readonly code?: number | null;
  readonly signal?: string | null;
}

const lines = (s: Spawned): LogLine[] =>
  s.stderr.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as LogLine);

const workerPids = (s: Spawned): number[] => [
  ...new Set(
    lines(s)
      .filter((l) => l.msg === 'worker is ready')
      .map((l) => l.pid),
  ),
];

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Pids of the processes whose command line holds `text`. */
function processesWith(text: string): number[] {
  return readdirSync('/proc')
    .filter((name) => /^[0-9]+$/.test(name))
    .filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(text);
      } catch {
        return false;
      }
    })
    .map(Number);
}

/** The value of one sample of the Prometheus text, or undefined. */
function sample(text: string, name: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

describe('mooring serve --workers 2', () => {
  let dir: string;
  let s: Spawned;
  let ports: { webhook: number; admin: number };
  let ca: string;
  let adminToken: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'mooring-workers-'));
    s = spawnLocalServe(join(dir, 'store'), '--workers', '2');
    ports = await readyPorts(s);
    ca = readFileSync(join(dir, 'store', 'root-cert.pem'), 'utf8');
    adminToken = readFileSync(join(dir, 'store', 'admin-token'), 'utf8').trim();
  }, 60_000);

  afterAll(async () => {
    s.child.kill('SIGKILL');
    for (const pid of workerPids(s)) if (alive(pid)) process.kill(pid, 'SIGKILL');
    await s.exit;
    rmSync(dir, { recursive: true, force: true });
  });

  const review = (): Promise<{ status: number; body: string; serial: string }> =>
    httpsCall({
      port: ports.webhook,
      ca,
      method: 'POST',
      path: '/inject',
      headers: { 'content-type': 'application/json' },
      body: readFileSync(ADMISSION, 'utf8'),
    });

  it('is ready once both workers are, and says so on the admin port', async () => {
    const ready = lines(s).find((l) => l.msg === 'mooring serve is ready');
    expect(ready).toMatchObject({ role: 'primary', workers: 2 });
    // A worker's own log line may reach stderr after the primary has heard, over IPC, that it is
    // ready (each process writes its log asynchronously).
    await waitFor('both workers to log that they are ready', () =>
      workerPids(s).length >= 2 ? true : undefined,
    );
    expect(workerPids(s)).toHaveLength(2);
    expect(workerPids(s)).not.toContain(s.child.pid);
    const readyz = await httpGet(ports.admin, '/readyz');
    expect(readyz.status).toBe(200);
    expect(JSON.parse(readyz.body)).toMatchObject({ checks: { workersReady: true } });
  });

  it('answers on one HTTPS port from both workers, each pinned to the CA', async () => {
    const serials = new Set<string>();
    for (let i = 0; i < 8; i++) {
      const answer = await review();
      expect(answer.status).toBe(200);
      expect(JSON.parse(answer.body)).toMatchObject({ response: { allowed: true } });
      serials.add(answer.serial);
    }
    // New connections go round-robin: both workers' serving certificates were seen.
    expect(serials.size).toBe(2);
  });

  it('serves the metrics of all workers summed, and its own', async () => {
    const before = await httpGet(ports.admin, '/metrics');
    const issued = (text: string): number =>
      sample(text, 'mooring_certificates_issued_total{result="rejected",key_type="unknown"}') ?? 0;
    // Six refused certificate requests (no CSR) over fresh connections, spread over both.
    for (let i = 0; i < 6; i++) {
      const answer = await httpsCall({
        port: ports.webhook,
        ca,
        method: 'POST',
        path: '/v1/admin/certificates',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${adminToken}` },
        body: JSON.stringify({ spiffeId: 'spiffe://cluster.local/ns/a/sa/b' }),
      });
      expect(answer.status).toBe(400);
    }
    const after = await httpGet(ports.admin, '/metrics');
    expect(issued(after.body) - issued(before.body)).toBe(6);
    expect(sample(after.body, 'mooring_workers{state="ready"}')).toBe(2);
    expect(sample(after.body, 'mooring_workers{state="configured"}')).toBe(2);
    // One expiry series per worker's serving certificate; the shared root once.
    expect(
      after.body.match(/^mooring_serving_certificate_expiry_timestamp_seconds\{/gm),
    ).toHaveLength(2);
    expect(after.body.match(/^mooring_ca_root_expiry_timestamp_seconds\{/gm)).toHaveLength(1);
  });

  it('replaces a worker that dies and keeps answering', async () => {
    const [victim] = workerPids(s);
    process.kill(victim as number, 'SIGKILL');
    // Once the primary knows, and until the replacement is ready (1 s of backoff, then its
    // start), the metrics are the primary's own, at once: the restart is visible.
    await waitFor('the primary to see the exit', () =>
      lines(s).some((l) => l.msg === 'a worker exited unexpectedly: starting a new one')
        ? true
        : undefined,
    );
    const during = await httpGet(ports.admin, '/metrics');
    expect(during.status).toBe(200);
    expect(sample(during.body, 'mooring_worker_restarts_total')).toBe(1);
    expect(sample(during.body, 'mooring_workers{state="ready"}')).toBe(1);
    expect(during.body).not.toContain('mooring_certificates_issued_total');
    await waitFor('a third worker', () => (workerPids(s).length === 3 ? true : undefined), 20_000);
    await waitFor('ready again', async () =>
      (await httpGet(ports.admin, '/readyz')).status === 200 ? true : undefined,
    );
    expect(lines(s)).toContainEqual(
      expect.objectContaining({
        msg: 'a worker exited unexpectedly: starting a new one',
        signal: 'SIGKILL',
      }),
    );
    const metrics = await httpGet(ports.admin, '/metrics');
    expect(sample(metrics.body, 'mooring_worker_restarts_total')).toBe(1);
    for (let i = 0; i < 4; i++) expect((await review()).status).toBe(200);
  }, 40_000);

  it('on SIGTERM stops every worker and exits 0', async () => {
    const pids = workerPids(s).filter(alive);
    expect(pids).toHaveLength(2);
    s.child.kill('SIGTERM');
    const { code } = await s.exit;
    expect(code).toBe(0);
    await waitFor('the workers to exit', () => (pids.some(alive) ? undefined : true));
    expect(await portOpen(ports.webhook)).toBe(false);
    expect(await portOpen(ports.admin)).toBe(false);
    const last = lines(s).filter((l) => l.pid === s.child.pid);
    expect(last[last.length - 1]?.msg).toBe('stopped');
  }, 40_000);
});

describe('mooring serve --workers: the primary killed', () => {
  it('takes its workers down with it: none serves on unsupervised', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mooring-workers-'));
    const s = spawnLocalServe(join(dir, 'store'), '--workers', '2');
    try {
      const ports = await readyPorts(s);
      // Each worker's 'worker is ready' line may reach the pipe after the primary's.
      const pids = await waitFor('both workers to log', () => {
        const found = workerPids(s);
        return found.length === 2 ? found : undefined;
      });
      s.child.kill('SIGKILL');
      await s.exit;
      await waitFor('the workers to exit', () => (pids.some(alive) ? undefined : true));
      expect(await portOpen(ports.webhook)).toBe(false);
    } finally {
      s.child.kill('SIGKILL');
      for (const pid of workerPids(s)) if (alive(pid)) process.kill(pid, 'SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('mooring serve --workers: failures', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mooring-workers-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('exits 1, naming the address, when the workers cannot listen', async () => {
    const stderr = await servesOnTakenPort('--listen', [
      '--workers',
      '2',
      '--data-dir',
      join(dir, 'store'),
    ]);
    expect(stderr.join('\n')).toContain('a worker failed before it was ready: stopping');
  }, 60_000);

  it('exits 1, naming the address, when the admin port is taken, and leaves no process', async () => {
    await servesOnTakenPort('--admin-listen', ['--workers', '2', '--data-dir', join(dir, 'store')]);
    // No process of this server is left: none runs with its data directory.
    await waitFor('the workers to exit', () =>
      processesWith(join(dir, 'store')).length === 0 ? true : undefined,
    );
  }, 60_000);

  it.each([
    ['--workers', 'two', '--workers must be a number from 1 to 64, or auto; got "two"'],
    ['--workers', '0', '--workers must be a number from 1 to 64, or auto; got "0"'],
    ['--workers', '65', '--workers must be a number from 1 to 64, or auto; got "65"'],
    [
      '--inject-threads',
      '1.5',
      '--inject-threads must be a number from 0 to 64, or auto; got "1.5"',
    ],
    ['--inject-threads', '65', '--inject-threads must be a number from 0 to 64, or auto; got "65"'],
  ])(
    'refuses %s %s as a usage error (exit 2)',
    async (flag, value, message) => {
      const s = spawnServe([flag, value, '--data-dir', join(dir, 'store')]);
      const { code } = await s.exit;
      expect(code).toBe(2);
      expect(s.stderr.join('\n')).toContain(message);
    },
    30_000,
  );
});

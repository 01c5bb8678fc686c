// Crash safety of the local store: a child process writes the CA store and is SIGKILLed right
// after each write step of each rotation phase, and at random moments of an endless rotation
// loop. After each crash the store must load, hold the old or the new state (never a mix), and
// issue a certificate that verifies against its bundle.

import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import {
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import ts from 'typescript';
import { FileCAStore, STORE_FILES } from '../../src/adapters/file-store';
import { openLocalCA } from '../../src/adapters/local-ca';
import { bundleRoots, checkState, type CAState, type RootStatus } from '../../src/ca/rotation';
import { validateConfig } from '../../src/config/validate';
import { csrPem, verifiesAgainst } from '../unit/ca/fixtures';
import type { ChildArgs } from './ca-store-crash.child';

jest.setTimeout(300_000);

const ROOT = join(__dirname, '..', '..');
const RAW_CONFIG = {
  ca: {
    workloadDefaultTtlSeconds: 3600,
    workloadMaxTtlSeconds: 86400,
    servingCertLifetimeSeconds: 2 * 86400,
    rotation: { auto: false, propagationDelaySeconds: 43200, checkIntervalSeconds: 60 },
  },
};
const CONFIG = validateConfig(RAW_CONFIG);
const T0 = new Date('2030-01-01T00:00:00Z');
const hours = (h: number): Date => new Date(T0.getTime() + h * 3600 * 1000);

// --- the child, transpiled once (no type check: the parent's ts-jest already checked it) -----

let build: string;
function transpileTree(): string {
  const out = mkdtempSync(join(tmpdir(), 'mooring-crash-build-'));
  const files: string[] = [join(__dirname, 'ca-store-crash.child.ts')];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith('.ts')) files.push(path);
    }
  };
  walk(join(ROOT, 'src'));
  for (const file of files) {
    const js = ts.transpileModule(readFileSync(file, 'utf8'), {
      compilerOptions: {
        module: ts.ModuleKind.CommonJS,
        target: ts.ScriptTarget.ES2022,
        esModuleInterop: true,
      },
      fileName: file,
    }).outputText;
    const target = join(out, relative(ROOT, file)).replace(/\.ts$/, '.js');
    mkdirSync(dirname(target), { recursive: true });
    writeFileSync(target, js);
  }
  return join(out, 'test', 'integration', 'ca-store-crash.child.js');
}

interface ChildResult {
  readonly signal: NodeJS.Signals | null;
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function runChild(args: Omit<ChildArgs, 'config'>, killAfterMs?: number): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [build, JSON.stringify({ ...args, config: RAW_CONFIG })],
      {
        env: { ...process.env, NODE_PATH: join(ROOT, 'node_modules') },
      },
    );
    let stdout = '';
    let stderr = '';
    let timer: NodeJS.Timeout | undefined;
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      // Start the random delay once the loop is running (startup time is not a write).
      if (killAfterMs !== undefined && timer === undefined && stdout.includes('iteration')) {
        timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      }
    });
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (timer !== undefined) clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

// --- checks after a crash ----------------------------------------------------------------------

const statuses = (s: CAState | null): RootStatus[] | null => s?.roots.map((r) => r.status) ?? null;

async function loadState(dir: string): Promise<CAState | null> {
  const loaded = await new FileCAStore(dir).load();
  return loaded === null ? null : checkState(loaded.state);
}

/** Temporary files may survive a crash, but those holding keys must be 0600. */
function checkTemps(dir: string): void {
  for (const name of readdirSync(dir)) {
    if (name.startsWith(`.${STORE_FILES.state}.`))
      expect(statSync(join(dir, name)).mode & 0o777).toBe(0o600);
  }
}

/** Restarts on `dir` at `now`: loads, issues a certificate, and checks it and the export. */
async function restartAndIssue(dir: string, now: Date): Promise<void> {
  const { authority } = await openLocalCA({
    config: CONFIG,
    dataDir: dir,
    create: true,
    clock: { now: () => now },
  });
  const chain = await authority.issueWorkload({
    csrPem: csrPem(),
    spiffeId: 'spiffe://cluster.local/ns/a/sa/b',
  });
  expect(verifiesAgainst(chain.certificateChain[0] as string, chain.trustBundle, now)).toBe(true);
  const exported = readFileSync(join(dir, STORE_FILES.rootExport), 'utf8');
  expect(exported).toBe(chain.trustBundle.map((p) => new X509Certificate(p).toString()).join(''));
}

beforeAll(() => {
  build = transpileTree();
});

describe('killing the process at each write step of each rotation phase', () => {
  const phases: {
    phase: NonNullable<ChildArgs['phase']>;
    now: Date;
    before: RootStatus[] | null;
    after: RootStatus[];
  }[] = [
    { phase: 'init', now: T0, before: null, after: ['active'] },
    { phase: 'rotate', now: hours(24), before: ['active'], after: ['active', 'pending'] },
    {
      phase: 'activate',
      now: hours(36),
      before: ['active', 'pending'],
      after: ['retired', 'active'],
    },
    // Removal: activated at 36 h, longest issued lifetime 48 h, grace 60 s.
    { phase: 'remove', now: hours(85), before: ['retired', 'active'], after: ['active'] },
  ];

  it('always leaves the old or the new state, which loads and issues', async () => {
    let base = mkdtempSync(join(tmpdir(), 'mooring-crash-base-'));
    let crashes = 0;
    for (const { phase, now, before, after } of phases) {
      // The phase without a crash: counts its write steps, and gives the next phase its base.
      const clean = mkdtempSync(join(tmpdir(), 'mooring-crash-clean-'));
      cpSync(base, clean, { recursive: true });
      const full = await runChild({ dataDir: clean, mode: 'phase', phase, now: now.toISOString() });
      expect(full.stderr).toBe('');
      const steps = Number(/done (\d+)/.exec(full.stdout)?.[1]);
      // state: temp-written, temp-synced, renamed, dir-synced; then the same for root-cert.pem.
      expect(steps).toBe(8);
      expect(statuses(await loadState(clean))).toEqual(after);

      const beforeState = await loadState(base);
      for (let n = 1; n <= steps; n++) {
        const dir = mkdtempSync(join(tmpdir(), `mooring-crash-${phase}-${n}-`));
        cpSync(base, dir, { recursive: true });
        const crashed = await runChild({
          dataDir: dir,
          mode: 'phase',
          phase,
          now: now.toISOString(),
          crashAt: n,
        });
        expect(crashed.signal).toBe('SIGKILL');
        crashes++;
        checkTemps(dir);
        const state = await loadState(dir);
        // Old or new, as a whole: the state file is renamed (or linked, for init) at step 3.
        if (n < 3) expect(state).toEqual(beforeState);
        const kept = (beforeState?.roots ?? []).filter((r) =>
          state?.roots.some((x) => x.certPem === r.certPem),
        );
        expect(kept.length).toBe(
          (beforeState?.roots.length ?? 0) - (n >= 3 && phase === 'remove' ? 1 : 0),
        );
        expect(statuses(state)).toEqual(n < 3 ? before : after);
        // The restart: loads, repairs the export, issues; then the phase completes.
        await restartAndIssue(dir, now);
        const resume = n < 3 || phase === 'init' ? phase : 'activate';
        const resumed = await runChild({
          dataDir: dir,
          mode: 'phase',
          phase: resume,
          now: now.toISOString(),
        });
        expect(resumed.stderr).toBe('');
        expect(statuses(await loadState(dir))).toEqual(after);
      }
      base = clean;
    }
    expect(crashes).toBe(32);
  });
});

describe('killing the process at random moments of endless rotations', () => {
  it('restarts every time on the old or the new state, and issues', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mooring-crash-loop-'));
    let now = T0;
    let iterations = 0;
    for (let run = 0; run < 12; run++) {
      const result = await runChild(
        { dataDir: dir, mode: 'loop', now: now.toISOString() },
        10 + Math.floor(Math.random() * 300),
      );
      expect(result.stderr).toBe('');
      expect(result.signal).toBe('SIGKILL');
      iterations += (result.stdout.match(/^iteration /gm) ?? []).length;
      checkTemps(dir);
      const state = await loadState(dir);
      expect(state).not.toBeNull();
      // Time moves on from the last instant recorded in the state.
      const times = (state as CAState).roots.flatMap((r) => [
        r.addedAt,
        r.activatedAt,
        r.retiredAt,
      ]);
      now = new Date(
        Math.max(...times.filter((t): t is string => t !== undefined).map((t) => Date.parse(t))) +
          1000,
      );
      await restartAndIssue(dir, now);
      expect(bundleRoots(state as CAState).length).toBeGreaterThanOrEqual(1);
    }
    // The loop really rotated: each iteration starts or advances a rotation.
    expect(iterations).toBeGreaterThan(12);
  });
});

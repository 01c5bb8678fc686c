// The local CA store in --data-dir (local mode):
//
//   ca-state.json   the whole CA state (roots, their keys, rotation times) in ONE file, 0600
//                   (refused when others could read or write it: private-file.ts),
//                   written atomically: a rotation step that changes several roots at once is
//                   one rename, so a crash leaves the old state or the new one.
//   root-cert.pem   convenience export of the trust bundle (0644), rewritten after the state and
//                   repaired on load if a crash left it behind.
//   .ca-state.lock  held (O_EXCL, with the holder's pid) while a write checks the version and
//                   renames, so that `mooring ca rotate` and a running server cannot interleave.
//
// The version of the state is the SHA-256 of the file's bytes: save(state, expected) fails with
// CA_ERR_CONFLICT if someone else wrote in between. `mooring serve` calls Authority.tick() on a
// timer, which reloads the state when the version changed (e.g. after `mooring ca rotate`).

import { createHash } from 'node:crypto';
import { link, mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { bundleRoots, type CAState } from '../ca/rotation';
import type { KeyStore, StoredCAState } from '../ca/ports';
import { MooringError } from '../errors';
import { removeStaleTemps, writeFileAtomic, type StepObserver } from './atomic-file';
import { checkDataDir, readPrivateFile } from './private-file';

export const STORE_FILES = {
  state: 'ca-state.json',
  rootExport: 'root-cert.pem',
  lock: '.ca-state.lock',
} as const;

export const KEY_FILE_MODE = 0o600;
export const PUBLIC_FILE_MODE = 0o644;
export const DATA_DIR_MODE = 0o700;

export interface FileStoreOptions {
  /** Test hook of the crash tests: observes every step of every write. Never set in production. */
  readonly observe?: StepObserver;
  /** How long a write waits for another writer's lock. */
  readonly lockTimeoutMs?: number;
}

const storeError = (message: string, cause?: unknown): MooringError =>
  new MooringError('CA_ERR_STORE', message, cause === undefined ? undefined : { cause });

const versionOf = (bytes: Buffer): string =>
  createHash('sha256').update(bytes).digest('hex').slice(0, 32);

export const serializeState = (state: CAState): Buffer =>
  Buffer.from(`${JSON.stringify(state, null, 2)}\n`, 'utf8');

/** The text of root-cert.pem: each root's PEM on its own lines. */
export const bundleText = (pems: readonly string[]): string =>
  pems.map((pem) => `${pem.trim()}\n`).join('');

const bundlePem = (state: CAState): string => bundleText(bundleRoots(state).map((r) => r.certPem));

async function readIfExists(path: string): Promise<Buffer | null> {
  try {
    return await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw storeError(`cannot read ${path}: ${(err as Error).message}`, err);
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class FileCAStore implements KeyStore<CAState> {
  readonly statePath: string;
  readonly exportPath: string;
  private readonly lockPath: string;

  constructor(
    readonly dataDir: string,
    private readonly options: FileStoreOptions = {},
  ) {
    this.statePath = join(dataDir, STORE_FILES.state);
    this.exportPath = join(dataDir, STORE_FILES.rootExport);
    this.lockPath = join(dataDir, STORE_FILES.lock);
  }

  /** True if the store holds a CA state. */
  async exists(): Promise<boolean> {
    return (await readIfExists(this.statePath)) !== null;
  }

  async load(): Promise<StoredCAState<CAState> | null> {
    await checkDataDir(this.dataDir);
    const bytes = await readPrivateFile(this.statePath);
    if (bytes === null) return null;
    let state: CAState;
    try {
      state = JSON.parse(bytes.toString('utf8')) as CAState;
    } catch (err) {
      throw storeError(`${this.statePath} is not valid JSON`, err);
    }
    await this.repairExport(state);
    return { state, version: versionOf(bytes) };
  }

  async save(state: CAState, expectedVersion: string | null): Promise<string> {
    await mkdir(this.dataDir, { recursive: true, mode: DATA_DIR_MODE });
    return this.withLock(async () => {
      const current = await readIfExists(this.statePath);
      const currentVersion = current === null ? null : versionOf(current);
      if (currentVersion !== expectedVersion) {
        throw new MooringError(
          'CA_ERR_CONFLICT',
          expectedVersion === null
            ? `a CA already exists in ${this.dataDir}`
            : `the CA state in ${this.dataDir} was changed by another process`,
        );
      }
      await removeStaleTemps(this.statePath);
      await removeStaleTemps(this.lockPath);
      const bytes = serializeState(state);
      await writeFileAtomic(this.statePath, bytes, {
        mode: KEY_FILE_MODE,
        exclusive: expectedVersion === null,
        ...(this.options.observe === undefined ? {} : { observe: this.options.observe }),
      });
      await this.writeExport(state);
      return versionOf(bytes);
    });
  }

  private async writeExport(state: CAState): Promise<void> {
    await writeFileAtomic(this.exportPath, bundlePem(state), {
      mode: PUBLIC_FILE_MODE,
      ...(this.options.observe === undefined ? {} : { observe: this.options.observe }),
    });
  }

  /** Rewrites root-cert.pem if a crash between the two writes left it behind the state. */
  private async repairExport(state: CAState): Promise<void> {
    const want = bundlePem(state);
    const have = await readIfExists(this.exportPath);
    if (have !== null && have.toString('utf8') === want) return;
    try {
      await this.writeExport(state);
    } catch {
      // A read-only data dir still loads; the export is a convenience.
    }
  }

  // --- the write lock ------------------------------------------------------------------------

  private async withLock<T>(fn: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + (this.options.lockTimeoutMs ?? 10_000);
    while (!(await this.tryLock())) {
      if (Date.now() > deadline) {
        throw storeError(`timed out waiting for the lock ${this.lockPath} held by another process`);
      }
      await sleep(20);
    }
    try {
      return await fn();
    } finally {
      await unlink(this.lockPath).catch(() => undefined);
      locksHeldHere.delete(this.lockPath);
    }
  }

  private async tryLock(): Promise<boolean> {
    if (locksHeldHere.has(this.lockPath)) return false;
    // The lock appears with its content in one step (link of a written temporary file), so a
    // crash never leaves an empty lock that nobody could prove stale.
    const temp = join(this.dataDir, `.${STORE_FILES.lock}.${process.pid}.tmp`);
    await writeFile(temp, String(process.pid), { mode: KEY_FILE_MODE });
    try {
      await link(temp, this.lockPath);
      locksHeldHere.add(this.lockPath);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw storeError(`cannot create the lock ${this.lockPath}`, err);
      }
    } finally {
      await unlink(temp).catch(() => undefined);
    }
    // Someone holds it: take it over if its holder is gone (crashed mid-write).
    const content = await readIfExists(this.lockPath);
    if (content === null) return false;
    const holder = Number(content.toString('utf8'));
    if (!Number.isInteger(holder) || holder <= 0 || !isOtherProcessAlive(holder)) {
      await unlink(this.lockPath).catch(() => undefined);
    }
    return false;
  }
}

/** Lock files this process holds right now (several stores may share a data dir in tests). */
const locksHeldHere = new Set<string>();

/** A lock file naming this very pid but not held here (a restarted container's pid 1) is stale. */
function isOtherProcessAlive(pid: number): boolean {
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

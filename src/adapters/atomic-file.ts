// Crash-safe file writes: the content goes to a temporary file in the same directory, which is
// flushed (fsync), then renamed over the target (atomic on POSIX), then the directory is flushed
// so that the rename itself survives a power loss. A crash at any point leaves the old file or
// the new one, never a mix; at worst a stray temporary file, removed by removeStaleTemps().

import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { chmod, link, open, readdir, rename, rm, symlink, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** The steps of an atomic write, in order. */
export const ATOMIC_STEPS = ['temp-written', 'temp-synced', 'renamed', 'dir-synced'] as const;
export type AtomicStep = (typeof ATOMIC_STEPS)[number];

/**
 * Observes each step of a write. Only the crash tests pass one (to kill the process right after
 * a given step); production code never does, so it has no effect there.
 */
export type StepObserver = (step: AtomicStep, path: string) => void;

export interface AtomicWriteOptions {
  /** File mode, applied with chmod (not subject to the umask). */
  readonly mode: number;
  /** Create only: fail with code EEXIST if the target exists (link instead of rename). */
  readonly exclusive?: boolean;
  readonly observe?: StepObserver;
}

const TEMP_SUFFIX = '.tmp';
const tempName = (target: string): string =>
  join(
    dirname(target),
    `.${basename(target)}.${process.pid}.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`,
  );

/** fsync a directory, so that a rename or link in it is durable. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Creates `path` (it must not exist) with `data` and `mode` (whatever the umask) and flushes it
 * (fsync) before it resolves. `written` runs between the write and the flush.
 */
export async function writeNewFileSynced(
  path: string,
  data: string | Buffer,
  mode: number,
  written: () => void = () => undefined,
): Promise<void> {
  const handle = await open(path, 'wx', mode);
  try {
    await handle.chmod(mode);
    await handle.writeFile(data);
    written();
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes `data` to `target` atomically and durably, with `options.mode`. */
export async function writeFileAtomic(
  target: string,
  data: string | Buffer,
  options: AtomicWriteOptions,
): Promise<void> {
  const temp = tempName(target);
  const observe = options.observe ?? (() => undefined);
  try {
    await writeNewFileSynced(temp, data, options.mode, () => observe('temp-written', target));
    observe('temp-synced', target);
    if (options.exclusive) {
      await link(temp, target);
      await unlink(temp);
    } else {
      await rename(temp, target);
    }
    observe('renamed', target);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await syncDirectory(dirname(target));
  observe('dir-synced', target);
}

/**
 * Points the symbolic link `dir/name` at `target` atomically: a temporary link renamed over it,
 * so that a reader sees the old target or the new one, never none. Not flushed: call
 * syncDirectory(dir) once the directory holds what it should.
 */
export async function replaceSymlink(dir: string, name: string, target: string): Promise<void> {
  const temp = join(dir, `.${name}.${process.pid}.${randomBytes(6).toString('hex')}${TEMP_SUFFIX}`);
  await symlink(target, temp);
  try {
    await rename(temp, join(dir, name));
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

const isAlive = (pid: number): boolean => {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * Removes temporary files of `target` left by writers that died (their pid is gone). Returns
 * how many were removed.
 */
export async function removeStaleTemps(target: string): Promise<number> {
  const dir = dirname(target);
  const prefix = `.${basename(target)}.`;
  let removed = 0;
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return 0;
  }
  for (const name of names) {
    if (!name.startsWith(prefix) || !name.endsWith(TEMP_SUFFIX)) continue;
    const pid = Number(name.slice(prefix.length).split('.')[0]);
    if (!Number.isInteger(pid) || isAlive(pid)) continue;
    await unlink(join(dir, name)).catch(() => undefined);
    removed++;
  }
  return removed;
}

/** chmod that ignores a missing file. */
export async function chmodIfExists(path: string, mode: number): Promise<void> {
  await chmod(path, mode).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

// The secrets of local mode's data directory (ca-state.json with the root keys, admin-token,
// tokens.json) are trusted only when nobody else could have written or read them, as sshd's
// StrictModes does for its keys: the directory is owned by this user (or root) and not writable
// by group or others; each file is a regular file (never followed through a symbolic link), owned
// by this user (or root), with no access for group or others. Otherwise another local user could
// plant an admin token or swap in a CA whose key they hold. Errors say what to run to fix it.

import { constants, type Stats } from 'node:fs';
import { lstat, open, stat } from 'node:fs/promises';
import { MooringError } from '../errors';

/**
 * What is wrong with a private file, as a client may be told: `unsafe` (someone else could have
 * read or written it: mode, owner, link, not a regular file, its directory) or `unreadable`.
 */
export type FileProblem = 'unsafe' | 'unreadable';

/** A private file that cannot be trusted or read: CA_ERR_STORE, with the kind of problem. */
export class PrivateFileError extends MooringError {
  constructor(
    readonly problem: FileProblem,
    message: string,
    cause?: unknown,
  ) {
    super('CA_ERR_STORE', message, cause === undefined ? undefined : { cause });
  }
}

const unreadable = (message: string, cause?: unknown): MooringError =>
  new PrivateFileError('unreadable', message, cause);
const unsafe = (message: string): MooringError => new PrivateFileError('unsafe', message);

const octal = (mode: number): string => `0${(mode & 0o777).toString(8)}`;

function checkOwner(path: string, s: Stats): void {
  const uid = process.geteuid?.();
  if (uid === undefined || s.uid === uid || s.uid === 0) return;
  throw unsafe(
    `${path} belongs to uid ${s.uid}, not to the user running Mooring (uid ${uid}): another user could have written it; check it, then chown it`,
  );
}

/** Throws unless `dir` (if it exists) is a directory only this user (or root) can write to. */
export async function checkDataDir(dir: string): Promise<void> {
  let s: Stats;
  try {
    s = await stat(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw unreadable(`cannot read the data directory ${dir}: ${(err as Error).message}`, err);
  }
  if (!s.isDirectory()) throw unsafe(`the data directory ${dir} is not a directory`);
  checkOwner(dir, s);
  if (s.mode & 0o022) {
    throw unsafe(
      `the data directory ${dir} is writable by group or others (mode ${octal(s.mode)}): whoever can write there could replace the CA or its credentials; run chmod 700 ${dir}`,
    );
  }
}

/** The check of a file's metadata: cheap, to notice a change without reading the file. */
export async function fileSignature(path: string): Promise<string | null> {
  try {
    const s = await lstat(path);
    return `${s.ino}:${s.size}:${s.mtimeMs}:${s.mode}:${s.uid}`;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw unreadable(`cannot read ${path}: ${(err as Error).message}`, err);
  }
}

/**
 * The bytes of a private file, null if it does not exist. Opened without following a symbolic
 * link, then checked on the open file (no window between the check and the read).
 */
export async function readPrivateFile(path: string): Promise<Buffer | null> {
  let handle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return null;
    if (code === 'ELOOP') {
      throw unsafe(
        `${path} is a symbolic link: Mooring reads its keys and credentials only from regular files in its data directory`,
      );
    }
    throw unreadable(`cannot read ${path}: ${(err as Error).message}`, err);
  }
  try {
    const s = await handle.stat();
    if (!s.isFile()) throw unsafe(`${path} is not a regular file`);
    checkOwner(path, s);
    if (s.mode & 0o077) {
      throw unsafe(`${path} holds secrets but its mode is ${octal(s.mode)}: run chmod 600 ${path}`);
    }
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

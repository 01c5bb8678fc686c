// The agent's output directory, updated the way the kubelet updates a ConfigMap volume: every
// update is a new versioned directory, and one atomic rename of the `..data` symlink switches
// all files at once.
//
//   out/..v1732465500123-3f9a/{cert-chain.pem,key.pem,root-cert.pem}   the files (key 0600)
//   out/..data -> ..v1732465500123-3f9a                                 switched by rename(2)
//   out/cert-chain.pem -> ..data/cert-chain.pem                         stable names
//   out/key.pem        -> ..data/key.pem
//   out/root-cert.pem  -> ..data/root-cert.pem
//
// Each file is written to its new directory and fsynced before the switch, so a reader never
// sees a half-written file. Certificate and key change together: a reader that resolves `..data`
// once (or opens `..data/key.pem` and `..data/cert-chain.pem` through one realpath) always gets a
// matching pair; Envoy's `watched_directory` does exactly this. A reader that opens the two
// stable names one after the other can straddle a switch; such a reader should compare the
// key with the leaf and re-read on a mismatch. The previous version is kept until the next
// switch, so a reader that resolved `..data` just before a switch can still finish reading.

import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { replaceSymlink, syncDirectory, writeNewFileSynced } from '../../adapters/atomic-file';

export const FILES = {
  chain: 'cert-chain.pem',
  key: 'key.pem',
  root: 'root-cert.pem',
} as const;
export type FileName = (typeof FILES)[keyof typeof FILES];

export const DATA_LINK = '..data';
const VERSION_PREFIX = '..v';
const FILE_MODES: Record<FileName, number> = {
  'cert-chain.pem': 0o644,
  'key.pem': 0o600,
  'root-cert.pem': 0o644,
};

export type DirectoryContent = Partial<Record<FileName, string>>;

async function readLink(p: string): Promise<string | null> {
  try {
    return await fs.readlink(p);
  } catch {
    return null;
  }
}

export class CertDirectory {
  constructor(
    readonly dir: string,
    private readonly nowMs: () => number = Date.now,
  ) {}

  /** Writes `content` as a new version and switches to it. Returns the version's name. */
  async write(content: DirectoryContent): Promise<string> {
    // Never writable by others, whatever the umask: whoever could write here could swap `..data`.
    await fs.mkdir(this.dir, { recursive: true, mode: 0o755 });
    const version = `${VERSION_PREFIX}${this.nowMs()}-${randomBytes(4).toString('hex')}`;
    const versionDir = path.join(this.dir, version);
    await fs.mkdir(versionDir, { mode: 0o755 });
    const names = (Object.keys(content) as FileName[]).filter((n) => content[n] !== undefined);
    for (const name of names) {
      await writeNewFileSynced(
        path.join(versionDir, name),
        content[name] as string,
        FILE_MODES[name],
      );
    }
    await syncDirectory(versionDir);

    const previous = await readLink(path.join(this.dir, DATA_LINK));
    await replaceSymlink(this.dir, DATA_LINK, version);
    for (const name of names) {
      const target = path.join(DATA_LINK, name);
      if ((await readLink(path.join(this.dir, name))) !== target) {
        await replaceSymlink(this.dir, name, target);
      }
    }
    await syncDirectory(this.dir);
    await this.removeOldVersions([version, previous]);
    return version;
  }

  /** The current version's files, or null when there is no version yet. */
  async read(): Promise<DirectoryContent | null> {
    const version = await readLink(path.join(this.dir, DATA_LINK));
    if (version === null) return null;
    const content: DirectoryContent = {};
    for (const name of Object.values(FILES)) {
      try {
        content[name] = await fs.readFile(path.join(this.dir, version, name), 'utf8');
      } catch {
        // absent in this version
      }
    }
    return content;
  }

  /** Removes every version directory but the ones named in `keep`. */
  private async removeOldVersions(keep: readonly (string | null)[]): Promise<void> {
    const entries = await fs.readdir(this.dir, { withFileTypes: true });
    for (const entry of entries) {
      if (
        entry.isDirectory() &&
        entry.name.startsWith(VERSION_PREFIX) &&
        !keep.includes(entry.name)
      ) {
        await fs.rm(path.join(this.dir, entry.name), { recursive: true, force: true });
      }
    }
  }
}

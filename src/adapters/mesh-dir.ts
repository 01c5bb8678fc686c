// Local mode's mesh source (`mooring serve --mesh-dir DIR`): every `*.yaml`, `*.yml` and
// `*.json` file of DIR (not its subdirectories; hidden files and editor leftovers are not read).
// DIR is watched for change notifications (inotify: a change is seen within milliseconds, a
// ConfigMap mounted as DIR included, whose files change by a symbolic-link swap in DIR), and
// scanned every `pollMs` as a safety net (5 s; 500 ms where notifications are not available, so
// that a change is still seen within a second). A file is read again only when its inode, size
// or times change. What is
// wrong is logged once with its file, kind, name and field, shown by problems(), and skipped
// (src/mesh/files.ts); the rest of the mesh keeps working.

import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { MooringError } from '../errors';
import {
  isMeshFile,
  MeshFileSet,
  readMeshFile,
  type FileObjects,
  type MeshModel,
  type ObjectProblem,
} from '../mesh';

export interface SourceLogger {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface MeshDirOptions {
  readonly dir: string;
  readonly model: MeshModel;
  readonly log: SourceLogger;
  /** Called after the model changed (the push debounces). */
  readonly onChange: () => void;
  /**
   * How often the directory is scanned besides notifications. Default 5 s with notifications,
   * 500 ms without.
   */
  readonly pollMs?: number;
  /** Use change notifications (default true); the poll always runs. */
  readonly watch?: boolean;
  /** Larger files are refused (reported and skipped). Default 32 MiB. */
  readonly maxFileBytes?: number;
}

interface FileState {
  readonly signature: string;
  readonly result: FileObjects;
}

/** What identifies a problem, to log each one once. */
const problemKey = (p: ObjectProblem): string =>
  [p.source, p.kind, p.namespace, p.name, p.field, p.message, p.effect].join('\u0000');

export class MeshDirSource {
  readonly dir: string;
  private readonly files = new Map<string, FileState>();
  private readonly set = new MeshFileSet();
  private problemList: ObjectProblem[] = [];
  /** Files named by change notifications since the last scan; null: scan everything. */
  private dirtyNames: Set<string> | null = new Set();
  private logged = new Set<string>();
  private watcher: FSWatcher | null = null;
  private poller: NodeJS.Timeout | null = null;
  private debounce: NodeJS.Timeout | null = null;
  private scanning: Promise<void> = Promise.resolve();
  private dirProblem: string | null = null;
  private stopped = false;
  /** Scans done, for tests and the debug view. */
  scans = 0;

  constructor(private readonly options: MeshDirOptions) {
    this.dir = resolve(options.dir);
  }

  /** Reads the directory once (it must exist), then follows it. */
  async start(): Promise<void> {
    let isDir: boolean;
    try {
      isDir = (await stat(this.dir)).isDirectory();
    } catch (err) {
      throw new MooringError(
        'CFG_ERR_READ',
        `--mesh-dir ${this.dir}: cannot read it: ${(err as Error).message}`,
        { cause: err },
      );
    }
    if (!isDir) throw new MooringError('CFG_ERR_READ', `--mesh-dir ${this.dir} is not a directory`);
    await this.check();
    if (this.options.watch !== false) {
      try {
        this.watcher = watch(this.dir, { persistent: false }, (_event, name) =>
          this.schedule(typeof name === 'string' && isMeshFile(name) ? name : null),
        );
        this.watcher.on('error', () => {
          this.watcher?.close();
          this.watcher = null;
          this.poll();
        });
      } catch {
        // Polling alone still sees every change within pollMs.
      }
    }
    this.poll();
    this.options.log.info(
      { meshDir: this.dir, files: this.files.size, objects: this.set.size() },
      'mesh directory loaded',
    );
  }

  /** (Re)starts the scan timer: often without notifications, rarely with them. */
  private poll(): void {
    if (this.poller !== null) clearInterval(this.poller);
    if (this.stopped) return;
    const pollMs = this.options.pollMs ?? (this.watcher === null ? 500 : 5000);
    this.poller = setInterval(() => void this.check(), pollMs);
    this.poller.unref();
  }

  stop(): Promise<void> {
    this.stopped = true;
    this.watcher?.close();
    this.watcher = null;
    if (this.poller !== null) clearInterval(this.poller);
    if (this.debounce !== null) clearTimeout(this.debounce);
    return this.scanning;
  }

  problems(): readonly ObjectProblem[] {
    return this.problemList;
  }

  describe(): Record<string, unknown> {
    return {
      source: 'files',
      meshDir: this.dir,
      files: [...this.files.keys()].sort(),
      objects: this.set.size(),
      ...(this.dirProblem === null ? {} : { problem: this.dirProblem }),
    };
  }

  /**
   * A notification: re-reads the file it names soon (a burst of events is one read); anything
   * else (a ConfigMap's `..data` swap, a directory event) re-reads the whole directory.
   */
  private schedule(name: string | null): void {
    if (this.stopped) return;
    if (name === null) this.dirtyNames = null;
    else this.dirtyNames?.add(name);
    if (this.debounce !== null) return;
    this.debounce = setTimeout(() => {
      this.debounce = null;
      const names = this.dirtyNames;
      this.dirtyNames = new Set();
      this.scanning = this.scanning.then(() =>
        this.stopped ? undefined : names === null ? this.scan() : this.scanFiles([...names]),
      );
    }, 20);
    this.debounce.unref();
  }

  /** Scans the whole directory now (serialised with other scans). */
  check(): Promise<void> {
    this.scanning = this.scanning.then(() => (this.stopped ? undefined : this.scan()));
    return this.scanning;
  }

  private async scan(): Promise<void> {
    this.scans += 1;
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter(isMeshFile).sort();
    } catch (err) {
      // The directory is gone or unreadable: keep the mesh as it is, say it once.
      const problem = `cannot read the mesh directory: ${(err as Error).message}`;
      if (problem !== this.dirProblem) {
        this.options.log.warn(
          { meshDir: this.dir, err: (err as Error).message },
          'cannot read the mesh directory; keeping the mesh as it is',
        );
      }
      this.dirProblem = problem;
      return;
    }
    this.dirProblem = null;
    const present = new Set(names.map((name) => join(this.dir, name)));
    const gone = [...this.files.keys()].filter((path) => !present.has(path));
    await this.update([...present], gone);
  }

  /** Re-reads the named files only (a notification named them). */
  private async scanFiles(names: readonly string[]): Promise<void> {
    const present: string[] = [];
    const gone: string[] = [];
    for (const name of names) {
      const path = join(this.dir, name);
      if (await isFile(path)) present.push(path);
      else if (this.files.has(path)) gone.push(path);
    }
    await this.update(present, gone);
  }

  /** Reads the files that changed among `paths`, forgets `gone`, and updates the model. */
  private async update(paths: readonly string[], gone: readonly string[]): Promise<void> {
    const changes: [string, FileState | null][] = gone.map((path) => [path, null]);
    for (const path of paths) {
      const state = await this.readIfChanged(path);
      if (state !== null) changes.push([path, state]);
    }
    if (changes.length === 0) return;
    let changed = false;
    for (const [path, state] of changes) {
      if (state === null) this.files.delete(path);
      else this.files.set(path, state);
      const { upserts, removes } = this.set.setFile(path, state?.result ?? null);
      for (const ref of removes) changed = this.options.model.remove(ref) || changed;
      for (const obj of upserts) changed = this.options.model.upsert(obj) || changed;
    }
    this.reportProblems();
    if (changed) this.options.onChange();
  }

  /** The file's new state, or null when it did not change (or vanished meanwhile). */
  private async readIfChanged(path: string): Promise<FileState | null> {
    const previous = this.files.get(path) ?? null;
    let signature: string;
    let size: number;
    try {
      const st = await stat(path);
      if (!st.isFile()) return null;
      signature = `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
      size = st.size;
    } catch {
      return null;
    }
    if (previous?.signature === signature) return null;
    const limit = this.options.maxFileBytes ?? 32 * 1024 * 1024;
    if (size > limit) {
      return {
        signature,
        result: {
          objects: previous?.result.objects ?? new Map(),
          ignored: [],
          problems: [
            {
              source: path,
              kind: '',
              namespace: '',
              name: '',
              field: '',
              message: `the file is larger than ${limit} bytes: not read`,
              effect: previous === null ? 'skipped' : 'kept-last-valid',
            },
          ],
        },
      };
    }
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch {
      return null;
    }
    return { signature, result: readMeshFile(path, text, previous?.result ?? null) };
  }

  /** Logs each new problem once. */
  private reportProblems(): void {
    const problems = this.set.problems();
    this.problemList = problems;
    const logged = new Set<string>();
    for (const p of problems) {
      const key = problemKey(p);
      logged.add(key);
      if (this.logged.has(key)) continue;
      this.options.log.warn(
        {
          file: p.source,
          kind: p.kind,
          namespace: p.namespace,
          name: p.name,
          field: p.field,
          effect: p.effect,
          reason: p.message,
        },
        'invalid mesh object',
      );
    }
    this.logged = logged;
  }
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

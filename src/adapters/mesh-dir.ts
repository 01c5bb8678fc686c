// Local mode's mesh source (`mooring serve --mesh-dir DIR`): every `*.yaml`, `*.yml` and
// `*.json` file of DIR (not its subdirectories; hidden files and editor leftovers are not read).
// DIR is watched for change notifications and scanned every `pollMs` as well (a notification can
// be lost; a ConfigMap mounted as DIR changes by a symbolic-link swap), so a change is seen well
// within a second. A file is read again only when its inode, size or times change. What is
// wrong is logged once with its file, kind, name and field, shown by problems(), and skipped
// (src/mesh/files.ts); the rest of the mesh keeps working.

import { watch, type FSWatcher } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { MooringError } from '../errors';
import {
  isMeshFile,
  mergeMeshFiles,
  readMeshFile,
  refOf,
  type FileObjects,
  type MeshModel,
  type ObjectProblem,
  type ObjectRef,
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
  /** How often the directory is scanned besides notifications. Default 500 ms. */
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
  private applied = new Map<string, ObjectRef>();
  private problemList: ObjectProblem[] = [];
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
        this.watcher = watch(this.dir, { persistent: false }, () => this.schedule());
        this.watcher.on('error', () => {
          this.watcher?.close();
          this.watcher = null;
        });
      } catch {
        // Polling alone still sees every change within pollMs.
      }
    }
    this.poller = setInterval(() => void this.check(), this.options.pollMs ?? 500);
    this.poller.unref();
    this.options.log.info(
      { meshDir: this.dir, files: this.files.size, objects: this.applied.size },
      'mesh directory loaded',
    );
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
      objects: this.applied.size,
      ...(this.dirProblem === null ? {} : { problem: this.dirProblem }),
    };
  }

  private schedule(): void {
    if (this.debounce !== null || this.stopped) return;
    this.debounce = setTimeout(() => {
      this.debounce = null;
      void this.check();
    }, 20);
    this.debounce.unref();
  }

  /** Scans the directory now (serialised with other scans). */
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
    let changed = false;
    const seen = new Set<string>();
    for (const name of names) {
      const path = join(this.dir, name);
      seen.add(path);
      const state = await this.readIfChanged(path);
      if (state !== null) {
        this.files.set(path, state);
        changed = true;
      }
    }
    for (const path of [...this.files.keys()]) {
      if (!seen.has(path)) {
        this.files.delete(path);
        changed = true;
      }
    }
    if (changed) this.apply();
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

  /** The merged objects of every file into the model; new problems into the log. */
  private apply(): void {
    const { objects, problems } = mergeMeshFiles(
      [...this.files].map(([path, s]) => [path, s.result]),
    );
    let changed = false;
    for (const [key, ref] of this.applied) {
      if (!objects.has(key)) changed = this.options.model.remove(ref) || changed;
    }
    const applied = new Map<string, ObjectRef>();
    for (const [key, obj] of objects) {
      changed = this.options.model.upsert(obj) || changed;
      applied.set(key, refOf(obj));
    }
    this.applied = applied;
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
    if (changed) this.options.onChange();
  }
}

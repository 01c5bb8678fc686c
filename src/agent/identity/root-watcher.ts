// Follows the root file (the mounted ConfigMap mooring-ca-root-cert). The kubelet updates a
// ConfigMap volume by swapping the `..data` symlink of its directory, so the directory is
// watched (an event on the file itself would be lost with the old inode), and the file is also
// re-read every poll interval in case a notification is missed (network filesystems, inotify
// limits). A content that holds no valid certificate is ignored: the last good roots stay.

import { X509Certificate } from 'node:crypto';
import { watch, promises as fs, type FSWatcher } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { splitPemCertificates } from './chain';

export type RootsResult = { readonly ok: true; readonly roots: readonly string[] } | RootsFailure;
type RootsFailure = { readonly ok: false; readonly reason: string };

/** Reads and checks the root file: every CERTIFICATE block must parse, and there must be one. */
export async function readRootFile(file: string): Promise<RootsResult> {
  const read = await readText(file);
  return typeof read === 'string' ? parseRoots(read) : read;
}

async function readText(file: string): Promise<string | RootsFailure> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (err) {
    return { ok: false, reason: `the root file cannot be read: ${(err as Error).message}` };
  }
}

function parseRoots(text: string): RootsResult {
  const roots = splitPemCertificates(text);
  if (roots.length === 0) return { ok: false, reason: 'the root file holds no certificate' };
  for (const [i, pem] of roots.entries()) {
    try {
      new X509Certificate(pem);
    } catch {
      return { ok: false, reason: `certificate ${i} of the root file does not parse` };
    }
  }
  return { ok: true, roots };
}

export interface RootWatcherOptions {
  readonly pollMs: number;
  readonly log: Logger;
  /** Called with each new valid content (not with the first one `start` returns). */
  readonly onChange: (roots: readonly string[]) => Promise<void> | void;
  /** Delay to let a burst of events settle. */
  readonly debounceMs?: number;
  /** Use change notifications (default true); polling always runs. */
  readonly watch?: boolean;
}

export class RootFileWatcher {
  private last = '';
  /** The file's text at the last check (null: not read yet, or unreadable). */
  private lastText: string | null = null;
  private watcher: FSWatcher | null = null;
  private poller: NodeJS.Timeout | null = null;
  private debounce: NodeJS.Timeout | null = null;
  private checking: Promise<void> = Promise.resolve();
  private lastProblem = '';

  constructor(
    private readonly file: string,
    private readonly options: RootWatcherOptions,
  ) {}

  /** Starts watching; `initial` is the content already handed to the lifecycle. */
  start(initial: readonly string[]): void {
    this.last = initial.join('');
    if (this.options.watch !== false) this.watchDirectory();
    this.poller = setInterval(() => this.schedule(0), this.options.pollMs);
    this.poller.unref();
  }

  private watchDirectory(): void {
    try {
      this.watcher = watch(path.dirname(this.file), { persistent: false }, () => this.schedule());
      this.watcher.on('error', (err) => {
        this.options.log.warn(
          { err: err.message },
          'watching the root directory failed; polling only',
        );
        this.watcher?.close();
        this.watcher = null;
      });
    } catch (err) {
      this.options.log.warn(
        { err: (err as Error).message },
        'cannot watch the root directory; polling only',
      );
    }
  }

  stop(): void {
    this.watcher?.close();
    this.watcher = null;
    if (this.poller) clearInterval(this.poller);
    if (this.debounce) clearTimeout(this.debounce);
    this.poller = null;
    this.debounce = null;
  }

  /** Re-reads the file now (serialised with other checks). */
  check(): Promise<void> {
    this.checking = this.checking.then(() => this.checkOnce());
    return this.checking;
  }

  private schedule(delay = this.options.debounceMs ?? 50): void {
    if (this.debounce) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => {
      this.debounce = null;
      void this.check();
    }, delay);
    this.debounce.unref();
  }

  private async checkOnce(): Promise<void> {
    const read = await readText(this.file);
    // The same text as at the last check has been handled already (taken, or reported as
    // unusable): it is not parsed again at every poll.
    if (typeof read === 'string') {
      if (read === this.lastText) return;
      this.lastText = read;
    } else {
      this.lastText = null;
    }
    const result = typeof read === 'string' ? parseRoots(read) : read;
    if (!result.ok) {
      if (result.reason !== this.lastProblem) {
        this.options.log.warn(
          { file: this.file, reason: result.reason },
          'root file unusable; keeping the last roots',
        );
      }
      this.lastProblem = result.reason;
      return;
    }
    this.lastProblem = '';
    const text = result.roots.join('');
    if (text === this.last) return;
    this.last = text;
    try {
      await this.options.onChange(result.roots);
    } catch (err) {
      this.options.log.error({ err: (err as Error).message }, 'applying the new roots failed');
    }
  }
}

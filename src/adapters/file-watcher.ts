// Calls back when a file changes: its inode, size or times (a ConfigMap mounted in a Pod changes
// by a symbolic-link swap, which stat follows). Change notifications on the file's directory make
// it quick; a poll every `pollMs` makes it sure. A missing file is a change too (and its return).

import { watch, type FSWatcher } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface FileWatcherOptions {
  readonly pollMs?: number;
  readonly onChange: () => void;
}

async function signatureOf(path: string): Promise<string> {
  try {
    const st = await stat(path);
    return `${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
  } catch {
    return 'missing';
  }
}

export class FileWatcher {
  private signature: string | null = null;
  private poller: NodeJS.Timeout | null = null;
  private watcher: FSWatcher | null = null;
  private checking: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    readonly path: string,
    private readonly options: FileWatcherOptions,
  ) {}

  async start(): Promise<void> {
    this.signature = await signatureOf(this.path);
    this.poller = setInterval(() => void this.check(), this.options.pollMs ?? 1000);
    this.poller.unref();
    try {
      this.watcher = watch(dirname(this.path), { persistent: false }, () => void this.check());
      this.watcher.on('error', () => {
        this.watcher?.close();
        this.watcher = null;
      });
    } catch {
      // The poll alone sees the change.
    }
  }

  check(): Promise<void> {
    this.checking = this.checking.then(async () => {
      if (this.stopped) return;
      const signature = await signatureOf(this.path);
      if (signature === this.signature) return;
      this.signature = signature;
      this.options.onChange();
    });
    return this.checking;
  }

  stop(): void {
    this.stopped = true;
    if (this.poller !== null) clearInterval(this.poller);
    this.watcher?.close();
    this.watcher = null;
  }
}

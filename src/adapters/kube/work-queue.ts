// A keyed work queue, as controllers use: a key added while queued is queued once; a key being
// processed is never processed twice at the same time (added again, it runs once more after);
// a failed key is retried after an exponential backoff of its own. Reconcilers read the latest
// state when they run, so that dropping duplicates loses nothing.

export interface WorkQueueLogger {
  warn(obj: object, msg: string): void;
}

export interface WorkQueueOptions {
  readonly name: string;
  readonly concurrency?: number;
  readonly minRetryMs?: number;
  readonly maxRetryMs?: number;
  readonly logger: WorkQueueLogger;
  readonly handler: (key: string) => Promise<void>;
}

export class WorkQueue {
  private readonly queue: string[] = [];
  private readonly queued = new Set<string>();
  private readonly active = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly failures = new Map<string, number>();
  private readonly retryTimers = new Map<string, NodeJS.Timeout>();
  private workers = 0;
  private stopped = false;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly options: WorkQueueOptions) {}

  add(key: string): void {
    if (this.stopped) return;
    if (this.active.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    this.queued.add(key);
    this.queue.push(key);
    this.pump();
  }

  /** Number of keys waiting or running (not counting scheduled retries). */
  get length(): number {
    return this.queue.length + this.active.size;
  }

  /** Resolves when nothing is queued or running (scheduled retries do not count). */
  idle(): Promise<void> {
    if (this.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  stop(): void {
    this.stopped = true;
    for (const timer of this.retryTimers.values()) clearTimeout(timer);
    this.retryTimers.clear();
    this.queue.length = 0;
    this.queued.clear();
  }

  private pump(): void {
    const concurrency = this.options.concurrency ?? 4;
    while (this.workers < concurrency && this.queue.length > 0) {
      const key = this.queue.shift();
      if (key === undefined) break;
      this.queued.delete(key);
      this.active.add(key);
      this.workers++;
      void this.run(key);
    }
  }

  private async run(key: string): Promise<void> {
    try {
      await this.options.handler(key);
      this.failures.delete(key);
    } catch (err) {
      if (!this.stopped) this.retry(key, err);
    } finally {
      this.active.delete(key);
      this.workers--;
      if (this.dirty.delete(key)) this.add(key);
      this.pump();
      if (this.length === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const resolve of waiters) resolve();
      }
    }
  }

  private retry(key: string, err: unknown): void {
    const attempt = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, attempt);
    const min = this.options.minRetryMs ?? 200;
    const max = this.options.maxRetryMs ?? 30_000;
    const wait = Math.min(max, min * 2 ** (attempt - 1));
    this.options.logger.warn(
      { err, queue: this.options.name, key, attempt, retryInMs: wait },
      'reconcile failed; retrying',
    );
    if (this.retryTimers.has(key)) return;
    const timer = setTimeout(() => {
      this.retryTimers.delete(key);
      this.add(key);
    }, wait);
    timer.unref();
    this.retryTimers.set(key, timer);
  }
}

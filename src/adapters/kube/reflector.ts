// List, then watch from the list's resourceVersion, and keep a cache of the objects; tell a
// handler what changed. A watch that ends is resumed from the last resourceVersion; a 410 Gone
// (history compacted) or any failure relists after a backoff; every `resyncMs` the handler sees
// every cached object again ('sync'), so that a missed event or a failed reconcile is repaired.
// refresh() ends the current watch and lists again, handing on every object even when its
// resourceVersion did not move: after a CRD's schema changed, the apiserver serves the same
// version of an object with fields the old schema pruned.
// This is client-go's reflector + informer, small: client-node's informer stops on an error.

import {
  isKubeApiError,
  type KubeApi,
  type KubeList,
  type KubeObject,
  type KubeStatus,
  type WatchEvent,
} from './api';

export type ReflectorEventType = 'added' | 'modified' | 'deleted' | 'sync';

export interface ReflectorLogger {
  debug(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface ReflectorOptions<T extends KubeObject> {
  readonly api: KubeApi;
  /** Name for logs. */
  readonly name: string;
  /** The collection path, e.g. `/api/v1/namespaces` or `/api/v1/configmaps`. */
  readonly path: string;
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
  /** Every object again to the handler this often; 0 turns it off. Default 5 min. */
  readonly resyncMs?: number;
  /** Backoff after a failure: starts here, doubles, capped at maxBackoffMs. */
  readonly minBackoffMs?: number;
  readonly maxBackoffMs?: number;
  /** Server-side watch timeout (seconds); a new watch starts after it. Default 300-600 random. */
  readonly watchTimeoutSeconds?: () => number;
  readonly logger: ReflectorLogger;
  readonly onEvent: (type: ReflectorEventType, obj: T) => void;
  /**
   * Applied to every object before it is cached and handed on (client-go's SetTransform): keep
   * only the fields the handler reads, so that a cache of many Pods stays small.
   */
  readonly transform?: (obj: T) => T;
}

/** Cache key of an object: `namespace/name` or `name`. */
export function objectKey(obj: KubeObject): string {
  const name = obj.metadata?.name ?? '';
  const ns = obj.metadata?.namespace;
  return ns === undefined || ns === '' ? name : `${ns}/${name}`;
}

const delay = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal.aborted) {
      resolve();
      return;
    }
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done);
  });

class GoneError extends Error {
  constructor() {
    super('410 Gone: the watch resourceVersion is too old');
  }
}

export class Reflector<T extends KubeObject> {
  private readonly cache = new Map<string, T>();
  private readonly controller = new AbortController();
  private resourceVersion = '';
  private running: Promise<void> | null = null;
  private resyncTimer: NodeJS.Timeout | null = null;
  private syncedResolve: (() => void) | null = null;
  private readonly syncedPromise: Promise<void>;
  private synced = false;
  /** The current watch's own abort (refresh() ends it without stopping the reflector). */
  private watchController: AbortController | null = null;
  /** refresh() calls asked for, and the last one a completed list answered. */
  private refreshAsked = 0;
  private refreshDone = 0;
  /** Lists made (each costs a full LIST); watches started. For tests and metrics. */
  readonly stats = { lists: 0, watches: 0, failures: 0 };

  constructor(private readonly options: ReflectorOptions<T>) {
    this.syncedPromise = new Promise((resolve) => {
      this.syncedResolve = resolve;
    });
  }

  /** Starts listing and watching; resolves once the first list is in the cache. */
  start(): Promise<void> {
    this.running ??= this.loop();
    const resyncMs = this.options.resyncMs ?? 300_000;
    if (resyncMs > 0 && this.resyncTimer === null) {
      this.resyncTimer = setInterval(() => this.resync(), resyncMs);
      this.resyncTimer.unref();
    }
    return this.syncedPromise;
  }

  async stop(): Promise<void> {
    this.controller.abort();
    if (this.resyncTimer !== null) clearInterval(this.resyncTimer);
    this.resyncTimer = null;
    await this.running;
  }

  hasSynced(): boolean {
    return this.synced;
  }

  get(key: string): T | undefined {
    return this.cache.get(key);
  }

  list(): T[] {
    return [...this.cache.values()];
  }

  /**
   * Ends the current watch and lists again; objects whose resourceVersion did not move are
   * handed on as 'sync' (the handler compares their content).
   */
  refresh(): void {
    this.refreshAsked++;
    this.watchController?.abort();
  }

  /** The handler sees every cached object again. */
  resync(): void {
    for (const obj of this.cache.values()) this.emit('sync', obj);
  }

  private emit(type: ReflectorEventType, obj: T): void {
    try {
      this.options.onEvent(type, obj);
    } catch (err) {
      this.options.logger.warn({ err, reflector: this.options.name }, 'event handler failed');
    }
  }

  private selectors(): Record<string, string | undefined> {
    return { labelSelector: this.options.labelSelector, fieldSelector: this.options.fieldSelector };
  }

  private async relist(): Promise<void> {
    const asked = this.refreshAsked;
    const refreshing = asked > this.refreshDone;
    this.stats.lists++;
    const list = await this.options.api.request<KubeList<T>>({
      method: 'GET',
      path: this.options.path,
      query: this.selectors(),
    });
    const fresh = new Map<string, T>();
    const transform = this.options.transform;
    for (const item of list.items) {
      fresh.set(objectKey(item), transform === undefined ? item : transform(item));
    }
    for (const [key, old] of this.cache) {
      if (!fresh.has(key)) {
        this.cache.delete(key);
        this.emit('deleted', old);
      }
    }
    for (const [key, obj] of fresh) {
      const old = this.cache.get(key);
      this.cache.set(key, obj);
      if (old === undefined) this.emit('added', obj);
      else if (old.metadata?.resourceVersion !== obj.metadata?.resourceVersion) {
        this.emit('modified', obj);
      } else if (refreshing) {
        this.emit('sync', obj);
      }
    }
    this.resourceVersion = list.metadata?.resourceVersion ?? '';
    this.refreshDone = asked;
    if (!this.synced) {
      this.synced = true;
      this.syncedResolve?.();
    }
  }

  private onWatchEvent(event: WatchEvent): void {
    const raw = event.object as T;
    const obj =
      this.options.transform === undefined || event.type === 'ERROR' || event.type === 'BOOKMARK'
        ? raw
        : this.options.transform(raw);
    switch (event.type) {
      case 'ADDED':
      case 'MODIFIED': {
        const key = objectKey(obj);
        const existed = this.cache.has(key);
        this.cache.set(key, obj);
        this.emit(existed ? 'modified' : 'added', obj);
        break;
      }
      case 'DELETED': {
        const key = objectKey(obj);
        this.cache.delete(key);
        this.emit('deleted', obj);
        break;
      }
      case 'BOOKMARK':
        break;
      case 'ERROR': {
        const status = event.object as KubeStatus;
        if (status.code === 410) throw new GoneError();
        throw new Error(`watch error: ${status.code ?? '?'} ${status.message ?? ''}`);
      }
    }
    const rv = obj.metadata?.resourceVersion;
    if (rv !== undefined && rv !== '') this.resourceVersion = rv;
  }

  private async loop(): Promise<void> {
    const { signal } = this.controller;
    const minBackoff = this.options.minBackoffMs ?? 500;
    const maxBackoff = this.options.maxBackoffMs ?? 30_000;
    let backoff = minBackoff;
    let needList = true;
    while (!signal.aborted) {
      try {
        if (needList) {
          await this.relist();
          needList = false;
        }
        if (signal.aborted) break;
        this.stats.watches++;
        const startedAt = Date.now();
        const timeout =
          this.options.watchTimeoutSeconds?.() ?? 300 + Math.floor(Math.random() * 300);
        const watchController = new AbortController();
        const endWatch = (): void => watchController.abort();
        signal.addEventListener('abort', endWatch);
        this.watchController = watchController;
        if (this.refreshAsked > this.refreshDone) watchController.abort();
        try {
          await this.options.api.watch(
            this.options.path,
            {
              ...this.selectors(),
              resourceVersion: this.resourceVersion,
              allowWatchBookmarks: 'true',
              timeoutSeconds: String(timeout),
            },
            (event) => this.onWatchEvent(event),
            watchController.signal,
          );
        } finally {
          signal.removeEventListener('abort', endWatch);
          this.watchController = null;
        }
        if (this.refreshAsked > this.refreshDone) {
          needList = true;
          continue;
        }
        // A watch the server ends at once (a proxy cutting it, say) must not become a busy loop.
        if (Date.now() - startedAt < 1000) await delay(backoff, signal);
        backoff = minBackoff;
      } catch (err) {
        if (signal.aborted) break;
        this.stats.failures++;
        const gone = err instanceof GoneError || isKubeApiError(err, 410);
        needList = true;
        const fields = { err, reflector: this.options.name, retryInMs: gone ? 0 : backoff };
        if (gone) this.options.logger.debug(fields, 'watch expired; relisting');
        else this.options.logger.warn(fields, 'list/watch failed; retrying');
        if (!gone) {
          await delay(backoff, signal);
          backoff = Math.min(maxBackoff, backoff * 2);
        }
      }
    }
  }
}

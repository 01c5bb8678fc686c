// An in-memory apiserver behind the KubeApi interface: objects with resourceVersions, create
// (409 AlreadyExists), replace (409 Conflict on a stale resourceVersion), delete, lists with
// fieldSelector metadata.name / spec.signerName, and watches. Enough to drive the cluster
// adapters' logic in unit tests; the e2e tests run them against a real kube-apiserver.

import {
  KubeApiError,
  type KubeApi,
  type KubeObject,
  type KubeRequest,
  type WatchEvent,
} from '../../../src/adapters/kube/api';

interface Address {
  readonly prefix: string;
  readonly resource: string;
  readonly namespace: string | undefined;
  readonly name: string | undefined;
  readonly subresource: string | undefined;
}

export function parsePath(path: string): Address {
  const parts = path.split('/').filter((p) => p !== '');
  const prefixLen = parts[0] === 'api' ? 2 : 3;
  const prefix = `/${parts.slice(0, prefixLen).join('/')}`;
  let rest = parts.slice(prefixLen).map(decodeURIComponent);
  let namespace: string | undefined;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1];
    rest = rest.slice(2);
  }
  const [resource = '', name, subresource] = rest;
  return { prefix, resource, namespace, name, subresource };
}

type Json = Record<string, unknown>;
type Obj = KubeObject & Json;

interface Watcher {
  readonly address: Address;
  readonly fieldSelector: string | undefined;
  readonly onEvent: (event: WatchEvent) => void;
}

const keyOf = (a: {
  prefix: string;
  resource: string;
  namespace?: string | undefined;
  name?: string | undefined;
}): string => `${a.prefix}|${a.resource}|${a.namespace ?? ''}|${a.name ?? ''}`;

function fieldValue(obj: Obj, field: string): string | undefined {
  let cur: unknown = obj;
  for (const part of field.split('.')) {
    if (typeof cur !== 'object' || cur === null) return undefined;
    cur = (cur as Json)[part];
  }
  return typeof cur === 'string' ? cur : undefined;
}

function matches(obj: Obj, selector: string | undefined): boolean {
  if (selector === undefined || selector === '') return true;
  return selector.split(',').every((term) => {
    const [field = '', value] = term.split('=');
    return fieldValue(obj, field) === value;
  });
}

export interface RecordedCall {
  readonly method: string;
  readonly path: string;
  readonly body?: unknown;
}

export class FakeKubeApi implements KubeApi {
  private readonly objects = new Map<string, { address: Address; obj: Obj }>();
  private readonly watchers = new Set<Watcher>();
  private rv = 100;
  readonly calls: RecordedCall[] = [];
  /** Makes the next requests matching `when` fail with the given error (once each). */
  readonly failures: { when: (req: KubeRequest) => boolean; error: Error }[] = [];
  /** Answers POST tokenreviews / subjectaccessreviews. */
  reviewHandler: ((path: string, body: Json) => Json) | null = null;
  /** Number of watches opened so far. */
  watchCount = 0;

  private nextRv(): string {
    this.rv += 1;
    return String(this.rv);
  }

  /** Every change, so that a watch from a resourceVersion replays what it missed. */
  private readonly history: { rv: number; type: WatchEvent['type']; address: Address; obj: Obj }[] =
    [];

  private static wants(w: Watcher, address: Address, obj: Obj): boolean {
    if (w.address.prefix !== address.prefix || w.address.resource !== address.resource)
      return false;
    if (w.address.namespace !== undefined && w.address.namespace !== address.namespace)
      return false;
    return matches(obj, w.fieldSelector);
  }

  private notify(type: WatchEvent['type'], address: Address, obj: Obj): void {
    this.history.push({
      rv: Number(obj.metadata?.resourceVersion ?? this.rv),
      type,
      address,
      obj: structuredClone(obj),
    });
    for (const w of this.watchers) {
      if (FakeKubeApi.wants(w, address, obj)) w.onEvent({ type, object: structuredClone(obj) });
    }
  }

  /** Puts an object in directly (as another client would). */
  seed(path: string, input: object): Obj {
    const obj = input as Obj;
    const a = parsePath(path);
    const name = obj.metadata?.name ?? '';
    const address = { ...a, name, subresource: undefined };
    const stored: Obj = {
      ...structuredClone<Obj>(obj),
      metadata: {
        ...obj.metadata,
        ...(a.namespace === undefined ? {} : { namespace: a.namespace }),
        resourceVersion: this.nextRv(),
      },
    };
    const existed = this.objects.has(keyOf(address));
    this.objects.set(keyOf(address), { address, obj: stored });
    this.notify(existed ? 'MODIFIED' : 'ADDED', address, stored);
    return stored;
  }

  /** Deletes an object directly (as another client would). */
  remove(path: string): void {
    const a = parsePath(path);
    const entry = this.objects.get(keyOf(a));
    if (entry === undefined) return;
    this.objects.delete(keyOf(a));
    this.notify('DELETED', entry.address, {
      ...entry.obj,
      metadata: { ...entry.obj.metadata, resourceVersion: this.nextRv() },
    });
  }

  get<T = Obj>(path: string): T | undefined {
    const entry = this.objects.get(keyOf(parsePath(path)));
    return entry === undefined ? undefined : (structuredClone(entry.obj) as T);
  }

  list(collectionPath: string): Obj[] {
    const a = parsePath(collectionPath);
    return [...this.objects.values()]
      .filter((e) => e.address.prefix === a.prefix && e.address.resource === a.resource)
      .filter((e) => a.namespace === undefined || e.address.namespace === a.namespace)
      .map((e) => structuredClone(e.obj));
  }

  /** Ends every open watch (as a server timeout would). */
  closeWatches(): void {
    for (const w of [...this.watchers]) {
      this.watchers.delete(w);
      (w as Watcher & { end?: () => void }).end?.();
    }
  }

  /** Sends an ERROR event (410 Gone) to every open watch. */
  expireWatches(): void {
    for (const w of [...this.watchers]) {
      w.onEvent({
        type: 'ERROR',
        object: { kind: 'Status', code: 410, message: 'too old resource version' } as KubeObject,
      });
    }
  }

  request<T>(req: KubeRequest): Promise<T> {
    this.calls.push({
      method: req.method,
      path: req.path,
      ...(req.body === undefined ? {} : { body: req.body }),
    });
    const failure = this.failures.findIndex((f) => f.when(req));
    if (failure !== -1) {
      const [f] = this.failures.splice(failure, 1);
      return Promise.reject(f?.error ?? new Error('injected'));
    }
    try {
      return Promise.resolve(this.handle(req) as T);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private handle(req: KubeRequest): unknown {
    const a = parsePath(req.path);
    if (
      req.method === 'POST' &&
      (a.resource === 'tokenreviews' || a.resource === 'subjectaccessreviews')
    ) {
      if (this.reviewHandler === null)
        throw new KubeApiError(500, 'InternalError', 'no review handler');
      return this.reviewHandler(a.resource, req.body as Json);
    }
    const body = req.body as Obj | undefined;
    switch (req.method) {
      case 'GET': {
        if (a.name === undefined) {
          const items = this.list(req.path).filter((o) => matches(o, req.query?.fieldSelector));
          return { metadata: { resourceVersion: String(this.rv) }, items };
        }
        const entry = this.objects.get(keyOf(a));
        if (entry === undefined)
          throw new KubeApiError(404, 'NotFound', `${a.resource} "${a.name}" not found`);
        return structuredClone(entry.obj);
      }
      case 'POST': {
        const name = body?.metadata?.name ?? '';
        if (a.namespace !== undefined && a.resource !== 'namespaces') {
          const ns = this.objects.get(
            keyOf({ prefix: '/api/v1', resource: 'namespaces', name: a.namespace }),
          );
          if (ns === undefined && this.strictNamespaces) {
            throw new KubeApiError(404, 'NotFound', `namespaces "${a.namespace}" not found`);
          }
        }
        const address = { ...a, name, subresource: undefined };
        if (this.objects.has(keyOf(address))) {
          throw new KubeApiError(409, 'AlreadyExists', `${a.resource} "${name}" already exists`);
        }
        const stored: Obj = {
          ...(structuredClone(body) as Obj),
          metadata: {
            ...body?.metadata,
            ...(a.namespace === undefined ? {} : { namespace: a.namespace }),
            resourceVersion: this.nextRv(),
            uid: `uid-${this.rv}`,
          },
        };
        this.objects.set(keyOf(address), { address, obj: stored });
        this.notify('ADDED', address, stored);
        return structuredClone(stored);
      }
      case 'PUT': {
        const address = { ...a, subresource: undefined };
        const entry = this.objects.get(keyOf(address));
        if (entry === undefined)
          throw new KubeApiError(404, 'NotFound', `${a.resource} "${a.name ?? ''}" not found`);
        const sent = body?.metadata?.resourceVersion;
        if (sent !== undefined && sent !== entry.obj.metadata?.resourceVersion) {
          throw new KubeApiError(
            409,
            'Conflict',
            'the object has been modified; please apply your changes to the latest version and try again',
          );
        }
        const clean = JSON.parse(JSON.stringify(body)) as Obj;
        const stored: Obj = {
          ...clean,
          metadata: { ...clean.metadata, resourceVersion: this.nextRv() },
        };
        this.objects.set(keyOf(address), { address: entry.address, obj: stored });
        this.notify('MODIFIED', entry.address, stored);
        return structuredClone(stored);
      }
      case 'DELETE': {
        const entry = this.objects.get(keyOf(a));
        if (entry === undefined) throw new KubeApiError(404, 'NotFound', 'not found');
        this.remove(req.path);
        return { kind: 'Status', status: 'Success' };
      }
      default:
        throw new KubeApiError(405, 'MethodNotAllowed', req.method);
    }
  }

  /** When true, creating in a namespace that does not exist is 404. */
  strictNamespaces = false;

  watch(
    path: string,
    query: Readonly<Record<string, string | undefined>>,
    onEvent: (event: WatchEvent) => void,
    signal: AbortSignal,
  ): Promise<void> {
    this.watchCount += 1;
    return new Promise((resolve, reject) => {
      if (signal.aborted) {
        resolve();
        return;
      }
      const watcher: Watcher & { end?: () => void } = {
        address: parsePath(path),
        fieldSelector: query.fieldSelector,
        onEvent: (event) => {
          try {
            onEvent(event);
          } catch (err) {
            this.watchers.delete(watcher);
            reject(err instanceof Error ? err : new Error(String(err)));
          }
        },
      };
      watcher.end = resolve;
      const from = Number(query.resourceVersion ?? '0');
      for (const h of this.history) {
        if (h.rv > from && FakeKubeApi.wants(watcher, h.address, h.obj)) {
          watcher.onEvent({ type: h.type, object: structuredClone(h.obj) });
        }
      }
      this.watchers.add(watcher);
      signal.addEventListener('abort', () => {
        this.watchers.delete(watcher);
        resolve();
      });
    });
  }
}

/** Waits until `check` is true, polling every 5 ms (real timers), up to `ms`. */
export async function eventually(check: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

export const silentLogger = {
  debug: (): void => undefined,
  info: (): void => undefined,
  warn: (): void => undefined,
  error: (): void => undefined,
};

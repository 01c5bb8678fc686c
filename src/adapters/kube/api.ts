// The small slice of the Kubernetes API that Mooring's cluster adapters use, as an interface:
// JSON requests on paths, and watches. The real implementation (client.ts) is the only module
// that loads @kubernetes/client-node; unit tests give a fake.

export type HttpVerb = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

export interface KubeRequest {
  readonly method: HttpVerb;
  /** `/api/v1/...` or `/apis/GROUP/VERSION/...` */
  readonly path: string;
  readonly query?: Readonly<Record<string, string | undefined>>;
  readonly body?: unknown;
  /** Default `application/json`; patches name their type. */
  readonly contentType?: string;
}

export interface WatchEvent<T = KubeObject> {
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  readonly object: T;
}

export interface KubeApi {
  /** Resolves to the decoded JSON answer; rejects with KubeApiError for a non-2xx status. */
  request<T>(req: KubeRequest): Promise<T>;
  /**
   * Streams watch events of `path` (`watch=true` is added) until the server ends the stream
   * (resolves), the connection fails or the server answers non-2xx (rejects), or `signal` aborts
   * (resolves).
   */
  watch(
    path: string,
    query: Readonly<Record<string, string | undefined>>,
    onEvent: (event: WatchEvent) => void,
    signal: AbortSignal,
  ): Promise<void>;
}

export interface ObjectMeta {
  readonly name?: string;
  readonly namespace?: string;
  readonly resourceVersion?: string;
  readonly uid?: string;
  readonly labels?: Readonly<Record<string, string>>;
  readonly annotations?: Readonly<Record<string, string>>;
  readonly deletionTimestamp?: string;
  readonly creationTimestamp?: string;
}

export interface KubeObject {
  readonly apiVersion?: string;
  readonly kind?: string;
  readonly metadata?: ObjectMeta;
}

export interface KubeList<T> {
  readonly metadata?: { readonly resourceVersion?: string; readonly continue?: string };
  readonly items: readonly T[];
}

/** A `Status` object, as the apiserver sends with errors and watch ERROR events. */
export interface KubeStatus {
  readonly kind?: string;
  readonly status?: string;
  readonly message?: string;
  readonly reason?: string;
  readonly code?: number;
}

/** A non-2xx answer of the apiserver. `reason` is the Status reason (AlreadyExists, Conflict...). */
export class KubeApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly method: string = '',
    readonly path: string = '',
  ) {
    super(message);
    this.name = 'KubeApiError';
  }
}

export function isKubeApiError(err: unknown, status?: number): err is KubeApiError {
  return err instanceof KubeApiError && (status === undefined || err.status === status);
}

/** 409 AlreadyExists (a create lost the race). */
export const isAlreadyExists = (err: unknown): boolean =>
  isKubeApiError(err, 409) && err.reason === 'AlreadyExists';
/** 409 Conflict (an update carried a stale resourceVersion). */
export const isConflict = (err: unknown): boolean =>
  isKubeApiError(err, 409) && err.reason !== 'AlreadyExists';
export const isNotFound = (err: unknown): boolean => isKubeApiError(err, 404);

/** `/api/v1/namespaces/NS/configmaps/NAME` and the like. */
export function corePath(resource: string, namespace?: string, name?: string): string {
  return objectPath('/api/v1', resource, namespace, name);
}

/** `/apis/GROUP/VERSION/namespaces/NS/RESOURCE/NAME` and the like. */
export function groupPath(
  groupVersion: string,
  resource: string,
  namespace?: string,
  name?: string,
): string {
  return objectPath(`/apis/${groupVersion}`, resource, namespace, name);
}

function objectPath(prefix: string, resource: string, namespace?: string, name?: string): string {
  const ns = namespace === undefined ? '' : `/namespaces/${encodeURIComponent(namespace)}`;
  const obj = name === undefined ? '' : `/${encodeURIComponent(name)}`;
  return `${prefix}${ns}/${resource}${obj}`;
}

/**
 * The resource a request path is about, for metric labels: `secrets`, `configmaps`,
 * `certificatesigningrequests/status`, `tokenreviews`... (never a name, so few label values).
 */
export function resourceOfPath(path: string): string {
  const parts =
    path
      .split('?')[0]
      ?.split('/')
      .filter((p) => p !== '') ?? [];
  // Drop the prefix: api/v1 or apis/group/version.
  const rest = parts[0] === 'api' ? parts.slice(2) : parts[0] === 'apis' ? parts.slice(3) : parts;
  // namespaces/NS/RESOURCE... is about RESOURCE; namespaces or namespaces/NS is about namespaces.
  const inNamespace = rest[0] === 'namespaces' && rest.length > 2 ? rest.slice(2) : rest;
  const [resource, , subresource] = inNamespace;
  if (resource === undefined) return 'unknown';
  return subresource === undefined ? resource : `${resource}/${subresource}`;
}

// The app probes the injector hands to the agent (PRODUCT.md: `proxy.mooring.dev/rewrite-probes`).
// The kubelet's HTTP, TCP and gRPC probes of an app container become an HTTP GET on the agent
// `/app-health/<container>/<livez|readyz|startupz>`, and the originals travel in the proxy
// container's environment (MOORING_APP_PROBES) as JSON keyed "<container>/<kind>":
//
//   { "web/readyz": { "httpGet": { "path": "/ready", "port": 8080, "scheme": "HTTP",
//                                   "httpHeaders": [{ "name": "X-A", "value": "b" }] },
//                     "timeoutSeconds": 2 },
//     "web/livez":  { "tcpSocket": { "port": 8080 }, "timeoutSeconds": 1 },
//     "db/startupz": { "grpc": { "port": 9090, "service": "db" }, "timeoutSeconds": 1 } }
//
// Kubernetes' own handler shapes, with named ports resolved to numbers by the injector (it has the
// container's ports). One definition for both ends: the injector writes it
// (src/injector/probes.ts), the agent reads it (src/agent/health/). Pure: no I/O.

export const PROBE_KINDS = ['livez', 'readyz', 'startupz'] as const;
export type ProbeKind = (typeof PROBE_KINDS)[number];

/** Where the rewritten probes go on the agent's port. */
export const APP_HEALTH_PREFIX = '/app-health/';

/** The agent's path for one probe of a container. */
export const appHealthPath = (container: string, kind: ProbeKind): string =>
  `${APP_HEALTH_PREFIX}${container}/${kind}`;

/** The key of a probe in MOORING_APP_PROBES. */
export const probeKey = (container: string, kind: string): string => `${container}/${kind}`;

export interface HttpHeader {
  readonly name: string;
  readonly value: string;
}

export interface HttpGetProbe {
  /** Default `/`; the agent adds a missing leading slash. */
  readonly path?: string;
  readonly port: number;
  /** Default: the Pod's IP, as the kubelet. */
  readonly host?: string;
  /** `HTTP` (default) or `HTTPS`, any case. */
  readonly scheme?: string;
  readonly httpHeaders?: readonly HttpHeader[];
}

export interface TcpSocketProbe {
  readonly port: number;
  readonly host?: string;
}

export interface GrpcProbe {
  readonly port: number;
  /** The service asked about; default `` (the server as a whole). */
  readonly service?: string;
}

/** One original probe: exactly one handler, and Kubernetes' timeoutSeconds (default 1). */
export type AppProbe =
  | { readonly httpGet: HttpGetProbe; readonly timeoutSeconds: number }
  | { readonly tcpSocket: TcpSocketProbe; readonly timeoutSeconds: number }
  | { readonly grpc: GrpcProbe; readonly timeoutSeconds: number };

/** Probes by "<container>/<kind>". */
export type AppProbes = ReadonlyMap<string, AppProbe>;

/** The MOORING_APP_PROBES value; undefined when there is no probe to hand over. */
export function appProbesText(
  probes: readonly (readonly [string, AppProbe])[],
): string | undefined {
  return probes.length === 0 ? undefined : JSON.stringify(Object.fromEntries(probes));
}

// --- the agent's side: read and check, with defaults filled in --------------------------------

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function parsePort(value: unknown, where: string): number {
  const n = typeof value === 'string' && /^[0-9]+$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 65535) {
    throw new Error(
      `${where}.port must be a port number (named ports are resolved by the injector)`,
    );
  }
  return n;
}

function optionalString(value: unknown, where: string): string | undefined {
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new Error(`${where} must be a string`);
  return value;
}

function parseHeaders(value: unknown, where: string): HttpHeader[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) throw new Error(`${where}.httpHeaders must be a list`);
  return value.map((h: unknown, i) => {
    if (
      !isObject(h) ||
      typeof h.name !== 'string' ||
      h.name === '' ||
      typeof h.value !== 'string'
    ) {
      throw new Error(`${where}.httpHeaders[${i}] must be {"name": string, "value": string}`);
    }
    return { name: h.name, value: h.value };
  });
}

const withHost = (host: string | undefined): { host?: string } =>
  host === undefined ? {} : { host };

function parseProbe(probe: Json, timeoutSeconds: number, where: string): AppProbe {
  const handlers = (['httpGet', 'tcpSocket', 'grpc'] as const).filter(
    (k) => probe[k] !== undefined,
  );
  if (handlers.length !== 1) {
    throw new Error(`${where} must have exactly one of httpGet, tcpSocket, grpc`);
  }
  const handler = handlers[0] as (typeof handlers)[number];
  const spec = probe[handler];
  if (!isObject(spec)) throw new Error(`${where}.${handler} must be an object`);
  const at = `${where}.${handler}`;
  switch (handler) {
    case 'httpGet': {
      const scheme = (optionalString(spec.scheme, `${at}.scheme`) ?? 'HTTP').toUpperCase();
      if (scheme !== 'HTTP' && scheme !== 'HTTPS')
        throw new Error(`${at}.scheme must be HTTP or HTTPS`);
      const path = optionalString(spec.path, `${at}.path`) ?? '/';
      return {
        httpGet: {
          path: path.startsWith('/') ? path : `/${path}`,
          port: parsePort(spec.port, at),
          ...withHost(optionalString(spec.host, `${at}.host`)),
          scheme,
          httpHeaders: parseHeaders(spec.httpHeaders, at),
        },
        timeoutSeconds,
      };
    }
    case 'tcpSocket':
      return {
        tcpSocket: {
          port: parsePort(spec.port, at),
          ...withHost(optionalString(spec.host, `${at}.host`)),
        },
        timeoutSeconds,
      };
    case 'grpc':
      return {
        grpc: {
          port: parsePort(spec.port, at),
          service: optionalString(spec.service, `${at}.service`) ?? '',
        },
        timeoutSeconds,
      };
  }
}

/**
 * Reads MOORING_APP_PROBES; throws an Error naming the first bad entry. Empty text: no probes.
 * Every probe comes back complete: path with its leading slash, scheme `HTTP` or `HTTPS`,
 * headers (maybe none), gRPC service (maybe ``), timeoutSeconds.
 */
export function parseAppProbes(text: string): AppProbes {
  if (text.trim() === '') return new Map();
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new Error(`not valid JSON (${(err as Error).message})`, { cause: err });
  }
  if (!isObject(raw))
    throw new Error('must be a JSON object keyed "<container>/<livez|readyz|startupz>"');
  const probes = new Map<string, AppProbe>();
  for (const [key, probe] of Object.entries(raw)) {
    const slash = key.lastIndexOf('/');
    const container = key.slice(0, slash);
    const kind = key.slice(slash + 1);
    if (slash <= 0 || !PROBE_KINDS.includes(kind as ProbeKind)) {
      throw new Error(`key "${key}" must be "<container>/<livez|readyz|startupz>"`);
    }
    if (!isObject(probe)) throw new Error(`"${key}" must be an object`);
    const timeout = probe.timeoutSeconds ?? 1;
    if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout <= 0) {
      throw new Error(`"${key}".timeoutSeconds must be a positive number`);
    }
    probes.set(probeKey(container, kind), parseProbe(probe, timeout, `"${key}"`));
  }
  return probes;
}

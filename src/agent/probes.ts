// The app probes the injector handed over in MOORING_APP_PROBES: the original Kubernetes
// probe handlers of each app container, keyed "<container>/<livez|readyz|startupz>":
//
//   { "web/readyz": { "httpGet": { "path": "/ready", "port": 8080, "scheme": "HTTP",
//                                   "httpHeaders": [{ "name": "X-A", "value": "b" }] },
//                     "timeoutSeconds": 2 },
//     "web/livez":  { "tcpSocket": { "port": 8080 } },
//     "db/startupz": { "grpc": { "port": 9090, "service": "db" } } }
//
// Named ports must already be resolved to numbers by the injector (it has the container spec).
// This module is the one place that reads that shape.

export const PROBE_KINDS = ['livez', 'readyz', 'startupz'] as const;
export type ProbeKind = (typeof PROBE_KINDS)[number];

export interface HttpHeader {
  readonly name: string;
  readonly value: string;
}

export type ProbeAction =
  | {
      readonly type: 'http';
      readonly scheme: 'http' | 'https';
      readonly host: string | undefined;
      readonly port: number;
      readonly path: string;
      readonly headers: readonly HttpHeader[];
    }
  | { readonly type: 'tcp'; readonly host: string | undefined; readonly port: number }
  | { readonly type: 'grpc'; readonly port: number; readonly service: string };

export interface AppProbe {
  readonly action: ProbeAction;
  /** Kubernetes' timeoutSeconds, default 1. */
  readonly timeoutSeconds: number;
}

/** Probes by "<container>/<kind>". */
export type AppProbes = ReadonlyMap<string, AppProbe>;

export const probeKey = (container: string, kind: string): string => `${container}/${kind}`;

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

function parseAction(probe: Json, where: string): ProbeAction {
  const handlers = (['httpGet', 'tcpSocket', 'grpc'] as const).filter(
    (k) => probe[k] !== undefined,
  );
  if (handlers.length !== 1) {
    throw new Error(`${where} must have exactly one of httpGet, tcpSocket, grpc`);
  }
  const [handler] = handlers;
  const spec = probe[handler as string];
  if (!isObject(spec)) throw new Error(`${where}.${handler as string} must be an object`);
  const at = `${where}.${handler as string}`;
  switch (handler) {
    case 'httpGet': {
      const scheme = (optionalString(spec.scheme, `${at}.scheme`) ?? 'HTTP').toLowerCase();
      if (scheme !== 'http' && scheme !== 'https')
        throw new Error(`${at}.scheme must be HTTP or HTTPS`);
      const path = optionalString(spec.path, `${at}.path`) ?? '/';
      return {
        type: 'http',
        scheme,
        host: optionalString(spec.host, `${at}.host`),
        port: parsePort(spec.port, at),
        path: path.startsWith('/') ? path : `/${path}`,
        headers: parseHeaders(spec.httpHeaders, at),
      };
    }
    case 'tcpSocket':
      return {
        type: 'tcp',
        host: optionalString(spec.host, `${at}.host`),
        port: parsePort(spec.port, at),
      };
    default:
      return {
        type: 'grpc',
        port: parsePort(spec.port, at),
        service: optionalString(spec.service, `${at}.service`) ?? '',
      };
  }
}

/** Parses MOORING_APP_PROBES; throws an Error naming the first bad entry. Empty text: no probes. */
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
    probes.set(probeKey(container, kind), {
      action: parseAction(probe, `"${key}"`),
      timeoutSeconds: timeout,
    });
  }
  return probes;
}

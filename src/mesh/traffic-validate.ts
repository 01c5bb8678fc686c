// Raw VirtualService, DestinationRule, HTTPRoute and GRPCRoute objects into the checked forms of objects.ts,
// with Istio's and the Gateway API's defaults. Every problem names its field
// (`spec.http[0].route[1].weight`). What Mooring does not implement yet is a problem when
// ignoring it would route requests differently from what the object says (a delegate),
// and a warning when it only drops a refinement (a destination's `headers`, `tunnel`).
// Pure: no I/O.

import type {
  CorsPolicy,
  FaultPolicy,
  HeaderMatch,
  HeaderOperations,
  LoadBalancer,
  LocalityLbSetting,
  OutlierDetectionPolicy,
  RequestMatch,
  RetryPolicy,
  RouteDestination,
  RouteMirror,
  RouteReply,
  RouteRewrite,
  StringMatch,
  TcpKeepalive,
  TcpRouteRule,
  TlsPolicy,
  TrafficPolicy,
  ConnectionPoolPolicy,
  ConsistentHash,
  PortTrafficPolicy,
} from '../api/mesh';
import { parseCidr } from '../ip';
import { isObject, isPort, type Fields, type Json } from './fields';
import { meshKeyOfHost } from './hosts';
import { localityPatternProblem, TOPOLOGY_LABELS } from './locality';
import type {
  DestinationRuleObject,
  HttpRouteBackend,
  GrpcRouteMatch,
  GatewayTcpRuleSpec,
  GrpcRouteObject,
  GrpcRouteRuleSpec,
  HttpRouteObject,
  TcpRouteObject,
  TlsRouteObject,
  HttpRouteRuleSpec,
  RouteParent,
  Meta,
  RouteTarget,
  VirtualServiceObject,
  VirtualServiceRoute,
} from './objects';

// --- shared ------------------------------------------------------------------------------------

const DURATION = /^(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+$/;
const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** A Go / protobuf duration (`10s`, `1.5s`, `250ms`, `1m30s`) in milliseconds, or null. */
export function parseDuration(text: string): number | null {
  if (!DURATION.test(text)) return null;
  let ms = 0;
  for (const m of text.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/g)) {
    ms += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
  }
  return ms;
}

function duration(
  f: Fields,
  value: unknown,
  field: string,
  opts: { readonly min?: number } = {},
): number | undefined {
  const text = f.string(value, field);
  if (text === undefined) return undefined;
  const ms = parseDuration(text);
  if (ms === null) {
    f.problem(field, `${JSON.stringify(text)} is not a duration (such as "10s", "1.5s", "250ms")`);
    return undefined;
  }
  if (opts.min !== undefined && ms < opts.min) {
    f.problem(field, `must be at least ${opts.min}ms, not ${JSON.stringify(text)}`);
    return undefined;
  }
  return ms;
}

/** Constructs JavaScript's RegExp has and RE2 (Envoy's regex engine) has not. */
const NOT_RE2 = /\(\?<?[=!]|\\[1-9]|\\k</;

/** A regex the proxy can use as Envoy would (RE2 syntax, the whole value matches). */
function regex(f: Fields, value: unknown, field: string): string | undefined {
  const text = f.string(value, field);
  if (text === undefined) return undefined;
  if (NOT_RE2.test(text)) {
    f.problem(
      field,
      `${JSON.stringify(text)} uses lookaround or a backreference, which RE2 has not`,
    );
    return undefined;
  }
  try {
    new RegExp(text, 'su');
  } catch (err) {
    f.problem(
      field,
      `${JSON.stringify(text)} is not a valid regular expression: ${(err as Error).message}`,
    );
    return undefined;
  }
  return text;
}

/** Istio's StringMatch: exactly one of exact, prefix, regex; `{}`: any value (presence). */
function stringMatch(f: Fields, raw: unknown, field: string): StringMatch | null | undefined {
  const m = f.object(raw, field);
  if (m === undefined) return raw === undefined || raw === null ? null : undefined;
  const keys = ['exact', 'prefix', 'regex'].filter((k) => m[k] !== undefined && m[k] !== null);
  if (keys.length === 0) return null;
  if (keys.length > 1) {
    f.problem(field, `must have one of exact, prefix or regex, not ${keys.join(' and ')}`);
    return undefined;
  }
  if (m.exact !== undefined && m.exact !== null) {
    const v = f.string(m.exact, `${field}.exact`);
    return v === undefined ? undefined : { exact: v };
  }
  if (m.prefix !== undefined && m.prefix !== null) {
    const v = f.string(m.prefix, `${field}.prefix`);
    return v === undefined ? undefined : { prefix: v };
  }
  const v = regex(f, m.regex, `${field}.regex`);
  return v === undefined ? undefined : { regex: v };
}

const HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/;

export function headerName(
  f: Fields,
  name: string,
  field: string,
  lowercase: boolean,
): string | null {
  const lower = name.toLowerCase();
  if (!HEADER_NAME.test(lower) || (!lowercase && lower !== name)) {
    f.problem(
      field,
      lower !== name && !lowercase
        ? `header name ${JSON.stringify(name)} must be lowercase`
        : `${JSON.stringify(name)} is not a header name`,
    );
    return null;
  }
  return lower;
}

/** A fault's `percentage`, or its deprecated integer `percent`; neither: 100. */
function percentage(f: Fields, obj: Json, field: string): number {
  const legacy = f.number(obj.percent, `${field}.percent`, { min: 0, max: 100, integer: true });
  return percentValue(f, obj.percentage, `${field}.percentage`, legacy ?? 100);
}

/** Istio's `Percent` (`{value}`, 0 to 100); absent: `absent`. */
function percentValue(f: Fields, raw: unknown, field: string, absent: number): number {
  const p = f.object(raw, field);
  if (p === undefined) return absent;
  return f.number(p.value, `${field}.value`, { min: 0, max: 100 }) ?? absent;
}

/** Headers that frame the message or the connection: the proxy writes them, a route cannot. */
const FRAMING_HEADERS: ReadonlySet<string> = new Set([
  'content-length',
  'transfer-encoding',
  'connection',
  'keep-alive',
  'proxy-connection',
  'upgrade',
  'te',
  'trailer',
]);

/** A header name a route may set, add or remove (lower-cased), or null with a problem. */
function opName(f: Fields, name: string, field: string): string | null {
  const n = headerName(f, name, field, true);
  if (n !== null && FRAMING_HEADERS.has(n)) {
    f.problem(
      field,
      `${JSON.stringify(n)} frames the message: the proxy writes it, a route cannot`,
    );
    return null;
  }
  return n;
}

/** A header value a route may write: no control character but tab (a CR or LF would end it). */
function opValue(f: Fields, value: string, field: string): string | null {
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) {
    f.problem(field, 'a header value cannot hold a control character (CR, LF...)');
    return null;
  }
  return value;
}

function headerOps(
  f: Fields,
  raw: Json | undefined,
  field: string,
  asList: boolean,
): HeaderOperations | undefined {
  if (raw === undefined) return undefined;
  const pairs = (key: 'set' | 'add'): { name: string; value: string }[] => {
    const out: { name: string; value: string }[] = [];
    if (asList) {
      for (const [i, item] of f.array(raw[key], `${field}.${key}`).entries()) {
        const e = f.object(item, `${field}.${key}[${i}]`);
        if (e === undefined) continue;
        const name = f.string(e.name, `${field}.${key}[${i}].name`);
        const value = f.string(e.value, `${field}.${key}[${i}].value`) ?? '';
        if (name === undefined) f.problem(`${field}.${key}[${i}].name`, 'is required');
        else {
          const n = opName(f, name, `${field}.${key}[${i}].name`);
          const v = opValue(f, value, `${field}.${key}[${i}].value`);
          if (n !== null && v !== null) out.push({ name: n, value: v });
        }
      }
    } else {
      for (const [name, value] of Object.entries(f.stringMap(raw[key], `${field}.${key}`))) {
        const n = opName(f, name, `${field}.${key}.${name}`);
        const v = opValue(f, value, `${field}.${key}.${name}`);
        if (n !== null && v !== null) out.push({ name: n, value: v });
      }
    }
    return out;
  };
  const set = pairs('set');
  const add = pairs('add');
  const remove: string[] = [];
  for (const [i, item] of f.array(raw.remove, `${field}.remove`).entries()) {
    const name = f.string(item, `${field}.remove[${i}]`);
    if (name === undefined) continue;
    const n = opName(f, name, `${field}.remove[${i}]`);
    if (n !== null) remove.push(n);
  }
  if (set.length + add.length + remove.length === 0) return undefined;
  return {
    ...(set.length > 0 ? { set } : {}),
    ...(add.length > 0 ? { add } : {}),
    ...(remove.length > 0 ? { remove } : {}),
  };
}

/** Fields Mooring does not read: a problem each (`problem`), else a warning each. */
export function unsupported(
  f: Fields,
  obj: Json,
  keys: readonly string[],
  field: string,
  problem: boolean,
): void {
  for (const key of keys) {
    if (obj[key] === undefined || obj[key] === null) continue;
    if (problem) f.problem(`${field}.${key}`, 'is not supported by Mooring yet');
    else f.warn(`${field}.${key}`, 'is not supported by Mooring yet: ignored');
  }
}

// --- VirtualService ----------------------------------------------------------------------------

/** Envoy's retry conditions Istio passes through (`retryOn`), HTTP and gRPC. */
export const RETRY_CONDITIONS: readonly string[] = [
  '5xx',
  'gateway-error',
  'reset',
  'reset-before-request',
  'connect-failure',
  'envoy-ratelimited',
  'retriable-4xx',
  'refused-stream',
  'retriable-status-codes',
  'retriable-headers',
  'http3-post-connect-failure',
  'cancelled',
  'deadline-exceeded',
  'internal',
  'resource-exhausted',
  'unavailable',
];

/** Istio's default `retryOn` when `retries` gives none. */
export const DEFAULT_RETRY_ON: readonly string[] = [
  'connect-failure',
  'refused-stream',
  'unavailable',
  'cancelled',
  'retriable-status-codes',
];

function readRetries(
  f: Fields,
  raw: unknown,
  field: string,
  timeoutMs: number | undefined,
): RetryPolicy | undefined {
  const r = f.object(raw, field);
  if (r === undefined) return undefined;
  const attempts = f.number(r.attempts, `${field}.attempts`, { min: 0, integer: true }) ?? 2;
  let perTryTimeoutMs = duration(f, r.perTryTimeout, `${field}.perTryTimeout`, { min: 1 });
  const codes: number[] = [];
  let retryOn = DEFAULT_RETRY_ON;
  const text = f.string(r.retryOn, `${field}.retryOn`);
  if (text !== undefined && text.trim() !== '') {
    const conditions: string[] = [];
    for (const part of text.split(',').map((p) => p.trim())) {
      if (part === '') continue;
      if (/^[0-9]+$/.test(part)) {
        const code = Number(part);
        if (code < 100 || code > 599) {
          f.problem(`${field}.retryOn`, `${part} is not an HTTP status code`);
        } else {
          codes.push(code);
          if (!conditions.includes('retriable-status-codes'))
            conditions.push('retriable-status-codes');
        }
      } else if (RETRY_CONDITIONS.includes(part)) {
        if (!conditions.includes(part)) conditions.push(part);
      } else {
        f.problem(
          `${field}.retryOn`,
          `${JSON.stringify(part)} is not a retry condition (${RETRY_CONDITIONS.join(', ')}, or a status code)`,
        );
      }
    }
    retryOn = conditions;
  }
  // A try never outlives the request: Envoy caps the per-try timeout by the route's.
  if (perTryTimeoutMs !== undefined && timeoutMs !== undefined && perTryTimeoutMs > timeoutMs) {
    f.warn(
      `${field}.perTryTimeout`,
      `is longer than the route's timeout: each try ends with the request`,
    );
    perTryTimeoutMs = timeoutMs;
  }
  return {
    attempts,
    retryOn: [...retryOn],
    ...(perTryTimeoutMs === undefined ? {} : { perTryTimeoutMs }),
    ...(codes.length > 0 ? { retriableStatusCodes: codes } : {}),
  };
}

/** gRPC's status codes by number, as Istio names them in `abort.grpcStatus`. */
const GRPC_CODES: readonly string[] = [
  'OK',
  'CANCELLED',
  'UNKNOWN',
  'INVALID_ARGUMENT',
  'DEADLINE_EXCEEDED',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'FAILED_PRECONDITION',
  'ABORTED',
  'OUT_OF_RANGE',
  'UNIMPLEMENTED',
  'INTERNAL',
  'UNAVAILABLE',
  'DATA_LOSS',
  'UNAUTHENTICATED',
];

/** The HTTP status of each gRPC status, by number (Envoy's grpcToHttpStatus). */
const GRPC_TO_HTTP: readonly number[] = [
  200, 499, 500, 400, 504, 404, 409, 403, 429, 400, 409, 400, 501, 500, 503, 500, 401,
];

function readFault(f: Fields, raw: unknown, field: string): FaultPolicy | undefined {
  const fault = f.object(raw, field);
  if (fault === undefined) return undefined;
  const out: { delay?: FaultPolicy['delay']; abort?: FaultPolicy['abort'] } = {};
  const delay = f.object(fault.delay, `${field}.delay`);
  if (delay !== undefined) {
    unsupported(f, delay, ['exponentialDelay'], `${field}.delay`, true);
    const ms = duration(f, delay.fixedDelay, `${field}.delay.fixedDelay`, { min: 1 });
    if (ms === undefined && (delay.fixedDelay === undefined || delay.fixedDelay === null)) {
      f.problem(`${field}.delay.fixedDelay`, 'is required');
    }
    const percent = percentage(f, delay, `${field}.delay`);
    if (ms !== undefined) out.delay = { fixedDelayMs: ms, percent };
  }
  const abort = f.object(fault.abort, `${field}.abort`);
  if (abort !== undefined) {
    unsupported(f, abort, ['http2Error'], `${field}.abort`, true);
    const percent = percentage(f, abort, `${field}.abort`);
    if (abort.grpcStatus !== undefined && abort.grpcStatus !== null) {
      if (abort.httpStatus !== undefined) {
        f.problem(`${field}.abort`, 'has httpStatus or grpcStatus, not both');
      }
      const name = f.string(abort.grpcStatus, `${field}.abort.grpcStatus`);
      const code = name === undefined ? undefined : GRPC_CODES.indexOf(name);
      if (code === -1) {
        f.problem(
          `${field}.abort.grpcStatus`,
          `${JSON.stringify(name)} is not a gRPC status (${GRPC_CODES.join(', ')})`,
        );
      } else if (code !== undefined) {
        out.abort = { httpStatus: GRPC_TO_HTTP[code] ?? 500, percent, grpcStatus: code };
      }
    } else {
      const status = f.number(abort.httpStatus, `${field}.abort.httpStatus`, {
        min: 200,
        max: 599,
        integer: true,
      });
      if (abort.httpStatus === undefined) f.problem(`${field}.abort.httpStatus`, 'is required');
      if (status !== undefined) out.abort = { httpStatus: status, percent };
    }
  }
  if (out.delay === undefined && out.abort === undefined) {
    if (delay === undefined && abort === undefined) f.problem(field, 'needs delay or abort');
    return undefined;
  }
  return out;
}

/** A VirtualService match's `port`, `sourceLabels` and `sourceNamespace` (HTTP and tcp alike). */
function readPortAndSource(
  f: Fields,
  m: Json,
  field: string,
): { port?: number; sourceLabels?: Record<string, string>; sourceNamespace?: string } {
  const out: { port?: number; sourceLabels?: Record<string, string>; sourceNamespace?: string } =
    {};
  if (m.port !== undefined && m.port !== null) {
    if (isPort(m.port)) out.port = m.port;
    else f.problem(`${field}.port`, 'must be a port number from 1 to 65535');
  }
  if (m.sourceLabels !== undefined && m.sourceLabels !== null) {
    out.sourceLabels = f.stringMap(m.sourceLabels, `${field}.sourceLabels`);
  }
  const namespace = f.string(m.sourceNamespace, `${field}.sourceNamespace`);
  if (namespace !== undefined && namespace !== '') out.sourceNamespace = namespace;
  return out;
}

function readVsMatch(f: Fields, raw: unknown, field: string): RequestMatch | null {
  const m = f.object(raw, field);
  if (m === undefined) return null;
  if (m.ignoreUriCase === true) {
    f.warn(
      `${field}.ignoreUriCase`,
      'is not supported by Mooring yet: the uri match is case-sensitive',
    );
  }
  const out: {
    uri?: StringMatch;
    method?: StringMatch;
    authority?: StringMatch;
    scheme?: StringMatch;
    port?: number;
    headers?: HeaderMatch[];
    queryParams?: { name: string; value?: StringMatch }[];
    sourceLabels?: Record<string, string>;
    sourceNamespace?: string;
  } = {};
  Object.assign(out, readPortAndSource(f, m, field));
  const uri = stringMatch(f, m.uri, `${field}.uri`);
  if (uri) out.uri = uri;
  const method = stringMatch(f, m.method, `${field}.method`);
  if (method) out.method = method;
  const authority = stringMatch(f, m.authority, `${field}.authority`);
  if (authority) out.authority = authority;
  const scheme = stringMatch(f, m.scheme, `${field}.scheme`);
  if (scheme) out.scheme = scheme;
  const headers: HeaderMatch[] = [];
  for (const [key, invert] of [
    ['headers', false],
    ['withoutHeaders', true],
  ] as const) {
    const h = f.object(m[key], `${field}.${key}`);
    for (const [name, value] of Object.entries(h ?? {})) {
      const n = headerName(f, name, `${field}.${key}.${name}`, false);
      const v = stringMatch(f, value, `${field}.${key}.${name}`);
      if (n === null || v === undefined) continue;
      headers.push({ name: n, ...(v === null ? {} : { value: v }), ...(invert ? { invert } : {}) });
    }
  }
  if (headers.length > 0) out.headers = headers;
  const q = f.object(m.queryParams, `${field}.queryParams`);
  const params: { name: string; value?: StringMatch }[] = [];
  for (const [name, value] of Object.entries(q ?? {})) {
    const v = stringMatch(f, value, `${field}.queryParams.${name}`);
    if (v === undefined) continue;
    params.push({ name, ...(v === null ? {} : { value: v }) });
  }
  if (params.length > 0) out.queryParams = params;
  return out;
}

function readDestination(
  f: Fields,
  raw: unknown,
  field: string,
  namespace: string,
  single: boolean,
): RouteTarget | null {
  const d = f.object(raw, field);
  if (d === undefined) return null;
  const dest = readServiceDestination(f, d.destination, `${field}.destination`, namespace);
  if (dest === null) return null;
  // One destination takes every request whatever its weight (Istio); among several, an absent
  // weight is 0.
  const weight =
    f.number(d.weight, `${field}.weight`, { min: 0, integer: true }) ?? (single ? 100 : 0);
  unsupported(f, d, ['headers'], field, false);
  return { ...dest, weight: single ? Math.max(weight, 1) : weight };
}

/** Istio's `Destination` (host, subset, port), its host a Service of the mesh. */
function readServiceDestination(
  f: Fields,
  raw: unknown,
  field: string,
  namespace: string,
): Omit<RouteTarget, 'weight'> | null {
  if (raw === undefined || raw === null) {
    f.problem(field, 'is required');
    return null;
  }
  const dest = f.object(raw, field);
  if (dest === undefined) return null;
  const host = f.string(dest.host, `${field}.host`);
  if (host === undefined || host === '') {
    f.problem(`${field}.host`, 'is required');
    return null;
  }
  const service = meshKeyOfHost(host, namespace);
  if (service === null) {
    f.problem(
      `${field}.host`,
      `${JSON.stringify(host)} is neither a Kubernetes Service (name, name.namespace or name.namespace.svc.<domain>) nor a ServiceEntry's host (a DNS name)`,
    );
    return null;
  }
  let port: number | undefined;
  const p = f.object(dest.port, `${field}.port`);
  if (p !== undefined) {
    if (isPort(p.number)) port = p.number;
    else f.problem(`${field}.port.number`, 'must be a port number from 1 to 65535');
  }
  const subset = f.string(dest.subset, `${field}.subset`);
  return {
    service,
    host,
    ...(port === undefined ? {} : { port }),
    ...(subset === undefined || subset === '' ? {} : { subset }),
  };
}

/**
 * A rule's `mirror` (with `mirrorPercentage`, or the older `mirrorPercent`) or `mirrors`; absent
 * percentages are 100 (Istio).
 */
function readVsMirrors(f: Fields, r: Json, field: string, namespace: string): RouteMirror[] {
  const out: RouteMirror[] = [];
  const given = (key: string): boolean => r[key] !== undefined && r[key] !== null;
  const one = given('mirror');
  const many = f.array(r.mirrors, `${field}.mirrors`);
  if (one && many.length > 0) f.problem(field, 'a rule has mirror or mirrors, not both');
  for (const key of ['mirrorPercentage', 'mirrorPercent']) {
    if (!one && given(key)) f.warn(`${field}.${key}`, 'has no effect without mirror: ignored');
  }
  const toMirror = (dest: Omit<RouteTarget, 'weight'>, percent: number): RouteMirror => ({
    service: dest.service,
    ...(dest.port === undefined ? {} : { port: dest.port }),
    ...(dest.subset === undefined ? {} : { subset: dest.subset }),
    percent,
  });
  if (one) {
    const dest = readServiceDestination(f, r.mirror, `${field}.mirror`, namespace);
    const legacy = f.number(r.mirrorPercent, `${field}.mirrorPercent`, { min: 0, max: 100 });
    const percent = percentValue(f, r.mirrorPercentage, `${field}.mirrorPercentage`, legacy ?? 100);
    if (dest !== null) out.push(toMirror(dest, percent));
  }
  for (const [i, m] of many.entries()) {
    const at = `${field}.mirrors[${i}]`;
    const policy = f.object(m, at);
    if (policy === undefined) continue;
    const dest = readServiceDestination(f, policy.destination, `${at}.destination`, namespace);
    const percent = percentValue(f, policy.percentage, `${at}.percentage`, 100);
    if (dest !== null) out.push(toMirror(dest, percent));
  }
  return out;
}

/** `delegate`: the VirtualService (`name`, `namespace`, its own by default) whose rules apply. */
function readDelegate(
  f: Fields,
  raw: unknown,
  field: string,
  namespace: string,
): { namespace: string; name: string } | undefined {
  const d = f.object(raw, field);
  if (d === undefined) return undefined;
  const name = f.string(d.name, `${field}.name`);
  if (name === undefined || name === '') {
    f.problem(`${field}.name`, 'is required');
    return undefined;
  }
  const ns = f.string(d.namespace, `${field}.namespace`);
  return { namespace: ns === undefined || ns === '' ? namespace : ns, name };
}

function readVsRoute(
  f: Fields,
  raw: unknown,
  field: string,
  namespace: string,
): VirtualServiceRoute | null {
  const r = f.object(raw, field);
  if (r === undefined) return null;
  const name = f.string(r.name, `${field}.name`);
  const delegate = readDelegate(f, r.delegate, `${field}.delegate`, namespace);
  const rawMatches = f.array(r.match, `${field}.match`);
  const matches: RequestMatch[] = [];
  for (const [i, m] of rawMatches.entries()) {
    const match = readVsMatch(f, m, `${field}.match[${i}]`);
    if (match !== null) matches.push(match);
  }
  if (rawMatches.length > 0 && matches.length === 0) {
    // Every match was left out: the rule matches nothing (rather than everything).
    return null;
  }
  const rawRoute = f.array(r.route, `${field}.route`);
  const reply = readVsReply(f, r, field);
  const cors = readCors(f, r.corsPolicy, `${field}.corsPolicy`);
  const mirrors = readVsMirrors(f, r, field, namespace);
  if (reply !== undefined && rawRoute.length > 0) {
    f.problem(
      field,
      `a rule with a ${reply.kind === 'redirect' ? 'redirect' : 'directResponse'} has no route`,
    );
  }
  if (delegate !== undefined) {
    if (rawRoute.length > 0 || reply !== undefined) {
      f.problem(
        `${field}.delegate`,
        'a rule that delegates has no route, redirect or directResponse',
      );
    }
  } else if (rawRoute.length === 0 && r.redirect === undefined && r.directResponse === undefined) {
    f.problem(`${field}.route`, 'needs at least one destination');
  }
  const route: RouteTarget[] = [];
  for (const [i, d] of rawRoute.entries()) {
    const t = readDestination(f, d, `${field}.route[${i}]`, namespace, rawRoute.length === 1);
    if (t !== null) route.push(t);
  }
  if (route.length > 1 && route.every((t) => t.weight === 0)) {
    f.problem(`${field}.route`, 'the weights add up to 0: no destination can receive a request');
  }
  let timeoutMs = duration(f, r.timeout, `${field}.timeout`);
  // Istio: a timeout of 0 is no timeout.
  if (timeoutMs === 0) timeoutMs = undefined;
  const retries = readRetries(f, r.retries, `${field}.retries`, timeoutMs);
  const fault = readFault(f, r.fault, `${field}.fault`);
  const headers = f.object(r.headers, `${field}.headers`);
  const [requestHeaders, responseHeaders] = (['request', 'response'] as const).map((side) =>
    headerOps(
      f,
      headers === undefined ? undefined : f.object(headers[side], `${field}.headers.${side}`),
      `${field}.headers.${side}`,
      false,
    ),
  );
  let rewrite: RouteRewrite | undefined;
  const rw = f.object(r.rewrite, `${field}.rewrite`);
  if (rw !== undefined) {
    const uri = f.string(rw.uri, `${field}.rewrite.uri`);
    const rr = f.object(rw.uriRegexRewrite, `${field}.rewrite.uriRegexRewrite`);
    let regexRewrite: { match: string; rewrite: string } | undefined;
    if (rr !== undefined) {
      const at = `${field}.rewrite.uriRegexRewrite`;
      const match = regex(f, rr.match, `${at}.match`);
      const to = f.string(rr.rewrite, `${at}.rewrite`);
      if (rr.match === undefined) f.problem(`${at}.match`, 'is required');
      if (to === undefined) f.problem(`${at}.rewrite`, 'is required');
      if (uri !== undefined && uri !== '')
        f.problem(at, 'a rewrite has uri or uriRegexRewrite, not both');
      if (match !== undefined && to !== undefined) regexRewrite = { match, rewrite: to };
    }
    const authority = f.string(rw.authority, `${field}.rewrite.authority`);
    if (uri !== undefined && uri !== '' && !uri.startsWith('/')) {
      f.problem(`${field}.rewrite.uri`, 'must start with "/"');
    }
    rewrite = {
      ...(uri === undefined || uri === '' ? {} : { prefix: uri }),
      ...(regexRewrite === undefined ? {} : { regex: regexRewrite }),
      ...(authority === undefined || authority === '' ? {} : { authority }),
    };
    if (Object.keys(rewrite).length === 0) rewrite = undefined;
  }
  return {
    ...(name === undefined ? {} : { name }),
    matches,
    route,
    ...(delegate === undefined ? {} : { delegate }),
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
    ...(retries === undefined ? {} : { retries }),
    ...(fault === undefined ? {} : { fault }),
    ...(requestHeaders === undefined ? {} : { requestHeaders }),
    ...(responseHeaders === undefined ? {} : { responseHeaders }),
    ...(rewrite === undefined ? {} : { rewrite }),
    ...(reply === undefined ? {} : { reply }),
    ...(cors === undefined ? {} : { cors }),
    ...(mirrors.length === 0 ? {} : { mirrors }),
  };
}

/** Istio's `tcpKeepalive`: `time` and `interval` in whole seconds (Envoy's), `probes`. */
function readKeepalive(f: Fields, raw: unknown, field: string): TcpKeepalive | undefined {
  const k = f.object(raw, field);
  if (k === undefined) return undefined;
  const seconds = (key: 'time' | 'interval'): number | undefined => {
    const ms = duration(f, k[key], `${field}.${key}`, { min: 1000 });
    return ms === undefined ? undefined : Math.floor(ms / 1000);
  };
  const timeS = seconds('time');
  const intervalS = seconds('interval');
  const probes = f.number(k.probes, `${field}.probes`, { min: 1, max: 127, integer: true });
  return {
    ...(timeS === undefined ? {} : { timeS }),
    ...(intervalS === undefined ? {} : { intervalS }),
    ...(probes === undefined ? {} : { probes }),
  };
}

/** Istio's corsPolicy; `allowOrigin` (its old list of exact origins) is read too. */
function readCors(f: Fields, raw: unknown, field: string): CorsPolicy | undefined {
  const c = f.object(raw, field);
  if (c === undefined) return undefined;
  const unmatched = f.string(c.unmatchedPreflights, `${field}.unmatchedPreflights`);
  if (unmatched !== undefined && !['UNSPECIFIED', 'FORWARD', 'IGNORE'].includes(unmatched)) {
    f.problem(
      `${field}.unmatchedPreflights`,
      `must be FORWARD or IGNORE, not ${JSON.stringify(unmatched)}`,
    );
  }
  const allowOrigins: StringMatch[] = [];
  for (const [i, m] of f.array(c.allowOrigins, `${field}.allowOrigins`).entries()) {
    const match = stringMatch(f, m, `${field}.allowOrigins[${i}]`);
    if (match !== null && match !== undefined) allowOrigins.push(match);
  }
  for (const [i, o] of f.array(c.allowOrigin, `${field}.allowOrigin`).entries()) {
    const origin = f.string(o, `${field}.allowOrigin[${i}]`);
    if (origin !== undefined)
      allowOrigins.push(origin === '*' ? { prefix: '' } : { exact: origin });
  }
  const list = (key: string): string[] => {
    const out: string[] = [];
    for (const [i, v] of f.array(c[key], `${field}.${key}`).entries()) {
      const s = f.string(v, `${field}.${key}[${i}]`);
      if (s === undefined) continue;
      const value = opValue(f, s, `${field}.${key}[${i}]`);
      if (value !== null && value.trim() !== '') out.push(value.trim());
    }
    return out;
  };
  const maxAgeMs = duration(f, c.maxAge, `${field}.maxAge`);
  const credentials = c.allowCredentials;
  if (credentials !== undefined && typeof credentials !== 'boolean') {
    f.problem(`${field}.allowCredentials`, 'must be true or false');
  }
  return {
    allowOrigins,
    allowMethods: list('allowMethods'),
    allowHeaders: list('allowHeaders'),
    exposeHeaders: list('exposeHeaders'),
    ...(maxAgeMs === undefined ? {} : { maxAgeSeconds: Math.floor(maxAgeMs / 1000) }),
    allowCredentials: credentials === true,
    ...(unmatched === 'IGNORE' ? { ignoreUnmatchedPreflights: true as const } : {}),
  };
}

/** The redirect statuses Envoy makes (Istio's `redirectCode`, Gateway API's `statusCode`). */
const REDIRECT_CODES: readonly number[] = [301, 302, 303, 307, 308];

function redirectCode(f: Fields, value: unknown, field: string): number {
  const code = f.number(value, field, { integer: true });
  if (code === undefined) return 301;
  if (!REDIRECT_CODES.includes(code)) {
    f.problem(field, `must be one of ${REDIRECT_CODES.join(', ')}, not ${code}`);
  }
  return code;
}

/** Istio's `redirect` or `directResponse` of a VirtualService rule (one of them at most). */
function readVsReply(f: Fields, r: Json, field: string): RouteReply | undefined {
  const redirect = f.object(r.redirect, `${field}.redirect`);
  const direct = f.object(r.directResponse, `${field}.directResponse`);
  if (redirect !== undefined && direct !== undefined) {
    f.problem(field, 'a rule has a redirect or a directResponse, not both');
  }
  if (redirect !== undefined) {
    const at = `${field}.redirect`;
    const uri = f.string(redirect.uri, `${at}.uri`);
    if (uri !== undefined && !uri.startsWith('/')) f.problem(`${at}.uri`, 'must start with "/"');
    const authority = f.string(redirect.authority, `${at}.authority`);
    const scheme = f.string(redirect.scheme, `${at}.scheme`);
    if (scheme !== undefined && !/^[a-z][a-z0-9+.-]*$/i.test(scheme)) {
      f.problem(`${at}.scheme`, `${JSON.stringify(scheme)} is not a URL scheme`);
    }
    const port = f.number(redirect.port, `${at}.port`, { min: 1, max: 65535, integer: true });
    const derive = f.string(redirect.derivePort, `${at}.derivePort`);
    if (
      derive !== undefined &&
      derive !== 'FROM_PROTOCOL_DEFAULT' &&
      derive !== 'FROM_REQUEST_PORT'
    ) {
      f.problem(
        `${at}.derivePort`,
        `must be FROM_PROTOCOL_DEFAULT or FROM_REQUEST_PORT, not ${JSON.stringify(derive)}`,
      );
    }
    return {
      kind: 'redirect',
      status: redirectCode(f, redirect.redirectCode, `${at}.redirectCode`),
      ...(scheme === undefined || scheme === '' ? {} : { scheme: scheme.toLowerCase() }),
      ...(authority === undefined || authority === '' ? {} : { host: authority }),
      port: port ?? (derive === 'FROM_PROTOCOL_DEFAULT' ? 'scheme' : 'request'),
      ...(uri === undefined || uri === '' ? {} : { path: { fullPath: uri } }),
    };
  }
  if (direct !== undefined) {
    const at = `${field}.directResponse`;
    const status = f.number(direct.status, `${at}.status`, { min: 200, max: 599, integer: true });
    if (status === undefined) f.problem(`${at}.status`, 'is required');
    const body = f.object(direct.body, `${at}.body`);
    const text = body === undefined ? undefined : f.string(body.string, `${at}.body.string`);
    const bytes = body === undefined ? undefined : f.string(body.bytes, `${at}.body.bytes`);
    if (text !== undefined && bytes !== undefined) {
      f.problem(`${at}.body`, 'has string or bytes, not both');
    }
    if (bytes !== undefined) {
      // Protobuf's JSON form of bytes: standard or URL-safe base64, padded or not.
      if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(bytes) || bytes.replace(/=+$/, '').length % 4 === 1) {
        f.problem(`${at}.body.bytes`, 'must be base64');
      }
      const normalized = Buffer.from(bytes, 'base64').toString('base64');
      return { kind: 'direct', status: status ?? 200, body: normalized, encoding: 'base64' };
    }
    return { kind: 'direct', status: status ?? 200, body: text ?? '' };
  }
  return undefined;
}

export function readVirtualService(raw: Json, f: Fields, meta: Meta): VirtualServiceObject {
  const spec = f.object(raw.spec, 'spec') ?? {};
  const hosts: string[] = [];
  const rawHosts = f.array(spec.hosts, 'spec.hosts');
  // A VirtualService without hosts is a delegate: it applies only where another delegates to it.
  const delegateOnly = rawHosts.length === 0;
  for (const [i, h] of rawHosts.entries()) {
    const host = f.string(h, `spec.hosts[${i}]`);
    if (host === undefined) continue;
    if (host === '') {
      f.problem(`spec.hosts[${i}]`, 'must not be empty');
      continue;
    }
    const key = meshKeyOfHost(host, meta.namespace);
    if (key === null) {
      f.warn(
        `spec.hosts[${i}]`,
        `${JSON.stringify(host)} is neither a Kubernetes Service nor a ServiceEntry's host: ignored`,
      );
    } else if (!hosts.includes(key)) {
      hosts.push(key);
    }
  }
  // `gateways` without `mesh` binds the rules to gateways only: none applies to sidecars.
  const gateways = f.array(spec.gateways, 'spec.gateways').filter((g) => typeof g === 'string');
  const forMesh = gateways.length === 0 || gateways.includes('mesh');
  if (!forMesh)
    f.warn(
      'spec.gateways',
      'does not list "mesh": the rules apply to gateways only, not to sidecars',
    );
  const http: VirtualServiceRoute[] = [];
  for (const [i, r] of f.array(spec.http, 'spec.http').entries()) {
    const route = readVsRoute(f, r, `spec.http[${i}]`, meta.namespace);
    if (route === null) continue;
    if (route.delegate !== undefined && delegateOnly) {
      f.problem(
        `spec.http[${i}].delegate`,
        'a delegate VirtualService (no hosts) cannot delegate again',
      );
    }
    http.push(route);
  }
  if (delegateOnly && http.length === 0) {
    f.problem('spec.hosts', 'needs at least one host (or http rules, for a delegate)');
  }
  const [tcp, tls] = (['tcp', 'tls'] as const).map((kind) => {
    const rules: TcpRouteRule[] = [];
    for (const [i, r] of f.array(spec[kind], `spec.${kind}`).entries()) {
      const rule = readTcpRoute(f, r, `spec.${kind}[${i}]`, meta.namespace, kind === 'tls');
      if (rule !== null) rules.push(rule);
    }
    return rules;
  }) as [TcpRouteRule[], TcpRouteRule[]];
  return {
    kind: 'VirtualService',
    meta,
    hosts: forMesh ? hosts : [],
    http,
    tcp,
    tls,
    exportTo: readExportTo(f, spec.exportTo),
  };
}

const NAMESPACE_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/**
 * `exportTo` of a VirtualService, DestinationRule or ServiceEntry: `*` (every namespace), `.` (its own), `~`
 * (none) or namespace names; null when absent or `*` alone (Istio's default: everywhere).
 */
export function readExportTo(f: Fields, raw: unknown): string[] | null {
  const out: string[] = [];
  for (const [i, v] of f.array(raw, 'spec.exportTo').entries()) {
    const entry = f.string(v, `spec.exportTo[${i}]`);
    if (entry === undefined) continue;
    if (entry !== '*' && entry !== '.' && entry !== '~' && !NAMESPACE_NAME.test(entry)) {
      f.problem(
        `spec.exportTo[${i}]`,
        `${JSON.stringify(entry)} is not "*", ".", "~" or a namespace name`,
      );
      continue;
    }
    if (!out.includes(entry)) out.push(entry);
  }
  if (out.includes('~') && out.length > 1) {
    f.problem('spec.exportTo', '"~" (exported nowhere) cannot be listed with other entries');
  }
  return out.length === 0 || out.includes('*') ? null : out;
}

/** A tcp or tls match's `destinationSubnets` and `sourceSubnet` (an address, or a CIDR). */
function readSubnets(
  f: Fields,
  m: Json,
  field: string,
): { destinationSubnets?: string[]; sourceSubnet?: string } {
  const cidr = (value: unknown, at: string): string | undefined => {
    const text = f.string(value, at);
    if (text === undefined || text === '') return undefined;
    const parsed = parseCidr(text);
    if (parsed === undefined)
      f.problem(at, `${JSON.stringify(text)} is not an IPv4 or IPv6 address or CIDR`);
    return parsed;
  };
  const destinationSubnets: string[] = [];
  for (const [i, v] of f.array(m.destinationSubnets, `${field}.destinationSubnets`).entries()) {
    const c = cidr(v, `${field}.destinationSubnets[${i}]`);
    if (c !== undefined) destinationSubnets.push(c);
  }
  const sourceSubnet = cidr(m.sourceSubnet, `${field}.sourceSubnet`);
  return {
    ...(destinationSubnets.length === 0 ? {} : { destinationSubnets }),
    ...(sourceSubnet === undefined ? {} : { sourceSubnet }),
  };
}

/**
 * A `tcp` rule: matches on the port and the calling Pod, weighted destinations; a `tls` rule
 * (`tls`): the same, each match naming the server names it takes (`sniHosts`, required).
 */
function readTcpRoute(
  f: Fields,
  raw: unknown,
  field: string,
  namespace: string,
  tls = false,
): TcpRouteRule | null {
  const r = f.object(raw, field);
  if (r === undefined) return null;
  const matches: TcpRouteRule['matches'][number][] = [];
  const rawMatches = f.array(r.match, `${field}.match`);
  if (tls && rawMatches.length === 0) {
    f.problem(`${field}.match`, 'is required: a tls rule matches on the server name (sniHosts)');
  }
  for (const [i, item] of rawMatches.entries()) {
    const at = `${field}.match[${i}]`;
    const m = f.object(item, at);
    if (m === undefined) continue;
    const match = { ...readPortAndSource(f, m, at), ...readSubnets(f, m, at) };
    if (!tls) {
      matches.push(match);
      continue;
    }
    const sniHosts: string[] = [];
    for (const [j, h] of f.array(m.sniHosts, `${at}.sniHosts`).entries()) {
      const host = f.string(h, `${at}.sniHosts[${j}]`);
      if (host === undefined) continue;
      if (host === '' || (host.includes('*') && host !== '*' && !/^\*\.[^*]+$/.test(host))) {
        f.problem(
          `${at}.sniHosts[${j}]`,
          `${JSON.stringify(host)} is not a server name (name, *.name or *)`,
        );
      } else sniHosts.push(host.toLowerCase());
    }
    if (sniHosts.length === 0) f.problem(`${at}.sniHosts`, 'needs at least one server name');
    matches.push({ ...match, sniHosts });
  }
  const rawRoute = f.array(r.route, `${field}.route`);
  if (rawRoute.length === 0) f.problem(`${field}.route`, 'needs at least one destination');
  const destinations: RouteDestination[] = [];
  for (const [i, d] of rawRoute.entries()) {
    const t = readDestination(f, d, `${field}.route[${i}]`, namespace, rawRoute.length === 1);
    if (t === null) continue;
    destinations.push({
      service: t.service,
      ...(t.port === undefined ? {} : { port: t.port }),
      ...(t.subset === undefined ? {} : { subset: t.subset }),
      weight: t.weight,
    });
  }
  if (destinations.length > 1 && destinations.every((d) => d.weight === 0)) {
    f.problem(`${field}.route`, 'the weights add up to 0: no destination can receive a connection');
  }
  return { matches, destinations };
}

// --- DestinationRule ---------------------------------------------------------------------------

const LOAD_BALANCERS: Readonly<Record<string, LoadBalancer>> = {
  ROUND_ROBIN: 'ROUND_ROBIN',
  LEAST_REQUEST: 'LEAST_REQUEST',
  LEAST_CONN: 'LEAST_REQUEST',
  RANDOM: 'RANDOM',
};

/** Istio's outlier detection defaults (Envoy's). */
export const OUTLIER_DEFAULTS = {
  consecutive5xxErrors: 5,
  intervalMs: 10_000,
  baseEjectionTimeMs: 30_000,
  maxEjectionPercent: 10,
} as const;

/** Istio's consistentHash: one key to hash on (the ring's own settings tune nothing here). */
function readConsistentHash(f: Fields, ch: Json, field: string): ConsistentHash | undefined {
  const keys = ['httpHeaderName', 'httpCookie', 'useSourceIp', 'httpQueryParameterName'];
  const given = keys.filter((k) => ch[k] !== undefined && ch[k] !== null && ch[k] !== false);
  if (given.length !== 1) {
    f.problem(
      field,
      `needs exactly one of ${keys.join(', ')}${given.length > 1 ? `, not ${given.join(' and ')}` : ''}`,
    );
    return undefined;
  }
  const header = f.string(ch.httpHeaderName, `${field}.httpHeaderName`);
  if (header !== undefined) {
    const name = headerName(f, header, `${field}.httpHeaderName`, true);
    return name === null ? undefined : { header: name };
  }
  const query = f.string(ch.httpQueryParameterName, `${field}.httpQueryParameterName`);
  if (query !== undefined) return { queryParameter: query };
  if (ch.useSourceIp === true) return { sourceIp: true };
  const c = f.object(ch.httpCookie, `${field}.httpCookie`);
  if (c === undefined) return undefined;
  const name = f.string(c.name, `${field}.httpCookie.name`);
  if (name === undefined || !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(name)) {
    f.problem(
      `${field}.httpCookie.name`,
      name === undefined ? 'is required' : `${JSON.stringify(name)} is not a cookie name`,
    );
    return undefined;
  }
  const path = f.string(c.path, `${field}.httpCookie.path`);
  // eslint-disable-next-line no-control-regex
  if (path !== undefined && /[;\x00-\x1f\x7f]/.test(path)) {
    f.problem(`${field}.httpCookie.path`, 'cannot hold a ";" or a control character');
    return undefined;
  }
  const ttlMs = duration(f, c.ttl, `${field}.httpCookie.ttl`);
  return {
    cookie: {
      name,
      ...(path === undefined || path === '' ? {} : { path }),
      ...(ttlMs === undefined ? {} : { ttlMs }),
    },
  };
}

/**
 * `tls`: `ISTIO_MUTUAL` (what Mooring does between meshed Pods), `DISABLE` (plain text), and
 * `SIMPLE` / `MUTUAL` (TLS the proxy originates: `sni`, `subjectAltNames`, `caCertificates`,
 * `insecureSkipVerify`; MUTUAL's `clientCertificate` and `privateKey`, files in the proxy's
 * container). `credentialName` (a Secret) is not read by Mooring's sidecar.
 */
function readTls(f: Fields, raw: unknown, field: string): TlsPolicy | undefined {
  const tls = f.object(raw, field);
  if (tls === undefined) return undefined;
  const mode = f.string(tls.mode, `${field}.mode`) ?? 'DISABLE';
  if (mode === 'ISTIO_MUTUAL' || mode === 'DISABLE') return { mode };
  if (mode !== 'SIMPLE' && mode !== 'MUTUAL') {
    f.problem(
      `${field}.mode`,
      `must be DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL, not ${JSON.stringify(mode)}`,
    );
    return undefined;
  }
  if (tls.credentialName !== undefined && tls.credentialName !== null) {
    f.problem(
      `${field}.credentialName`,
      "is not supported by Mooring's sidecar: give caCertificates, clientCertificate and privateKey as files in its container",
    );
  }
  const path = (key: string): string | undefined => {
    const v = f.string(tls[key], `${field}.${key}`);
    if (v === undefined || v === '') return undefined;
    if (!v.startsWith('/'))
      f.problem(`${field}.${key}`, `must be an absolute path, not ${JSON.stringify(v)}`);
    return v;
  };
  const caCertificates = path('caCertificates');
  const caCrl = path('caCrl');
  const clientCertificate = path('clientCertificate');
  const privateKey = path('privateKey');
  if (mode === 'MUTUAL' && (clientCertificate === undefined || privateKey === undefined)) {
    f.problem(field, 'MUTUAL needs clientCertificate and privateKey');
  }
  if (mode === 'SIMPLE' && (clientCertificate !== undefined || privateKey !== undefined)) {
    f.warn(
      field,
      'SIMPLE presents no client certificate: clientCertificate and privateKey are ignored',
    );
  }
  const sni = f.string(tls.sni, `${field}.sni`);
  const subjectAltNames: string[] = [];
  for (const [i, n] of f.array(tls.subjectAltNames, `${field}.subjectAltNames`).entries()) {
    const name = f.string(n, `${field}.subjectAltNames[${i}]`);
    if (name !== undefined && name !== '') subjectAltNames.push(name);
  }
  const skip = tls.insecureSkipVerify;
  if (skip !== undefined && skip !== null && typeof skip !== 'boolean') {
    f.problem(`${field}.insecureSkipVerify`, 'must be true or false');
  }
  return {
    mode,
    ...(sni === undefined || sni === '' ? {} : { sni }),
    ...(subjectAltNames.length === 0 ? {} : { subjectAltNames }),
    ...(caCertificates === undefined ? {} : { caCertificates }),
    ...(caCrl === undefined ? {} : { caCrl }),
    ...(mode === 'MUTUAL' && clientCertificate !== undefined ? { clientCertificate } : {}),
    ...(mode === 'MUTUAL' && privateKey !== undefined ? { privateKey } : {}),
    ...(skip === true ? { insecureSkipVerify: true as const } : {}),
  };
}

/**
 * Istio's `localityLbSetting`, checked as Istio's validation does: `distribute` or `failover`,
 * weights from 1 to 100 that add up to 100, failover between two different regions, a warning
 * when failing over without `outlierDetection` (no endpoint would ever be seen failing).
 */
function readLocalityLb(
  f: Fields,
  raw: unknown,
  field: string,
  hasOutlierDetection: boolean,
): LocalityLbSetting | undefined {
  const lb = f.object(raw, field);
  if (lb === undefined) return undefined;
  const enabled = f.boolean(lb.enabled, `${field}.enabled`);
  const distribute: { from: string; to: Record<string, number> }[] = [];
  for (const [i, item] of f.array(lb.distribute, `${field}.distribute`).entries()) {
    const at = `${field}.distribute[${i}]`;
    const entry = f.object(item, at) ?? {};
    const from = f.string(entry.from, `${at}.from`) ?? '';
    const fromProblem = localityPatternProblem(from);
    if (fromProblem !== null) f.problem(`${at}.from`, fromProblem);
    const to: Record<string, number> = {};
    let total = 0;
    for (const [pattern, weight] of Object.entries(f.object(entry.to, `${at}.to`) ?? {})) {
      const problem = localityPatternProblem(pattern);
      if (problem !== null) f.problem(`${at}.to`, problem);
      const w = f.number(weight, `${at}.to[${JSON.stringify(pattern)}]`, {
        min: 1,
        max: 100,
        integer: true,
      });
      if (w === undefined) continue;
      to[pattern] = w;
      total += w;
    }
    if (total !== 100) f.problem(`${at}.to`, `the weights add up to ${total}, not 100`);
    distribute.push({ from, to });
  }
  const failover: { from: string; to: string }[] = [];
  for (const [i, item] of f.array(lb.failover, `${field}.failover`).entries()) {
    const at = `${field}.failover[${i}]`;
    const entry = f.object(item, at) ?? {};
    const from = f.string(entry.from, `${at}.from`) ?? '';
    const to = f.string(entry.to, `${at}.to`) ?? '';
    for (const [key, region] of [
      ['from', from],
      ['to', to],
    ] as const) {
      if (region === '' || region.includes('/') || region.includes('*')) {
        f.problem(`${at}.${key}`, `${JSON.stringify(region)} is not a region (no "/" or "*")`);
      }
    }
    if (from === to && from !== '') f.problem(at, 'fails over from a region to itself');
    failover.push({ from, to });
  }
  const failoverPriority: string[] = [];
  for (const [i, item] of f.array(lb.failoverPriority, `${field}.failoverPriority`).entries()) {
    const label = f.string(item, `${field}.failoverPriority[${i}]`);
    if (label === undefined) continue;
    if (TOPOLOGY_LABELS[label] === undefined) {
      f.problem(
        `${field}.failoverPriority[${i}]`,
        `${JSON.stringify(label)}: Mooring reads only the topology labels yet (${Object.keys(TOPOLOGY_LABELS).join(', ')})`,
      );
    } else {
      failoverPriority.push(label);
    }
  }
  if (distribute.length > 0 && failover.length > 0) {
    f.problem(field, 'sets distribute or failover, not both');
  }
  if (failover.length > 0 && failoverPriority.length > 0) {
    f.problem(field, 'sets failover or topology labels in failoverPriority, not both');
  }
  if ((failover.length > 0 || failoverPriority.length > 0) && !hasOutlierDetection) {
    f.warn(
      field,
      'failover needs outlierDetection beside it: without, it has no effect (as in Istio)',
    );
  }
  return {
    ...(enabled === undefined ? {} : { enabled }),
    ...(distribute.length === 0 ? {} : { distribute }),
    ...(failover.length === 0 ? {} : { failover }),
    ...(failoverPriority.length === 0 ? {} : { failoverPriority }),
  };
}

function readTrafficPolicy(
  f: Fields,
  raw: unknown,
  field: string,
  portLevel = false,
): TrafficPolicy | undefined {
  const tp = f.object(raw, field);
  if (tp === undefined) return undefined;
  unsupported(f, tp, ['tunnel', 'proxyProtocol'], field, false);
  const out: {
    portLevelSettings?: PortTrafficPolicy[];
    loadBalancer?: LoadBalancer;
    consistentHash?: ConsistentHash;
    connectionPool?: ConnectionPoolPolicy;
    outlierDetection?: OutlierDetectionPolicy;
    tls?: TlsPolicy;
    localityLb?: LocalityLbSetting;
  } = {};
  const tls = readTls(f, tp.tls, `${field}.tls`);
  if (tls !== undefined) out.tls = tls;
  const lb = f.object(tp.loadBalancer, `${field}.loadBalancer`);
  if (lb !== undefined) {
    unsupported(f, lb, ['warmupDurationSecs', 'warmup'], `${field}.loadBalancer`, false);
    const locality = readLocalityLb(
      f,
      lb.localityLbSetting,
      `${field}.loadBalancer.localityLbSetting`,
      tp.outlierDetection !== undefined && tp.outlierDetection !== null,
    );
    if (locality !== undefined) out.localityLb = locality;
    const ch = f.object(lb.consistentHash, `${field}.loadBalancer.consistentHash`);
    if (ch !== undefined) {
      if (lb.simple !== undefined) {
        f.problem(`${field}.loadBalancer`, 'sets simple or consistentHash, not both');
      }
      const hash = readConsistentHash(f, ch, `${field}.loadBalancer.consistentHash`);
      if (hash !== undefined) out.consistentHash = hash;
    }
    const simple = f.string(lb.simple, `${field}.loadBalancer.simple`);
    if (simple !== undefined && simple !== 'UNSPECIFIED') {
      const value = LOAD_BALANCERS[simple];
      if (value === undefined) {
        f.problem(
          `${field}.loadBalancer.simple`,
          `must be ROUND_ROBIN, LEAST_REQUEST, LEAST_CONN or RANDOM, not ${JSON.stringify(simple)}`,
        );
      } else {
        out.loadBalancer = value;
      }
    }
  }
  const cp = f.object(tp.connectionPool, `${field}.connectionPool`);
  if (cp !== undefined) {
    const tcp = f.object(cp.tcp, `${field}.connectionPool.tcp`);
    const http = f.object(cp.http, `${field}.connectionPool.http`);
    const pool: { tcp?: ConnectionPoolPolicy['tcp']; http?: ConnectionPoolPolicy['http'] } = {};
    if (tcp !== undefined) {
      const maxConnections = f.number(
        tcp.maxConnections,
        `${field}.connectionPool.tcp.maxConnections`,
        {
          min: 1,
          integer: true,
        },
      );
      const connectTimeoutMs = duration(
        f,
        tcp.connectTimeout,
        `${field}.connectionPool.tcp.connectTimeout`,
        {
          min: 1,
        },
      );
      // Istio: 1 hour when unset, 0 turns it off.
      const idleTimeoutMs = duration(f, tcp.idleTimeout, `${field}.connectionPool.tcp.idleTimeout`);
      const maxConnectionDurationMs = duration(
        f,
        tcp.maxConnectionDuration,
        `${field}.connectionPool.tcp.maxConnectionDuration`,
        { min: 1 },
      );
      const keepalive = readKeepalive(
        f,
        tcp.tcpKeepalive,
        `${field}.connectionPool.tcp.tcpKeepalive`,
      );
      pool.tcp = {
        ...(keepalive === undefined ? {} : { keepalive }),
        ...(maxConnections === undefined ? {} : { maxConnections }),
        ...(connectTimeoutMs === undefined ? {} : { connectTimeoutMs }),
        ...(idleTimeoutMs === undefined ? {} : { idleTimeoutMs }),
        ...(maxConnectionDurationMs === undefined ? {} : { maxConnectionDurationMs }),
      };
    }
    if (http !== undefined) {
      unsupported(
        f,
        http,
        ['http2MaxRequests', 'h2UpgradePolicy', 'useClientProtocol', 'maxConcurrentStreams'],
        `${field}.connectionPool.http`,
        false,
      );
      const at = `${field}.connectionPool.http`;
      const http1MaxPendingRequests = f.number(
        http.http1MaxPendingRequests,
        `${at}.http1MaxPendingRequests`,
        {
          min: 1,
          integer: true,
        },
      );
      const maxRequestsPerConnection = f.number(
        http.maxRequestsPerConnection,
        `${at}.maxRequestsPerConnection`,
        {
          min: 0,
          integer: true,
        },
      );
      const maxRetries = f.number(http.maxRetries, `${at}.maxRetries`, { min: 0, integer: true });
      // 0s: never (Envoy's idle_timeout of 0).
      const idleTimeoutMs = duration(f, http.idleTimeout, `${at}.idleTimeout`);
      pool.http = {
        ...(http1MaxPendingRequests === undefined ? {} : { http1MaxPendingRequests }),
        ...(maxRequestsPerConnection === undefined || maxRequestsPerConnection === 0
          ? {}
          : { maxRequestsPerConnection }),
        ...(maxRetries === undefined ? {} : { maxRetries }),
        ...(idleTimeoutMs === undefined ? {} : { idleTimeoutMs }),
      };
    }
    out.connectionPool = pool;
  }
  const od = f.object(tp.outlierDetection, `${field}.outlierDetection`);
  if (od !== undefined) {
    const at = `${field}.outlierDetection`;
    unsupported(
      f,
      od,
      ['consecutiveLocalOriginFailures', 'splitExternalLocalOriginErrors', 'minHealthPercent'],
      at,
      false,
    );
    // The deprecated `consecutiveErrors` meant gateway errors (502, 503, 504).
    const consecutive5xxErrors =
      f.number(od.consecutive5xxErrors, `${at}.consecutive5xxErrors`, { min: 0, integer: true }) ??
      (od.consecutiveErrors === undefined ? OUTLIER_DEFAULTS.consecutive5xxErrors : 0);
    const consecutiveGatewayErrors =
      f.number(od.consecutiveGatewayErrors, `${at}.consecutiveGatewayErrors`, {
        min: 0,
        integer: true,
      }) ??
      f.number(od.consecutiveErrors, `${at}.consecutiveErrors`, { min: 0, integer: true }) ??
      0;
    const intervalMs =
      duration(f, od.interval, `${at}.interval`, { min: 1 }) ?? OUTLIER_DEFAULTS.intervalMs;
    const baseEjectionTimeMs =
      duration(f, od.baseEjectionTime, `${at}.baseEjectionTime`, { min: 1 }) ??
      OUTLIER_DEFAULTS.baseEjectionTimeMs;
    const maxEjectionPercent =
      f.number(od.maxEjectionPercent, `${at}.maxEjectionPercent`, {
        min: 0,
        max: 100,
        integer: true,
      }) ?? OUTLIER_DEFAULTS.maxEjectionPercent;
    out.outlierDetection = {
      consecutive5xxErrors,
      consecutiveGatewayErrors,
      intervalMs,
      baseEjectionTimeMs,
      maxEjectionPercent,
    };
  }
  if (portLevel) return out;
  const ports: PortTrafficPolicy[] = [];
  for (const [i, item] of f.array(tp.portLevelSettings, `${field}.portLevelSettings`).entries()) {
    const at = `${field}.portLevelSettings[${i}]`;
    const port = f.object(f.object(item, at)?.port, `${at}.port`)?.number;
    if (!isPort(port)) {
      f.problem(`${at}.port.number`, 'must be a port number from 1 to 65535');
      continue;
    }
    if (ports.some((p) => p.port === port)) {
      f.problem(`${at}.port.number`, `port ${port} has settings already`);
      continue;
    }
    const { portLevelSettings: _none, ...settings } = readTrafficPolicy(f, item, at, true) ?? {};
    ports.push({ port, ...settings });
  }
  if (ports.length > 0) out.portLevelSettings = ports;
  return out;
}

const SUBSET_NAME = /^[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$/;

export function readDestinationRule(raw: Json, f: Fields, meta: Meta): DestinationRuleObject {
  const spec = f.object(raw.spec, 'spec') ?? {};
  const selector = f.object(spec.workloadSelector, 'spec.workloadSelector');
  const workloadSelector =
    selector === undefined
      ? {}
      : f.stringMap(selector.matchLabels, 'spec.workloadSelector.matchLabels');
  const hostText = f.string(spec.host, 'spec.host');
  let host: string | null = null;
  if (hostText === undefined || hostText === '') f.problem('spec.host', 'is required');
  else {
    host = meshKeyOfHost(hostText, meta.namespace);
    if (host === null)
      f.warn(
        'spec.host',
        `${JSON.stringify(hostText)} is neither a Kubernetes Service nor a ServiceEntry's host: ignored`,
      );
  }
  const trafficPolicy = readTrafficPolicy(f, spec.trafficPolicy, 'spec.trafficPolicy');
  const subsets: DestinationRuleObject['subsets'][number][] = [];
  for (const [i, s] of f.array(spec.subsets, 'spec.subsets').entries()) {
    const subset = f.object(s, `spec.subsets[${i}]`);
    if (subset === undefined) continue;
    const name = f.string(subset.name, `spec.subsets[${i}].name`);
    if (name === undefined || name === '') {
      f.problem(`spec.subsets[${i}].name`, 'is required');
      continue;
    }
    if (!SUBSET_NAME.test(name)) {
      f.problem(`spec.subsets[${i}].name`, `${JSON.stringify(name)} is not a valid subset name`);
      continue;
    }
    if (subsets.some((x) => x.name === name)) {
      f.problem(`spec.subsets[${i}].name`, `${JSON.stringify(name)} is used twice`);
      continue;
    }
    const labels = f.stringMap(subset.labels, `spec.subsets[${i}].labels`);
    const tp = readTrafficPolicy(f, subset.trafficPolicy, `spec.subsets[${i}].trafficPolicy`);
    subsets.push({ name, labels, ...(tp === undefined ? {} : { trafficPolicy: tp }) });
  }
  const selected = Object.keys(workloadSelector).length > 0;
  if (selected && subsets.length > 0) {
    f.problem(
      'spec.subsets',
      'are not read with a workloadSelector by Mooring yet: define the subsets in a rule without one',
    );
  }
  return {
    kind: 'DestinationRule',
    meta,
    host,
    ...(trafficPolicy === undefined ? {} : { trafficPolicy }),
    subsets,
    exportTo: readExportTo(f, spec.exportTo),
    ...(selected ? { workloadSelector } : {}),
  };
}

// --- HTTPRoute ---------------------------------------------------------------------------------

const CORE_GROUPS = ['', 'core'];

function readGatewayStringMatch(
  f: Fields,
  m: Json,
  field: string,
  what: 'header' | 'query parameter',
): { name: string; value: StringMatch } | null {
  const type = f.string(m.type, `${field}.type`) ?? 'Exact';
  const name = f.string(m.name, `${field}.name`);
  const value = f.string(m.value, `${field}.value`);
  if (name === undefined || name === '') {
    f.problem(`${field}.name`, 'is required');
    return null;
  }
  if (value === undefined) {
    f.problem(`${field}.value`, 'is required');
    return null;
  }
  if (type === 'Exact') return { name, value: { exact: value } };
  if (type === 'RegularExpression') {
    const re = regex(f, value, `${field}.value`);
    return re === undefined ? null : { name, value: { regex: re } };
  }
  f.problem(
    `${field}.type`,
    `must be Exact or RegularExpression for a ${what}, not ${JSON.stringify(type)}`,
  );
  return null;
}

/** A Gateway API match's `headers`; of several matches on one header name, the first wins. */
function readGatewayHeaders(f: Fields, raw: unknown, field: string): HeaderMatch[] {
  const headers: HeaderMatch[] = [];
  for (const [i, h] of f.array(raw, field).entries()) {
    const hm = f.object(h, `${field}[${i}]`);
    if (hm === undefined) continue;
    const r = readGatewayStringMatch(f, hm, `${field}[${i}]`, 'header');
    if (r === null) continue;
    const name = headerName(f, r.name, `${field}[${i}].name`, true);
    if (name !== null && !headers.some((x) => x.name === name))
      headers.push({ name, value: r.value });
  }
  return headers;
}

function readGatewayMatch(f: Fields, raw: unknown, field: string): RequestMatch | null {
  const m = f.object(raw, field);
  if (m === undefined) return null;
  const out: {
    uri?: StringMatch;
    pathPrefix?: string;
    method?: StringMatch;
    headers?: HeaderMatch[];
    queryParams?: { name: string; value?: StringMatch }[];
  } = {};
  const path = f.object(m.path, `${field}.path`);
  const type =
    (path === undefined ? undefined : f.string(path.type, `${field}.path.type`)) ?? 'PathPrefix';
  const value =
    (path === undefined ? undefined : f.string(path.value, `${field}.path.value`)) ?? '/';
  if (type === 'RegularExpression') {
    const re = regex(f, value, `${field}.path.value`);
    if (re !== undefined) out.uri = { regex: re };
  } else if (!value.startsWith('/')) {
    f.problem(`${field}.path.value`, `must start with "/", not ${JSON.stringify(value)}`);
  } else if (type === 'Exact') {
    out.uri = { exact: value };
  } else if (type === 'PathPrefix') {
    out.pathPrefix = value;
  } else {
    f.problem(
      `${field}.path.type`,
      `must be Exact, PathPrefix or RegularExpression, not ${JSON.stringify(type)}`,
    );
  }
  const method = f.string(m.method, `${field}.method`);
  if (method !== undefined) out.method = { exact: method };
  const headers = readGatewayHeaders(f, m.headers, `${field}.headers`);
  if (headers.length > 0) out.headers = headers;
  const params: { name: string; value?: StringMatch }[] = [];
  for (const [i, q] of f.array(m.queryParams, `${field}.queryParams`).entries()) {
    const qm = f.object(q, `${field}.queryParams[${i}]`);
    if (qm === undefined) continue;
    const r = readGatewayStringMatch(f, qm, `${field}.queryParams[${i}]`, 'query parameter');
    if (r !== null && !params.some((x) => x.name === r.name)) params.push(r);
  }
  if (params.length > 0) out.queryParams = params;
  return out;
}

/** What a Gateway API rule's filters make of it. */
interface GatewayFilters {
  cors?: CorsPolicy;
  requestHeaders?: HeaderOperations;
  responseHeaders?: HeaderOperations;
  rewrite?: RouteRewrite;
  reply?: RouteReply;
  mirrors?: RouteMirror[];
}

/** Gateway API's HTTPPathModifier (URLRewrite's and RequestRedirect's `path`). */
function gatewayPath(
  f: Fields,
  raw: unknown,
  field: string,
): { prefix?: string; fullPath?: string } {
  const p = f.object(raw, field);
  if (p === undefined) return {};
  const pt = f.string(p.type, `${field}.type`);
  if (pt === 'ReplaceFullPath' || pt === 'ReplacePrefixMatch') {
    const key = pt === 'ReplaceFullPath' ? 'replaceFullPath' : 'replacePrefixMatch';
    const v = f.string(p[key], `${field}.${key}`);
    if (v === undefined) {
      f.problem(`${field}.${key}`, 'is required');
      return {};
    }
    return pt === 'ReplaceFullPath' ? { fullPath: v } : { prefix: v };
  }
  f.problem(
    `${field}.type`,
    `must be ReplaceFullPath or ReplacePrefixMatch, not ${JSON.stringify(pt)}`,
  );
  return {};
}

/** Gateway API's RequestRedirect filter: the port, when absent, is the scheme's or the Service's. */
function gatewayRedirect(f: Fields, raw: unknown, field: string): RouteReply {
  const r = f.object(raw, field) ?? {};
  const scheme = f.string(r.scheme, `${field}.scheme`);
  if (scheme !== undefined && scheme !== 'http' && scheme !== 'https') {
    f.problem(`${field}.scheme`, `must be http or https, not ${JSON.stringify(scheme)}`);
  }
  const hostname = f.string(r.hostname, `${field}.hostname`);
  const port = f.number(r.port, `${field}.port`, { min: 1, max: 65535, integer: true });
  const path = gatewayPath(f, r.path, `${field}.path`);
  return {
    kind: 'redirect',
    status: redirectCode(f, r.statusCode, `${field}.statusCode`),
    ...(scheme === undefined ? {} : { scheme }),
    ...(hostname === undefined || hostname === '' ? {} : { host: hostname }),
    port: port ?? (scheme === undefined ? 'service' : 'scheme'),
    ...(Object.keys(path).length === 0 ? {} : { path }),
  };
}

/**
 * Gateway API's RequestMirror filter: a Service backend (its port required), `percent` or
 * `fraction` of the requests (all when neither).
 */
function gatewayMirror(
  f: Fields,
  raw: unknown,
  field: string,
  namespace: string,
): RouteMirror | null {
  const m = f.object(raw, field);
  if (m === undefined) {
    f.problem(field, 'is required');
    return null;
  }
  const backend = gatewayBackend(f, m.backendRef, `${field}.backendRef`, namespace);
  if (
    m.percent !== undefined &&
    m.percent !== null &&
    m.fraction !== undefined &&
    m.fraction !== null
  ) {
    f.problem(field, 'has percent or fraction, not both');
  }
  let percent = f.number(m.percent, `${field}.percent`, { min: 0, max: 100, integer: true });
  const fr = f.object(m.fraction, `${field}.fraction`);
  if (fr !== undefined) {
    const numerator = f.number(fr.numerator, `${field}.fraction.numerator`, {
      min: 0,
      integer: true,
    });
    const denominator =
      f.number(fr.denominator, `${field}.fraction.denominator`, { min: 1, integer: true }) ?? 100;
    if (numerator === undefined) f.problem(`${field}.fraction.numerator`, 'is required');
    else if (numerator > denominator) {
      f.problem(`${field}.fraction`, 'numerator must not be greater than denominator');
    } else percent = (100 * numerator) / denominator;
  }
  if (backend === null) return null;
  return { service: backend.service, port: backend.port, percent: percent ?? 100 };
}

/** The filters of a GRPCRoute rule: those of HTTPRoute's that make sense for gRPC. */
const GRPC_FILTERS = ['RequestHeaderModifier', 'ResponseHeaderModifier', 'RequestMirror'];

function readFilters(
  f: Fields,
  raw: unknown,
  field: string,
  namespace: string,
  kind: 'HTTPRoute' | 'GRPCRoute' = 'HTTPRoute',
): GatewayFilters {
  const out: GatewayFilters = {};
  for (const [i, item] of f.array(raw, field).entries()) {
    const filter = f.object(item, `${field}[${i}]`);
    if (filter === undefined) continue;
    const type = f.string(filter.type, `${field}[${i}].type`);
    if (kind === 'GRPCRoute' && type !== undefined && !GRPC_FILTERS.includes(type)) {
      f.problem(
        `${field}[${i}].type`,
        `${JSON.stringify(type)} is not supported on a GRPCRoute by Mooring (${GRPC_FILTERS.join(', ')} are)`,
      );
    } else if (type === 'RequestHeaderModifier' || type === 'ResponseHeaderModifier') {
      const request = type === 'RequestHeaderModifier';
      const key = request ? 'requestHeaderModifier' : 'responseHeaderModifier';
      const at = `${field}[${i}].${key}`;
      const ops = headerOps(f, f.object(filter[key], at), at, true);
      if (ops !== undefined) out[request ? 'requestHeaders' : 'responseHeaders'] = ops;
    } else if (type === 'RequestRedirect') {
      out.reply = gatewayRedirect(f, filter.requestRedirect, `${field}[${i}].requestRedirect`);
    } else if (type === 'URLRewrite') {
      const u = f.object(filter.urlRewrite, `${field}[${i}].urlRewrite`) ?? {};
      const rewrite: { prefix?: string; fullPath?: string; authority?: string } = {};
      const hostname = f.string(u.hostname, `${field}[${i}].urlRewrite.hostname`);
      if (hostname !== undefined) rewrite.authority = hostname;
      Object.assign(rewrite, gatewayPath(f, u.path, `${field}[${i}].urlRewrite.path`));
      out.rewrite = rewrite;
    } else if (type === 'RequestMirror') {
      const at = `${field}[${i}].requestMirror`;
      const mirror = gatewayMirror(f, filter.requestMirror, at, namespace);
      if (mirror !== null) (out.mirrors ??= []).push(mirror);
    } else if (type === 'CORS') {
      out.cors = gatewayCors(f, filter.cors, `${field}[${i}].cors`);
    } else {
      f.problem(
        `${field}[${i}].type`,
        `${JSON.stringify(type)} is not supported by Mooring yet (RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect, URLRewrite, RequestMirror and CORS are)`,
      );
    }
  }
  if (out.reply !== undefined && out.rewrite !== undefined) {
    f.problem(field, 'RequestRedirect and URLRewrite cannot be in one rule');
  }
  return out;
}

/** A CORS origin, `<scheme>://<host>[:<port>]`, whose host may start with `*` (any labels). */
const CORS_ORIGIN =
  /^(https?):\/\/(\*|(?:\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(?:\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)(?::([0-9]{1,5}))?$/i;

/**
 * Gateway API's CORS filter (experimental channel): origins exact or with a leading `*` in the
 * host (the scheme's default port written or not), `*` for any; `maxAge` 5 s by default; a
 * preflight from an origin not allowed is answered by the proxy without CORS headers.
 */
function gatewayCors(f: Fields, raw: unknown, field: string): CorsPolicy | undefined {
  const c = f.object(raw, field);
  if (c === undefined) {
    f.problem(field, 'is required');
    return undefined;
  }
  const allowOrigins: StringMatch[] = [];
  for (const [i, o] of f.array(c.allowOrigins, `${field}.allowOrigins`).entries()) {
    const origin = f.string(o, `${field}.allowOrigins[${i}]`);
    if (origin === undefined) continue;
    if (origin === '*') {
      allowOrigins.push({ prefix: '' });
      continue;
    }
    const m = CORS_ORIGIN.exec(origin);
    const port = m?.[5] === undefined ? undefined : Number(m[5]);
    if (m === null || (port !== undefined && (port < 1 || port > 65535))) {
      f.problem(
        `${field}.allowOrigins[${i}]`,
        `${JSON.stringify(origin)} is not an origin (<scheme>://<host>[:<port>], http or https, the host may start with "*.")`,
      );
      continue;
    }
    const scheme = (m[1] as string).toLowerCase();
    const host = (m[2] as string).toLowerCase();
    // Browsers leave out the scheme's default port.
    const portText =
      port === undefined || port === (scheme === 'https' ? 443 : 80) ? '' : `:${port}`;
    if (!host.includes('*')) {
      allowOrigins.push({ exact: `${scheme}://${host}${portText}` });
      continue;
    }
    // `*` stands for any labels, dots included (the Gateway API's greedy left match).
    const rest = host === '*' ? '' : host.slice(1).replace(/[.]/g, '\\.');
    allowOrigins.push({ regex: `${scheme}://[a-z0-9.-]+${rest}${portText}` });
  }
  const list = (key: string, lower: boolean): string[] => {
    const out: string[] = [];
    for (const [i, v] of f.array(c[key], `${field}.${key}`).entries()) {
      const text = f.string(v, `${field}.${key}[${i}]`);
      if (text === undefined || text === '') continue;
      if (text === '*' && f.array(c[key], `${field}.${key}`).length > 1) {
        f.problem(`${field}.${key}`, 'has "*" alongside other values');
      }
      out.push(lower ? text.toLowerCase() : text);
    }
    return out;
  };
  const credentials = c.allowCredentials;
  if (credentials !== undefined && credentials !== null && typeof credentials !== 'boolean') {
    f.problem(`${field}.allowCredentials`, 'must be true or false');
  }
  const maxAge = f.number(c.maxAge, `${field}.maxAge`, { min: 1, integer: true }) ?? 5;
  return {
    allowOrigins,
    allowMethods: list('allowMethods', false),
    allowHeaders: list('allowHeaders', true),
    exposeHeaders: list('exposeHeaders', true),
    maxAgeSeconds: maxAge,
    allowCredentials: credentials === true,
    ignoreUnmatchedPreflights: true,
  };
}

/** A Gateway API BackendObjectReference to a Service, with its port (required for a Service). */
function gatewayBackend(
  f: Fields,
  raw: unknown,
  field: string,
  namespace: string,
): { service: string; port: number } | null {
  if (raw === undefined || raw === null) {
    f.problem(field, 'is required');
    return null;
  }
  const ref = f.object(raw, field);
  if (ref === undefined) return null;
  const group = f.string(ref.group, `${field}.group`) ?? '';
  const kind = f.string(ref.kind, `${field}.kind`) ?? 'Service';
  if (!(CORE_GROUPS.includes(group) && kind === 'Service')) {
    f.problem(
      `${field}.kind`,
      `only Services are supported as backends, not ${group === '' ? '' : `${group}/`}${kind}`,
    );
    return null;
  }
  const name = f.string(ref.name, `${field}.name`);
  if (name === undefined || name === '') {
    f.problem(`${field}.name`, 'is required');
    return null;
  }
  const ns = f.string(ref.namespace, `${field}.namespace`) || namespace;
  if (!isPort(ref.port)) {
    f.problem(`${field}.port`, 'is required for a Service backend (a port number from 1 to 65535)');
    return null;
  }
  return { service: `${ns}/${name}`, port: ref.port };
}

/** A Gateway API route's Service parents (GAMMA); Gateway parents are left out. */
function readRouteParents(f: Fields, spec: Json, meta: Meta): RouteParent[] {
  const parents: RouteParent[] = [];
  for (const [i, p] of f.array(spec.parentRefs, 'spec.parentRefs').entries()) {
    const ref = f.object(p, `spec.parentRefs[${i}]`);
    if (ref === undefined) continue;
    const group = f.string(ref.group, `spec.parentRefs[${i}].group`) ?? 'gateway.networking.k8s.io';
    const kind = f.string(ref.kind, `spec.parentRefs[${i}].kind`) ?? 'Gateway';
    if (!(CORE_GROUPS.includes(group) && kind === 'Service')) continue;
    const name = f.string(ref.name, `spec.parentRefs[${i}].name`);
    if (name === undefined || name === '') {
      f.problem(`spec.parentRefs[${i}].name`, 'is required');
      continue;
    }
    const ns = f.string(ref.namespace, `spec.parentRefs[${i}].namespace`) || meta.namespace;
    let port: number | undefined;
    if (ref.port !== undefined && ref.port !== null) {
      if (isPort(ref.port)) port = ref.port;
      else f.problem(`spec.parentRefs[${i}].port`, 'must be a port number from 1 to 65535');
    }
    const sectionName = f.string(ref.sectionName, `spec.parentRefs[${i}].sectionName`);
    parents.push({
      service: `${ns}/${name}`,
      ...(port === undefined ? {} : { port }),
      ...(sectionName === undefined || sectionName === '' ? {} : { sectionName }),
      index: i,
    });
  }
  return parents;
}

/** A route rule's `backendRefs`: Services with a port, weighted (1 by default). */
function readRouteBackends(
  f: Fields,
  rule: Json,
  at: string,
  namespace: string,
): HttpRouteBackend[] {
  const backends: HttpRouteBackend[] = [];
  for (const [j, b] of f.array(rule.backendRefs, `${at}.backendRefs`).entries()) {
    const bt = `${at}.backendRefs[${j}]`;
    const ref = f.object(b, bt);
    if (ref === undefined) continue;
    if (ref.filters !== undefined) f.problem(`${bt}.filters`, 'is not supported by Mooring yet');
    const backend = gatewayBackend(f, ref, bt, namespace);
    if (backend === null) continue;
    const weight =
      f.number(ref.weight, `${bt}.weight`, { min: 0, max: 1_000_000, integer: true }) ?? 1;
    backends.push({ ...backend, weight });
  }
  return backends;
}

const generationOf = (raw: Json): number => {
  const metadata = isObject(raw.metadata) ? raw.metadata : {};
  return typeof metadata.generation === 'number' ? metadata.generation : 0;
};

/** What every Gateway API route rule has: where it is, its name, matches and backends. */
interface RouteRuleBase<M> {
  readonly at: string;
  readonly rule: Json;
  readonly name: string | undefined;
  /** A rule without matches has one, read from `{}` (it takes every request). */
  readonly matches: M[];
  readonly backends: HttpRouteBackend[];
}

/** A route's `spec.rules` (one rule without matches when there is none), each made by `build`. */
function readRouteRules<M, R>(
  f: Fields,
  spec: Json,
  namespace: string,
  readMatch: (f: Fields, raw: unknown, field: string) => M | null,
  build: (base: RouteRuleBase<M>) => R,
): R[] {
  const rules: R[] = [];
  const rawRules = f.array(spec.rules, 'spec.rules');
  for (const [i, r] of (rawRules.length === 0 ? [{}] : rawRules).entries()) {
    const at = `spec.rules[${i}]`;
    const rule = f.object(r, at);
    if (rule === undefined) continue;
    const name = f.string(rule.name, `${at}.name`);
    const rawMatches = f.array(rule.matches, `${at}.matches`);
    const matches: M[] = [];
    for (const [j, m] of (rawMatches.length === 0 ? [{}] : rawMatches).entries()) {
      const match = readMatch(f, m, `${at}.matches[${j}]`);
      if (match !== null) matches.push(match);
    }
    const backends = readRouteBackends(f, rule, at, namespace);
    rules.push(build({ at, rule, name, matches, backends }));
  }
  return rules;
}

export function readHttpRoute(raw: Json, f: Fields, meta: Meta): HttpRouteObject {
  const spec = f.object(raw.spec, 'spec') ?? {};
  const parents = readRouteParents(f, spec, meta);
  const rules = readRouteRules(
    f,
    spec,
    meta.namespace,
    readGatewayMatch,
    ({ at, rule, name, matches, backends }): HttpRouteRuleSpec => {
      const timeouts = f.object(rule.timeouts, `${at}.timeouts`) ?? {};
      const timeoutMs = duration(f, timeouts.request, `${at}.timeouts.request`);
      const backendTimeoutMs = duration(
        f,
        timeouts.backendRequest,
        `${at}.timeouts.backendRequest`,
      );
      if (
        timeoutMs !== undefined &&
        timeoutMs > 0 &&
        backendTimeoutMs !== undefined &&
        backendTimeoutMs > timeoutMs
      ) {
        f.problem(`${at}.timeouts.backendRequest`, 'must not be longer than timeouts.request');
      }
      let retry: HttpRouteRuleSpec['retry'];
      const rr = f.object(rule.retry, `${at}.retry`);
      if (rr !== undefined) {
        const attempts = f.number(rr.attempts, `${at}.retry.attempts`, { min: 0, integer: true });
        const codes: number[] = [];
        for (const [j, c] of f.array(rr.codes, `${at}.retry.codes`).entries()) {
          const code = f.number(c, `${at}.retry.codes[${j}]`, {
            min: 400,
            max: 599,
            integer: true,
          });
          if (code !== undefined) codes.push(code);
        }
        const backoffMs = duration(f, rr.backoff, `${at}.retry.backoff`);
        retry = {
          ...(attempts === undefined ? {} : { attempts }),
          codes,
          ...(backoffMs === undefined ? {} : { backoffMs }),
        };
      }
      unsupported(f, rule, ['sessionPersistence'], at, false);
      const filters = readFilters(f, rule.filters, `${at}.filters`, meta.namespace);
      const redirectPath = filters.reply?.kind === 'redirect' ? filters.reply.path : undefined;
      if (
        (filters.rewrite?.prefix !== undefined || redirectPath?.prefix !== undefined) &&
        !matches.every((m) => m.pathPrefix !== undefined)
      ) {
        f.problem(
          `${at}.filters`,
          'ReplacePrefixMatch needs every match of the rule to be a PathPrefix match',
        );
      }
      return {
        ...(name === undefined ? {} : { name }),
        matches,
        backends,
        ...(timeoutMs === undefined || timeoutMs === 0 ? {} : { timeoutMs }),
        ...(backendTimeoutMs === undefined || backendTimeoutMs === 0 ? {} : { backendTimeoutMs }),
        ...(retry === undefined ? {} : { retry }),
        ...filters,
      };
    },
  );
  return { kind: 'HTTPRoute', meta, parents, rules, generation: generationOf(raw) };
}

// --- GRPCRoute ---------------------------------------------------------------------------------

/** A gRPC service name (`package.Service`) or method name, as the Gateway API allows them. */
const GRPC_SERVICE = /^\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$/i;
const GRPC_METHOD = /^[A-Za-z_][A-Za-z_0-9]*$/;

function readGrpcMatch(f: Fields, raw: unknown, field: string): GrpcRouteMatch | null {
  const m = f.object(raw, field);
  if (m === undefined) return null;
  const out: {
    type: GrpcRouteMatch['type'];
    service?: string;
    method?: string;
    headers?: HeaderMatch[];
  } = { type: 'Exact' };
  const mm = f.object(m.method, `${field}.method`);
  if (mm !== undefined) {
    const type = f.string(mm.type, `${field}.method.type`) ?? 'Exact';
    if (type !== 'Exact' && type !== 'RegularExpression') {
      f.problem(
        `${field}.method.type`,
        `must be Exact or RegularExpression, not ${JSON.stringify(type)}`,
      );
      return null;
    }
    out.type = type;
    const service = f.string(mm.service, `${field}.method.service`);
    const method = f.string(mm.method, `${field}.method.method`);
    if ((service ?? '') === '' && (method ?? '') === '') {
      f.problem(`${field}.method`, 'needs a service, a method or both');
      return null;
    }
    for (const [key, value, shape] of [
      ['service', service, GRPC_SERVICE],
      ['method', method, GRPC_METHOD],
    ] as const) {
      if (value === undefined || value === '') continue;
      if (type === 'Exact' && !shape.test(value)) {
        f.problem(
          `${field}.method.${key}`,
          `${JSON.stringify(value)} is not a gRPC ${key} name (${key === 'service' ? 'package.Service' : 'a letter or _, then letters, digits or _'})`,
        );
        return null;
      }
      if (type === 'RegularExpression' && regex(f, value, `${field}.method.${key}`) === undefined)
        return null;
      out[key] = value;
    }
  }
  const headers = readGatewayHeaders(f, m.headers, `${field}.headers`);
  if (headers.length > 0) out.headers = headers;
  return out;
}

/**
 * A GRPCRoute (Gateway API, GAMMA): rules of gRPC service/method and header matches, weighted
 * Service backends, and the header and mirror filters.
 */
export function readGrpcRoute(raw: Json, f: Fields, meta: Meta): GrpcRouteObject {
  const spec = f.object(raw.spec, 'spec') ?? {};
  const parents = readRouteParents(f, spec, meta);
  const rules = readRouteRules(
    f,
    spec,
    meta.namespace,
    readGrpcMatch,
    ({ at, rule, name, matches, backends }): GrpcRouteRuleSpec => {
      unsupported(f, rule, ['sessionPersistence'], at, false);
      const filters = readFilters(f, rule.filters, `${at}.filters`, meta.namespace, 'GRPCRoute');
      return {
        ...(name === undefined ? {} : { name }),
        matches,
        backends,
        ...(filters.requestHeaders === undefined ? {} : { requestHeaders: filters.requestHeaders }),
        ...(filters.responseHeaders === undefined
          ? {}
          : { responseHeaders: filters.responseHeaders }),
        ...(filters.mirrors === undefined ? {} : { mirrors: filters.mirrors }),
      };
    },
  );
  return { kind: 'GRPCRoute', meta, parents, rules, generation: generationOf(raw) };
}

/** A TCPRoute's or TLSRoute's rules: one, its backends (no matches, no filters). */
function readTcpKindRules(f: Fields, spec: Json, namespace: string): GatewayTcpRuleSpec[] {
  if (f.array(spec.rules, 'spec.rules').length > 1) {
    f.problem('spec.rules', 'takes one rule (a connection has nothing to match a second one on)');
  }
  return readRouteRules(
    f,
    spec,
    namespace,
    () => null,
    ({ at, rule, name, backends }): GatewayTcpRuleSpec => {
      unsupported(f, rule, ['matches', 'filters'], at, true);
      if (backends.length === 0) f.problem(`${at}.backendRefs`, 'needs at least one backend');
      else if (backends.every((b) => b.weight === 0)) {
        f.problem(
          `${at}.backendRefs`,
          'has weights that add up to 0: no backend takes a connection',
        );
      }
      return { ...(name === undefined ? {} : { name }), backends };
    },
  );
}

/** A TCPRoute attached to Services (GAMMA): every connection to the ports it names. */
export function readGatewayTcpRoute(raw: Json, f: Fields, meta: Meta): TcpRouteObject {
  const spec = f.object(raw.spec, 'spec') ?? {};
  const parents = readRouteParents(f, spec, meta);
  const rules = readTcpKindRules(f, spec, meta.namespace);
  return { kind: 'TCPRoute', meta, parents, rules, generation: generationOf(raw) };
}

/** A TLS server name of a TLSRoute: a DNS name, or `*.` and one (no IP address). */
const TLS_HOSTNAME = /^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** A TLSRoute attached to Services: the TLS connections whose server name (SNI) it names. */
export function readGatewayTlsRoute(raw: Json, f: Fields, meta: Meta): TlsRouteObject {
  const spec = f.object(raw.spec, 'spec') ?? {};
  const parents = readRouteParents(f, spec, meta);
  const hostnames: string[] = [];
  for (const [i, h] of f.array(spec.hostnames, 'spec.hostnames').entries()) {
    const name = f.string(h, `spec.hostnames[${i}]`);
    if (name === undefined) continue;
    if (!TLS_HOSTNAME.test(name) || name.length > 253) {
      f.problem(
        `spec.hostnames[${i}]`,
        `${JSON.stringify(name)} is not a DNS name, or "*." and one (lowercase)`,
      );
      continue;
    }
    hostnames.push(name);
  }
  const rules = readTcpKindRules(f, spec, meta.namespace);
  return { kind: 'TLSRoute', meta, parents, hostnames, rules, generation: generationOf(raw) };
}

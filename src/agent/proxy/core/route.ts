// Route selection for one HTTP request (pure; randomness comes in). The first rule of the
// service's route table that matches wins; its weighted destinations are drawn from; without a
// table, the request goes to the service it was sent to, with Istio's defaults (no timeout,
// 2 retries on connect-failure, refused-stream, unavailable, cancelled).

import type {
  FaultPolicy,
  HeaderOperations,
  HttpRouteRule,
  HttpRouteTable,
  MeshService,
  RequestMatch,
  RetryPolicy,
  StringMatch,
} from '../../../api/mesh';
import type { Random } from './endpoints';

export interface RequestView {
  readonly method: string;
  /** The request target in origin form: path and query. */
  readonly path: string;
  /** A header's value by lowercase name (the first, or the comma-joined list), or null. */
  header(lowerName: string): string | null;
}

export interface RouteDecision {
  readonly rule: HttpRouteRule | null;
  readonly table: HttpRouteTable | null;
  readonly service: MeshService;
  readonly port: number;
  readonly subset: string | undefined;
  readonly timeoutMs: number | null;
  readonly retries: RetryPolicy;
  readonly fault: FaultPolicy | undefined;
  readonly requestHeaders: HeaderOperations | undefined;
}

/** Istio's default retry policy (see PRODUCT.md): not on 503. */
export const DEFAULT_RETRIES: RetryPolicy = Object.freeze({
  attempts: 2,
  retryOn: Object.freeze(['connect-failure', 'refused-stream', 'unavailable', 'cancelled']),
});

const regexCache = new WeakMap<object, RegExp>();

/** RE2 semantics as Envoy uses them: the whole value must match. */
function compiled(m: { readonly regex: string }): RegExp {
  let re = regexCache.get(m);
  if (re === undefined) {
    re = new RegExp(`^(?:${m.regex})$`, 'su');
    regexCache.set(m, re);
  }
  return re;
}

export function matchString(m: StringMatch, value: string): boolean {
  if ('exact' in m) return value === m.exact;
  if ('prefix' in m) return value.startsWith(m.prefix);
  return compiled(m).test(value);
}

const pathOnly = (path: string): string => {
  const q = path.indexOf('?');
  return q === -1 ? path : path.slice(0, q);
};

/** Envoy: prefix matches the whole `:path`; exact and regex match it without the query. */
function matchUri(m: StringMatch, path: string): boolean {
  if ('prefix' in m) return path.startsWith(m.prefix);
  return matchString(m, pathOnly(path));
}

function queryParam(path: string, name: string): string | null {
  const q = path.indexOf('?');
  if (q === -1) return null;
  for (const pair of path.slice(q + 1).split('&')) {
    const eq = pair.indexOf('=');
    const key = eq === -1 ? pair : pair.slice(0, eq);
    if (key === name) return eq === -1 ? '' : pair.slice(eq + 1);
  }
  return null;
}

export function matchRequest(m: RequestMatch, req: RequestView): boolean {
  if (m.method !== undefined && !matchString(m.method, req.method)) return false;
  if (m.uri !== undefined && !matchUri(m.uri, req.path)) return false;
  if (m.headers !== undefined) {
    for (const h of m.headers) {
      const value = req.header(h.name);
      const ok = value !== null && (h.value === undefined || matchString(h.value, value));
      if (ok === (h.invert === true)) return false;
    }
  }
  if (m.queryParams !== undefined) {
    for (const q of m.queryParams) {
      const value = queryParam(req.path, q.name);
      if (value === null) return false;
      if (q.value !== undefined && !matchString(q.value, value)) return false;
    }
  }
  return true;
}

/** The first matching rule of a table, or null. An empty match list matches every request. */
export function firstMatchingRule(table: HttpRouteTable, req: RequestView): HttpRouteRule | null {
  for (const rule of table.rules) {
    if (rule.matches.length === 0) return rule;
    for (const m of rule.matches) if (matchRequest(m, req)) return rule;
  }
  return null;
}

/**
 * Where a request to `service`:`port` goes. null: a table exists and no rule matches (Envoy
 * answers 404 with the NR flag), or the chosen destination is not a known service.
 */
export function routeRequest(
  service: MeshService,
  port: number,
  req: RequestView,
  random: Random,
  lookupService: (key: string) => MeshService | null,
): RouteDecision | null {
  const table = service.routes;
  if (table === undefined || (table.ports !== undefined && !table.ports.includes(port))) {
    return {
      rule: null,
      table: null,
      service,
      port,
      subset: undefined,
      timeoutMs: null,
      retries: DEFAULT_RETRIES,
      fault: undefined,
      requestHeaders: undefined,
    };
  }
  const rule = firstMatchingRule(table, req);
  if (rule === null || rule.destinations.length === 0) return null;
  let chosen = rule.destinations[0];
  if (rule.destinations.length > 1) {
    let total = 0;
    for (const d of rule.destinations) total += d.weight;
    if (total > 0) {
      let draw = random() * total;
      for (const d of rule.destinations) {
        draw -= d.weight;
        if (draw < 0) {
          chosen = d;
          break;
        }
      }
    }
  }
  if (chosen === undefined) return null;
  const dest = chosen.service === service.key ? service : lookupService(chosen.service);
  if (dest === null) return null;
  return {
    rule,
    table,
    service: dest,
    port: chosen.port ?? port,
    subset: chosen.subset,
    timeoutMs: rule.timeoutMs ?? null,
    retries: rule.retries ?? DEFAULT_RETRIES,
    fault: rule.fault,
    requestHeaders: rule.requestHeaders,
  };
}

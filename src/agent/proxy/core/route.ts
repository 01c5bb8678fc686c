// Route selection for one HTTP request (pure; randomness comes in). The first rule of the
// service's route table that matches wins; its weighted destinations are drawn from; without a
// table, the request goes to the service it was sent to, with Istio's defaults (no timeout,
// 2 retries on connect-failure, refused-stream, unavailable, cancelled).

import type {
  CorsPolicy,
  DestinationPolicy,
  FaultPolicy,
  MeshState,
  HeaderOperations,
  HttpRouteRule,
  HttpRouteTable,
  MeshService,
  RequestMatch,
  RouteDestination,
  RouteReply,
  RetryPolicy,
  RouteRewrite,
  TcpRouteRule,
  StringMatch,
} from '../../../api/mesh';
import { inCidr } from '../../../ip';
import { hostMatches } from '../../../mesh/hosts';
import type { Random } from './endpoints';

export interface RequestView {
  readonly method: string;
  /** The request target in origin form: path and query. */
  readonly path: string;
  /** A header's value by lowercase name (the first, or the comma-joined list), or null. */
  header(lowerName: string): string | null;
}

export interface RouteDecision {
  readonly kind?: undefined;
  readonly rule: HttpRouteRule | null;
  /** The match of the rule that matched (null: the rule matches every request). */
  readonly match: RequestMatch | null;
  readonly table: HttpRouteTable | null;
  readonly service: MeshService;
  readonly port: number;
  readonly subset: string | undefined;
  readonly timeoutMs: number | null;
  readonly retries: RetryPolicy;
  readonly fault: FaultPolicy | undefined;
  readonly requestHeaders: HeaderOperations | undefined;
  readonly rewrite: RouteRewrite | undefined;
}

/** A rule the proxy answers itself (a redirect, a direct response). */
export interface RouteReplyDecision {
  readonly kind: 'reply';
  readonly rule: HttpRouteRule;
  readonly match: RequestMatch | null;
  readonly reply: RouteReply;
}

/**
 * A rule matched but nothing can take the request: no destination, or weights that add up to 0
 * (Gateway API: 500), or a destination the mesh does not know (an HTTPRoute's backend: 500; a
 * VirtualService's host: 503, Envoy's missing cluster).
 */
export interface RouteFailure {
  readonly kind: 'failure';
  readonly status: 500 | 503;
  readonly reason: string;
  readonly rule: HttpRouteRule;
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

/**
 * What a route's CORS policy does with a request, as Envoy's CORS filter: nothing (no Origin, or
 * one not allowed: the app decides); a preflight answered by the proxy with these headers (none
 * for an origin not allowed, when the policy does not forward those); or these headers added to
 * the app's answer.
 */
export function corsFor(
  cors: CorsPolicy,
  req: RequestView,
):
  | { readonly kind: 'preflight'; readonly headers: readonly string[] }
  | { readonly kind: 'answer'; readonly headers: readonly string[] }
  | null {
  const origin = req.header('origin');
  if (origin === null) return null;
  const preflight =
    req.method === 'OPTIONS' && req.header('access-control-request-method') !== null;
  if (!cors.allowOrigins.some((m) => matchString(m, origin))) {
    return preflight && cors.ignoreUnmatchedPreflights === true
      ? { kind: 'preflight', headers: [] }
      : null;
  }
  const headers = ['access-control-allow-origin', origin];
  const credentials = cors.allowCredentials;
  if (credentials) headers.push('access-control-allow-credentials', 'true');
  // With credentials a browser takes `*` literally: the request's own values are echoed instead
  // (the Gateway API's rule), and nothing for what the request does not name.
  const any = (list: readonly string[]): boolean => credentials && list.includes('*');
  if (!preflight) {
    if (cors.exposeHeaders.length > 0 && !any(cors.exposeHeaders))
      headers.push('access-control-expose-headers', cors.exposeHeaders.join(','));
    return { kind: 'answer', headers };
  }
  const methods = any(cors.allowMethods)
    ? req.header('access-control-request-method')
    : cors.allowMethods.join(',');
  if (methods !== null && methods !== '') headers.push('access-control-allow-methods', methods);
  const requested = any(cors.allowHeaders)
    ? req.header('access-control-request-headers')
    : cors.allowHeaders.join(',');
  if (requested !== null && requested !== '')
    headers.push('access-control-allow-headers', requested);
  if (cors.maxAgeSeconds !== undefined)
    headers.push('access-control-max-age', String(cors.maxAgeSeconds));
  return { kind: 'preflight', headers };
}

const rewriteCache = new WeakMap<object, { re: RegExp; replacement: string }>();

/** Envoy's regex_rewrite: every match replaced; `\\N` in the rewrite is group N. */
function regexRewrite(
  r: { readonly match: string; readonly rewrite: string },
  path: string,
): string {
  let c = rewriteCache.get(r);
  if (c === undefined) {
    // A `$` is literal in RE2's rewrite; `\\N` is JavaScript's `$N`.
    const replacement = r.rewrite.replace(/\$/g, '$$$$').replace(/\\(\d)/g, '$$$1');
    c = { re: new RegExp(r.match, 'gsu'), replacement };
    rewriteCache.set(r, c);
  }
  return path.replace(c.re, c.replacement);
}

/** Whether a TLS server name is one of `hosts` (`name`, `*.name`: a name under it, `*`). */
export function sniMatches(hosts: readonly string[], serverName: string): boolean {
  const name = serverName.toLowerCase();
  return hosts.some((h) => hostMatches(h, name));
}

/** What a VirtualService's tcp and tls matches read of a connection. */
export interface TcpConnectionFacts {
  /** The SNI of a TLS connection's ClientHello; null: none (not TLS, or no name). */
  readonly serverName?: string | null;
  /** The app's address (the connection's source). */
  readonly source?: string;
  /** The connection's original destination address. */
  readonly destination?: string;
}

/**
 * Where a VirtualService's routes send a connection to `port` of `service`: for a TLS connection
 * with a server name, the first `tls` rule one of whose matches names it; else the first `tcp`
 * rule one of whose matches it meets (port, `destinationSubnets`, `sourceSubnet`); a destination
 * drawn by weight. null: no table, or no rule.
 */
export function tcpRoute(
  service: MeshService,
  port: number,
  random: Random,
  conn: TcpConnectionFacts = {},
): RouteDestination | null {
  const meets = (m: TcpRouteRule['matches'][number]): boolean =>
    (m.port === undefined || m.port === port) &&
    (m.destinationSubnets === undefined ||
      (conn.destination !== undefined &&
        m.destinationSubnets.some((c) => inCidr(conn.destination as string, c)))) &&
    (m.sourceSubnet === undefined ||
      (conn.source !== undefined && inCidr(conn.source, m.sourceSubnet)));
  const serverName = conn.serverName ?? null;
  const rule =
    (serverName === null
      ? undefined
      : service.tlsRoutes?.rules.find((r) =>
          r.matches.some((m) => meets(m) && sniMatches(m.sniHosts ?? [], serverName)),
        )) ?? service.tcpRoutes?.rules.find((r) => r.matches.length === 0 || r.matches.some(meets));
  return rule === undefined ? null : drawDestination(rule.destinations, random);
}

/** One of `destinations` by weight (the only one whatever its weight); null: none, or weights
 * that add up to 0. HTTP and tcp routes alike. */
function drawDestination(
  destinations: readonly RouteDestination[],
  random: Random,
): RouteDestination | null {
  if (destinations.length <= 1) return destinations[0] ?? null;
  let total = 0;
  for (const d of destinations) total += d.weight;
  if (total <= 0) return null;
  let draw = random() * total;
  for (const d of destinations) {
    draw -= d.weight;
    if (draw < 0) return d;
  }
  return destinations[destinations.length - 1] ?? null;
}

type SourceCondition = {
  readonly sourceLabels?: Readonly<Record<string, string>>;
  readonly sourceNamespace?: string;
};

const namesSource = (m: SourceCondition): boolean =>
  m.sourceLabels !== undefined || m.sourceNamespace !== undefined;

/** `rules` with each match that names a source kept without it when `meets` it, else dropped; a
 * rule left without matches is dropped. null: no match of them names a source. */
function resolveSources<R extends { readonly matches: readonly SourceCondition[] }>(
  rules: readonly R[],
  meets: (m: SourceCondition) => boolean,
): R[] | null {
  if (!rules.some((r) => r.matches.some(namesSource))) return null;
  const out: R[] = [];
  for (const rule of rules) {
    if (!rule.matches.some(namesSource)) {
      out.push(rule);
      continue;
    }
    const matches = rule.matches.filter(meets).map((m) => {
      const { sourceLabels: _l, sourceNamespace: _n, ...rest } = m;
      return rest;
    });
    if (matches.length > 0) out.push({ ...rule, matches });
  }
  return out;
}

/**
 * The mesh as this proxy routes it: a match naming a source (`sourceLabels`, `sourceNamespace`),
 * HTTP or TCP, is kept, without those conditions, when this proxy's own Pod meets them, and
 * dropped otherwise; a rule whose matches are all dropped goes too. The same state when no match
 * names a source.
 */
/**
 * A destination policy as this proxy applies it: the host-wide policy of the first
 * DestinationRule with a workloadSelector that selects its Pod, in place of the shared one; none
 * when only such rules make the policy and none selects it. Null: the policy as it came.
 */
function ownPolicy(
  policy: DestinationPolicy | undefined,
  labels: Readonly<Record<string, string>>,
): DestinationPolicy | undefined | null {
  if (policy?.workloads === undefined) return null;
  const chosen = policy.workloads.find((w) =>
    Object.entries(w.selector).every(([k, v]) => labels[k] === v),
  );
  const { trafficPolicy: shared, workloads, ...rest } = policy;
  if (chosen === undefined) {
    // The policy is named after the first selecting rule when no shared rule exists.
    const onlySelecting =
      shared === undefined &&
      policy.subsets === undefined &&
      policy.source.name === workloads[0]?.source.name &&
      policy.source.namespace === workloads[0]?.source.namespace;
    return onlySelecting ? undefined : null;
  }
  return {
    ...rest,
    workloads,
    source: chosen.source,
    ...(chosen.trafficPolicy === undefined ? {} : { trafficPolicy: chosen.trafficPolicy }),
  };
}

export function routesForThisProxy(state: MeshState): MeshState {
  let services: Map<string, MeshService> | null = null;
  const own = state.proxy;
  const meets = (m: SourceCondition): boolean =>
    (m.sourceNamespace === undefined || m.sourceNamespace === own.pod.namespace) &&
    Object.entries(m.sourceLabels ?? {}).every(([k, v]) => own.labels?.[k] === v);
  /** The table with its rules resolved, or null when none of its matches names a source. */
  const resolved = <
    T extends { readonly rules: readonly { readonly matches: readonly SourceCondition[] }[] },
  >(
    table: T | undefined,
  ): T | null => {
    const rules = table === undefined ? null : resolveSources(table.rules, meets);
    return rules === null ? null : { ...(table as T), rules };
  };
  for (const [key, service] of state.services) {
    const routes = resolved(service.routes);
    const tcpRoutes = resolved(service.tcpRoutes);
    const tlsRoutes = resolved(service.tlsRoutes);
    const policy = ownPolicy(service.policy, own.labels ?? {});
    if (routes === null && tcpRoutes === null && tlsRoutes === null && policy === null) continue;
    services ??= new Map(state.services);
    const { policy: _received, ...rest } = service;
    const applied = policy === null ? service.policy : policy;
    services.set(key, {
      ...rest,
      ...(routes === null ? {} : { routes }),
      ...(tcpRoutes === null ? {} : { tcpRoutes }),
      ...(tlsRoutes === null ? {} : { tlsRoutes }),
      ...(applied === undefined ? {} : { policy: applied }),
    });
  }
  return services === null ? state : { ...state, services };
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

/** A query parameter's value as it is in the target (not decoded), or null. */
export function queryParam(path: string, name: string): string | null {
  const q = path.indexOf('?');
  if (q === -1) return null;
  for (const pair of path.slice(q + 1).split('&')) {
    const eq = pair.indexOf('=');
    const key = eq === -1 ? pair : pair.slice(0, eq);
    if (key === name) return eq === -1 ? '' : pair.slice(eq + 1);
  }
  return null;
}

/** Gateway API's PathPrefix: whole segments (`/foo` matches `/foo`, `/foo/x`, not `/foobar`). */
export function matchPathPrefix(prefix: string, path: string): boolean {
  const p = pathOnly(path);
  const trimmed = prefix.length > 1 && prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  if (trimmed === '/') return true;
  return p === trimmed || (p.startsWith(trimmed) && p[trimmed.length] === '/');
}

/** `port`: the service port the request came in on (for a match's `port`). */
export function matchRequest(m: RequestMatch, req: RequestView, port?: number): boolean {
  if (m.port !== undefined && port !== undefined && m.port !== port) return false;
  if (m.method !== undefined && !matchString(m.method, req.method)) return false;
  if (m.authority !== undefined && !matchString(m.authority, req.header('host') ?? ''))
    return false;
  if (m.scheme !== undefined && !matchString(m.scheme, 'http')) return false;
  if (m.uri !== undefined && !matchUri(m.uri, req.path)) return false;
  if (m.pathPrefix !== undefined && !matchPathPrefix(m.pathPrefix, req.path)) return false;
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
export function firstMatchingRule(
  table: HttpRouteTable,
  req: RequestView,
  port?: number,
): HttpRouteRule | null {
  return firstMatch(table, req, port)?.rule ?? null;
}

/** The first matching rule and which of its matches matched (null: it has none). */
export function firstMatch(
  table: HttpRouteTable,
  req: RequestView,
  port?: number,
): { rule: HttpRouteRule; match: RequestMatch | null } | null {
  if (table.rules.length > INDEX_FROM_RULES) return indexOf(table).first(req, port);
  for (const rule of table.rules) {
    if (rule.matches.length === 0) return { rule, match: null };
    for (const m of rule.matches) if (matchRequest(m, req, port)) return { rule, match: m };
  }
  return null;
}

/** Tables with more rules than this are looked up through a RuleIndex. */
const INDEX_FROM_RULES = 16;

interface TrieNode {
  next?: Map<number, TrieNode>;
  /** Entries whose path literal ends here. */
  here?: number[];
}

/**
 * A large route table compiled once (kept with the table, which a push replaces): a trie of the
 * literal path prefix each match needs (a uri prefix or exact path, a path prefix), walked along
 * the request's path, gives the few matches that can apply; those with no literal (a regex, no
 * path condition) are candidates for every request. The candidates are tried in the table's
 * order, so the first match still wins, as in a linear scan.
 */
class RuleIndex {
  private readonly entries: { rule: HttpRouteRule; match: RequestMatch | null }[] = [];
  private readonly always: number[] = [];
  private readonly root: TrieNode = {};

  constructor(table: HttpRouteTable) {
    for (const rule of table.rules) {
      const matches = rule.matches.length === 0 ? [null] : rule.matches;
      for (const match of matches) {
        const i = this.entries.push({ rule, match }) - 1;
        const literal = match === null ? null : literalOf(match);
        if (literal === null || literal === '') {
          this.always.push(i);
          continue;
        }
        let node = this.root;
        for (let c = 0; c < literal.length; c++) {
          const code = literal.charCodeAt(c);
          node.next ??= new Map();
          let child = node.next.get(code);
          if (child === undefined) node.next.set(code, (child = {}));
          node = child;
        }
        (node.here ??= []).push(i);
      }
    }
  }

  first(
    req: RequestView,
    port?: number,
  ): { rule: HttpRouteRule; match: RequestMatch | null } | null {
    const hits: number[] = [];
    let node: TrieNode | undefined = this.root;
    const path = req.path;
    for (let c = 0; node !== undefined; c++) {
      if (node.here !== undefined) for (const i of node.here) hits.push(i);
      if (c >= path.length || node.next === undefined) break;
      node = node.next.get(path.charCodeAt(c));
    }
    if (hits.length > 1) hits.sort((a, b) => a - b);
    // Both lists in table order: merge them, trying each candidate once.
    let a = 0;
    let h = 0;
    const always = this.always;
    while (a < always.length || h < hits.length) {
      const next =
        h >= hits.length || (a < always.length && (always[a] as number) < (hits[h] as number))
          ? (always[a++] as number)
          : (hits[h++] as number);
      const entry = this.entries[next] as { rule: HttpRouteRule; match: RequestMatch | null };
      if (entry.match === null || matchRequest(entry.match, req, port)) return entry;
    }
    return null;
  }
}

/** The literal start of the path a match needs; null when it needs none (or only a regex). */
function literalOf(m: RequestMatch): string | null {
  if (m.pathPrefix !== undefined) {
    const p = m.pathPrefix.endsWith('/') ? m.pathPrefix.slice(0, -1) : m.pathPrefix;
    return p;
  }
  if (m.uri === undefined || 'regex' in m.uri) return null;
  return 'prefix' in m.uri ? m.uri.prefix : m.uri.exact;
}

const indexes = new WeakMap<HttpRouteTable, RuleIndex>();

function indexOf(table: HttpRouteTable): RuleIndex {
  let index = indexes.get(table);
  if (index === undefined) indexes.set(table, (index = new RuleIndex(table)));
  return index;
}

/**
 * The request target after a rewrite: `fullPath` replaces the path; `prefix` replaces what the
 * match matched of it (its uri prefix, its path prefix by segments, its exact path; `/` without
 * a path condition; the whole path for a regex). The query is kept.
 */
export function rewritePath(
  path: string,
  match: RequestMatch | null,
  rewrite: RouteRewrite,
): string {
  const q = path.indexOf('?');
  const p = q === -1 ? path : path.slice(0, q);
  const query = q === -1 ? '' : path.slice(q);
  if (rewrite.fullPath !== undefined) return rewrite.fullPath + query;
  if (rewrite.regex !== undefined) return regexRewrite(rewrite.regex, p) + query;
  if (rewrite.prefix === undefined) return path;
  const to = rewrite.prefix;
  let matched: string;
  if (match?.pathPrefix !== undefined) {
    matched =
      match.pathPrefix.length > 1 && match.pathPrefix.endsWith('/')
        ? match.pathPrefix.slice(0, -1)
        : match.pathPrefix;
    if (matched === '/') matched = '';
    // Segment-wise: `/foo` -> `/bar` turns `/foo/x` into `/bar/x`, and `/foo` into `/bar`.
    let rest = p.slice(matched.length);
    let head = to.endsWith('/') && rest.startsWith('/') ? to.slice(0, -1) : to;
    if (head === '' && !rest.startsWith('/')) head = '/';
    if (rest === '' && head === '') rest = '/';
    return head + rest + query;
  }
  if (match?.uri === undefined) matched = '/';
  else if ('prefix' in match.uri) matched = match.uri.prefix;
  else if ('exact' in match.uri) matched = match.uri.exact;
  else return to + query;
  return (p.startsWith(matched) ? to + p.slice(matched.length) : to) + query;
}

const DEFAULT_PORTS: Readonly<Record<string, number>> = { http: 80, https: 443 };

/** `host`, `host:port`, `[v6]`, `[v6]:port` into the host and the port (null: none). */
function splitHostPort(value: string): { host: string; port: number | null } {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d+))?$/.exec(value);
  if (m === null) return { host: value, port: null };
  return { host: m[1] as string, port: m[2] === undefined ? null : Number(m[2]) };
}

/**
 * A redirect's Location for this request, as Envoy writes it: the scheme, host, port and path
 * the rule sets, the request's otherwise (its query kept); no port where it is the scheme's own.
 * `servicePort` is the port the request was sent to (Gateway API's listener port in a mesh).
 */
export function redirectLocation(
  reply: Extract<RouteReply, { kind: 'redirect' }>,
  req: RequestView,
  match: RequestMatch | null,
  servicePort: number,
): string {
  const scheme = reply.scheme ?? 'http';
  const asked = splitHostPort(req.header('host') ?? '');
  const host =
    reply.host === undefined
      ? asked.host
      : reply.host.includes(':')
        ? `[${reply.host}]`
        : reply.host;
  let port: number | null;
  if (reply.port === 'scheme') port = null;
  else if (reply.port === 'request') port = reply.host === undefined ? asked.port : null;
  else if (reply.port === 'service') port = servicePort;
  else port = reply.port;
  if (port !== null && DEFAULT_PORTS[scheme] === port) port = null;
  const path = reply.path === undefined ? req.path : rewritePath(req.path, match, reply.path);
  return `${scheme}://${host}${port === null ? '' : `:${port}`}${path}`;
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
): RouteDecision | RouteReplyDecision | RouteFailure | null {
  const table = service.routes;
  if (table === undefined || (table.ports !== undefined && !table.ports.includes(port))) {
    return {
      rule: null,
      match: null,
      table: null,
      service,
      port,
      subset: undefined,
      timeoutMs: null,
      retries: DEFAULT_RETRIES,
      fault: undefined,
      requestHeaders: undefined,
      rewrite: undefined,
    };
  }
  const found = firstMatch(table, req, port);
  if (found === null) return null;
  const { rule, match } = found;
  if (rule.reply !== undefined) return { kind: 'reply', rule, match, reply: rule.reply };
  const chosen = drawDestination(rule.destinations, random);
  if (chosen === null) {
    return {
      kind: 'failure',
      status: rule.noBackendStatus ?? 500,
      reason: 'no backend: the weights add up to 0',
      rule,
    };
  }
  const dest = chosen.service === service.key ? service : lookupService(chosen.service);
  if (dest === null) {
    return {
      kind: 'failure',
      status: rule.noBackendStatus ?? 503,
      reason: `no such service ${chosen.service}`,
      rule,
    };
  }
  return {
    rule,
    match,
    table,
    service: dest,
    port: chosen.port ?? port,
    subset: chosen.subset,
    timeoutMs: rule.timeoutMs ?? null,
    retries: rule.retries ?? DEFAULT_RETRIES,
    fault: rule.fault,
    requestHeaders: rule.requestHeaders,
    rewrite: rule.rewrite,
  };
}

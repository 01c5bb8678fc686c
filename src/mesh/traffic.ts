// Traffic management of one Service: the VirtualServices, DestinationRules, HTTPRoutes and
// GRPCRoutes that name it, compiled into the route table and destination policy of its MeshService (the wire
// contract, src/api/mesh.ts). Pure: no I/O.
//
// Precedence, as Istio and the Gateway API define it, and where they leave it open:
// - Several VirtualServices for one host: the oldest (creationTimestamp, then namespace/name)
//   gives the routes; the others are listed as shadowed. (Istio merges them only on gateways.)
//   `exportTo` first decides which a proxy sees, those exported to its namespace alone before
//   those exported everywhere (Istio's order): proxies of different namespaces may differ.
// - Several DestinationRules for one host: the oldest wins likewise.
// - A VirtualService and HTTPRoutes or GRPCRoutes for one host: the VirtualService wins; the
//   routes are shadowed (and their status says so in cluster mode).
// - A GRPCRoute and HTTPRoutes on one Service port: the GRPCRoute wins there (GEP-1294); the
//   HTTPRoutes are shadowed on that port (their status says Conflicted when they lose every one).
// - HTTPRoutes for one Service are merged: across all their rules, a match wins by Gateway API's
//   order (exact path, then regex path, then the longest path prefix, then a method, then the
//   most header matches, then the most query parameter matches), ties broken by the oldest
//   route, then namespace/name, then the order of rules and matches within the route.

import type {
  DestinationPolicy,
  HttpRouteRule,
  HttpRouteTable,
  TcpRouteRule,
  TcpRouteTable,
  RequestMatch,
  RetryPolicy,
} from '../api/mesh';
import {
  nameKey,
  selectorMatches,
  type DestinationRuleObject,
  type GatewayRouteObject,
  type GatewayRuleSpec,
  type GrpcRouteMatch,
  type GrpcRouteObject,
  type GrpcRouteRuleSpec,
  type HttpRouteBackend,
  type HttpRouteObject,
  type HttpRouteRuleSpec,
  type Meta,
  type RouteParent,
  type TcpRouteObject,
  type TlsRouteObject,
  type VirtualServiceObject,
  type VirtualServiceRoute,
} from './objects';
import { DEFAULT_RETRY_ON } from './traffic-validate';

/** Oldest first (an absent timestamp sorts last), then by namespace/name. */
export function olderFirst(a: { readonly meta: Meta }, b: { readonly meta: Meta }): number {
  const ta = a.meta.creationTimestamp === null ? Infinity : Date.parse(a.meta.creationTimestamp);
  const tb = b.meta.creationTimestamp === null ? Infinity : Date.parse(b.meta.creationTimestamp);
  if (ta !== tb) return ta < tb ? -1 : 1;
  const ka = nameKey(a.meta);
  const kb = nameKey(b.meta);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

export interface ServiceTraffic {
  readonly routes?: HttpRouteTable;
  readonly tcpRoutes?: TcpRouteTable;
  readonly tlsRoutes?: TcpRouteTable;
  readonly policy?: DestinationPolicy;
  /** HTTPRoutes that lose Service ports to a GRPCRoute (GEP-1294), for their status. */
  readonly conflicts: readonly RouteConflict[];
  /** The subsets of the DestinationRule used, by name, with their labels. */
  readonly subsets: readonly {
    readonly name: string;
    readonly labels: Readonly<Record<string, string>>;
  }[];
}

const ref = (o: { readonly meta: Meta }): { namespace: string; name: string } => ({
  namespace: o.meta.namespace,
  name: o.meta.name,
});

function virtualServiceTable(
  vs: VirtualServiceObject,
  shadowed: NonNullable<HttpRouteTable['shadowed']>,
  delegateOf: DelegateLookup,
): HttpRouteTable {
  const rules: HttpRouteRule[] = [];
  for (const r of vs.http) {
    if (r.delegate === undefined) {
      rules.push(vsRule(r, r.matches));
      continue;
    }
    // The delegate's rules, each under the root rule's matches (Istio's one level of delegation).
    const target = delegateOf(r.delegate.namespace, r.delegate.name);
    if (target === undefined || !exportedTo(target, vs.meta.namespace)) continue;
    for (const d of target.http) {
      if (d.delegate !== undefined) continue;
      const matches = mergeMatchLists(r.matches, d.matches);
      if (matches !== null) rules.push(vsRule(d, matches));
    }
  }
  return {
    source: { kind: 'VirtualService', ...ref(vs) },
    rules,
    ...(shadowed.length > 0 ? { shadowed } : {}),
  };
}

/** Finds a VirtualService by namespace and name (a delegate). */
export type DelegateLookup = (namespace: string, name: string) => VirtualServiceObject | undefined;

const exportedTo = (o: Exported, namespace: string): boolean =>
  o.exportTo === null ||
  o.exportTo.includes(namespace) ||
  (o.exportTo.includes('.') && o.meta.namespace === namespace);

function vsRule(r: VirtualServiceRoute, matches: readonly RequestMatch[]): HttpRouteRule {
  return {
    ...(r.name === undefined ? {} : { name: r.name }),
    matches,
    destinations: r.route.map((t) => ({
      service: t.service,
      ...(t.port === undefined ? {} : { port: t.port }),
      ...(t.subset === undefined ? {} : { subset: t.subset }),
      weight: t.weight,
    })),
    ...(r.timeoutMs === undefined ? {} : { timeoutMs: r.timeoutMs }),
    ...(r.retries === undefined ? {} : { retries: r.retries }),
    ...(r.fault === undefined ? {} : { fault: r.fault }),
    ...(r.requestHeaders === undefined ? {} : { requestHeaders: r.requestHeaders }),
    ...(r.responseHeaders === undefined ? {} : { responseHeaders: r.responseHeaders }),
    ...(r.rewrite === undefined ? {} : { rewrite: r.rewrite }),
    ...(r.reply === undefined ? {} : { reply: r.reply }),
    ...(r.cors === undefined ? {} : { cors: r.cors }),
    ...(r.mirrors === undefined ? {} : { mirrors: r.mirrors }),
  };
}

/**
 * A root rule's matches with a delegate rule's (each with each; no matches is every request):
 * null when none of the pairs can hold together.
 */
export function mergeMatchLists(
  root: readonly RequestMatch[],
  delegate: readonly RequestMatch[],
): RequestMatch[] | null {
  if (root.length === 0) return [...delegate];
  if (delegate.length === 0) return [...root];
  const out: RequestMatch[] = [];
  for (const r of root) {
    for (const d of delegate) {
      const m = mergeMatch(r, d);
      if (m !== null) out.push(m);
    }
  }
  return out.length === 0 ? null : out;
}

const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);

/**
 * Both matches at once, as Istio merges a delegate's match into its root's: the delegate's `uri`
 * must lie within the root's (a prefix under its prefix, an exact path under its prefix, or the
 * same); other conditions both set must be the same; headers and query parameters add up (one
 * name twice must agree). null: they conflict.
 */
export function mergeMatch(root: RequestMatch, d: RequestMatch): RequestMatch | null {
  let uri = root.uri ?? d.uri;
  if (root.uri !== undefined && d.uri !== undefined) {
    const inside =
      same(root.uri, d.uri) ||
      ('prefix' in root.uri &&
        (('prefix' in d.uri && d.uri.prefix.startsWith(root.uri.prefix)) ||
          ('exact' in d.uri && d.uri.exact.startsWith(root.uri.prefix))));
    if (!inside) return null;
    uri = d.uri;
  }
  const out: {
    -readonly [K in keyof RequestMatch]: RequestMatch[K];
  } = { ...root, ...d };
  if (uri !== undefined) out.uri = uri;
  for (const key of ['port', 'method', 'authority', 'scheme', 'sourceNamespace'] as const) {
    if (root[key] !== undefined && d[key] !== undefined && !same(root[key], d[key])) return null;
  }
  const byName = <T extends { readonly name: string }>(
    a: readonly T[] | undefined,
    b: readonly T[] | undefined,
  ): readonly T[] | null | undefined => {
    if (a === undefined || b === undefined) return a ?? b;
    const merged = [...a];
    for (const x of b) {
      const twin = merged.find((y) => y.name === x.name);
      if (twin === undefined) merged.push(x);
      else if (!same(twin, x)) return null;
    }
    return merged;
  };
  const headers = byName(root.headers, d.headers);
  const queryParams = byName(root.queryParams, d.queryParams);
  if (headers === null || queryParams === null) return null;
  if (headers !== undefined) out.headers = headers;
  if (queryParams !== undefined) out.queryParams = queryParams;
  if (root.sourceLabels !== undefined && d.sourceLabels !== undefined) {
    for (const [k, v] of Object.entries(d.sourceLabels)) {
      if (root.sourceLabels[k] !== undefined && root.sourceLabels[k] !== v) return null;
    }
    out.sourceLabels = { ...root.sourceLabels, ...d.sourceLabels };
  }
  return out;
}

/** Gateway API's match precedence: negative when `a` comes first. */
export function compareGatewayMatches(a: RequestMatch, b: RequestMatch): number {
  const rank = (m: RequestMatch): number =>
    m.uri !== undefined && 'exact' in m.uri ? 0 : m.uri !== undefined ? 1 : 2;
  if (rank(a) !== rank(b)) return rank(a) - rank(b);
  const prefix = (m: RequestMatch): number => m.pathPrefix?.length ?? 0;
  if (prefix(a) !== prefix(b)) return prefix(b) - prefix(a);
  const method = (m: RequestMatch): number => (m.method === undefined ? 1 : 0);
  if (method(a) !== method(b)) return method(a) - method(b);
  const headers = (m: RequestMatch): number => m.headers?.length ?? 0;
  if (headers(a) !== headers(b)) return headers(b) - headers(a);
  return (b.queryParams?.length ?? 0) - (a.queryParams?.length ?? 0);
}

function httpRouteRetries(rule: HttpRouteRuleSpec): RetryPolicy | undefined {
  const perTry =
    rule.backendTimeoutMs === undefined ? {} : { perTryTimeoutMs: rule.backendTimeoutMs };
  if (rule.retry === undefined) {
    return rule.backendTimeoutMs === undefined
      ? undefined
      : { attempts: 2, retryOn: [...DEFAULT_RETRY_ON], ...perTry };
  }
  const { attempts, codes, backoffMs } = rule.retry;
  return {
    attempts: attempts ?? 2,
    retryOn: [...DEFAULT_RETRY_ON],
    ...(codes.length > 0 ? { retriableStatusCodes: codes } : {}),
    ...(backoffMs === undefined ? {} : { backoffBaseMs: backoffMs }),
    ...perTry,
  };
}

/**
 * The port a Service parent reference attaches to: its `port`, or the port its `sectionName`
 * names; undefined for every port; null for none (no such port name, or a port and a
 * sectionName that do not agree).
 */
export function parentPort(
  parent: RouteParent,
  portNamed: (name: string) => number | null,
): number | undefined | null {
  if (parent.sectionName === undefined) return parent.port;
  const named = portNamed(parent.sectionName);
  if (named === null || (parent.port !== undefined && parent.port !== named)) return null;
  return named;
}

/** A port of a Service, as a route's `sectionName` names it. */
export interface NamedPort {
  readonly name: string;
  readonly port: number;
}

/** The ports of Service `serviceKey` a route attaches to: 'all', or some (none: empty). */
function attachedPorts(
  route: GatewayRouteObject,
  serviceKey: string,
  portNamed: (name: string) => number | null,
): 'all' | number[] {
  const ports = route.parents
    .filter((p) => p.service === serviceKey)
    .map((p) => parentPort(p, portNamed))
    .filter((p) => p !== null);
  // A parentRef without a port covers every port.
  return ports.includes(undefined) ? 'all' : [...new Set(ports as number[])];
}

const REGEX_SPECIAL = /[.*+?^${}()|[\]\\]/g;

/**
 * A GRPCRoute match as a request match: gRPC's path is `/<service>/<method>` (Exact names
 * escaped, patterns as they are, an absent one any name), a request of any method.
 */
export function grpcRequestMatch(m: GrpcRouteMatch): RequestMatch {
  const headers = m.headers === undefined ? {} : { headers: m.headers };
  if (m.service === undefined && m.method === undefined) return { pathPrefix: '/', ...headers };
  if (m.type === 'Exact' && m.service !== undefined && m.method !== undefined)
    return { uri: { exact: `/${m.service}/${m.method}` }, ...headers };
  const part = (v: string | undefined): string =>
    v === undefined ? '[^/]+' : m.type === 'Exact' ? v.replace(REGEX_SPECIAL, '\\$&') : `(?:${v})`;
  return { uri: { regex: `/${part(m.service)}/${part(m.method)}` }, ...headers };
}

/** GRPCRoute's match precedence: the most characters of service, then of method, then headers. */
function compareGrpcMatches(a: GrpcRouteMatch, b: GrpcRouteMatch): number {
  const service = (m: GrpcRouteMatch): number => m.service?.length ?? 0;
  if (service(a) !== service(b)) return service(b) - service(a);
  const method = (m: GrpcRouteMatch): number => m.method?.length ?? 0;
  if (method(a) !== method(b)) return method(b) - method(a);
  return (b.headers?.length ?? 0) - (a.headers?.length ?? 0);
}

type HttpKindRoute = HttpRouteObject | GrpcRouteObject;

const gatewayRouteRef = (r: HttpKindRoute): GatewayRouteRef => ({ kind: r.kind, ...ref(r) });

interface GatewayRouteRef {
  readonly kind: HttpKindRoute['kind'];
  readonly namespace: string;
  readonly name: string;
}

/** An HTTPRoute that loses Service ports (or all of them) to a GRPCRoute. */
export interface RouteConflict {
  /** The HTTPRoute, `namespace/name`. */
  readonly route: string;
  /** The GRPCRoute that wins, `namespace/name`. */
  readonly winner: string;
  readonly ports: 'all' | readonly number[];
}

/**
 * What an HTTPRoute attached to `attached` keeps of them once GRPCRoutes took theirs (`taken`,
 * by port or `all`), and what it lost to which GRPCRoute (null: nothing).
 */
function portsLeft(
  attached: 'all' | readonly number[],
  taken: ReadonlyMap<number | 'all', string>,
  servicePorts: readonly NamedPort[],
): { ports: 'all' | readonly number[]; lost: { ports: 'all' | number[]; winner: string } | null } {
  const everywhere = taken.get('all');
  if (everywhere !== undefined) return { ports: [], lost: { ports: 'all', winner: everywhere } };
  if (taken.size === 0) return { ports: attached, lost: null };
  const all = attached === 'all' ? servicePorts.map((p) => p.port) : attached;
  const kept = all.filter((p) => !taken.has(p));
  const lost = all.filter((p) => taken.has(p));
  if (lost.length === 0) return { ports: attached === 'all' ? kept : attached, lost: null };
  const winner = taken.get(lost[0] as number) as string;
  return { ports: kept, lost: { ports: kept.length === 0 ? 'all' : lost, winner } };
}

/** One table entry: a match on a port (undefined: any) and what a request meeting it gets. */
interface Entry {
  readonly order: number;
  readonly match: RequestMatch;
  readonly port: number | undefined;
  readonly rule: HttpRouteRule;
}

/**
 * What HTTPRoute and GRPCRoute rules share. `noBackendStatus`: HTTPRoute's 500 for a backend that
 * is no Service of the mesh (or none), GRPCRoute's UNAVAILABLE, which gRPC reads from a 503.
 */
function gatewayRule(rule: GatewayRuleSpec<unknown>, noBackendStatus: 500 | 503): HttpRouteRule {
  return {
    ...(rule.name === undefined ? {} : { name: rule.name }),
    matches: [],
    destinations: gatewayDestinations(rule.backends),
    noBackendStatus,
    ...(rule.requestHeaders === undefined ? {} : { requestHeaders: rule.requestHeaders }),
    ...(rule.responseHeaders === undefined ? {} : { responseHeaders: rule.responseHeaders }),
    ...(rule.mirrors === undefined ? {} : { mirrors: rule.mirrors }),
  };
}

function httpRouteRule(rule: HttpRouteRuleSpec): HttpRouteRule {
  const retries = httpRouteRetries(rule);
  return {
    ...gatewayRule(rule, 500),
    ...(rule.timeoutMs === undefined ? {} : { timeoutMs: rule.timeoutMs }),
    ...(retries === undefined ? {} : { retries }),
    ...(rule.rewrite === undefined ? {} : { rewrite: rule.rewrite }),
    ...(rule.reply === undefined ? {} : { reply: rule.reply }),
    ...(rule.cors === undefined ? {} : { cors: rule.cors }),
  };
}

const grpcRouteRule = (rule: GrpcRouteRuleSpec): HttpRouteRule => gatewayRule(rule, 503);

/** No backend, or weights that add up to 0: none (the proxy answers the rule's status). */
function gatewayDestinations(backends: readonly HttpRouteBackend[]): HttpRouteRule['destinations'] {
  const total = backends.reduce((sum, b) => sum + b.weight, 0);
  if (total === 0) return [];
  return backends
    .filter((b) => b.weight > 0)
    .map((b) => ({ service: b.service, port: b.port, weight: b.weight }));
}

/** Each match of a route's rules on each of `ports`, in the route's order. */
function routeEntries<R extends { readonly matches: readonly M[] }, M>(
  rules: readonly R[],
  ports: 'all' | readonly number[],
  toMatch: (m: M) => RequestMatch,
  toRule: (r: R) => HttpRouteRule,
  order: () => number,
  out: (Entry & { readonly source: M })[],
): void {
  for (const rule of rules) {
    const wire = toRule(rule);
    for (const m of rule.matches) {
      const match = toMatch(m);
      for (const port of ports === 'all' ? [undefined] : ports)
        out.push({ order: order(), match, port, rule: wire, source: m });
    }
  }
}

/**
 * The route table of Service `serviceKey` from its GRPCRoutes and HTTPRoutes (oldest first). On
 * a port a GRPCRoute attaches to, HTTPRoutes do not apply (GEP-1294: GRPCRoute, then HTTPRoute):
 * they are listed as shadowed. Each kind's matches are ordered by its own precedence.
 */
function gatewayRoutesTable(
  serviceKey: string,
  grpcRoutes: readonly GrpcRouteObject[],
  httpRoutes: readonly HttpRouteObject[],
  servicePorts: readonly NamedPort[],
): {
  table: HttpRouteTable | undefined;
  shadowed: NonNullable<HttpRouteTable['shadowed']>[number][];
  conflicts: RouteConflict[];
} {
  const portNamed = (name: string): number | null =>
    servicePorts.find((p) => p.name === name)?.port ?? null;
  let order = 0;
  const next = (): number => order++;
  const grpcEntries: (Entry & { readonly source: GrpcRouteMatch })[] = [];
  // The ports GRPCRoutes take, each with the (oldest) one that takes it; `all` every port.
  const taken = new Map<number | 'all', string>();
  const used: HttpKindRoute[] = [];
  for (const route of grpcRoutes) {
    const ports = attachedPorts(route, serviceKey, portNamed);
    if (ports !== 'all' && ports.length === 0) continue;
    used.push(route);
    for (const p of ports === 'all' ? (['all'] as const) : ports) {
      if (!taken.has(p)) taken.set(p, nameKey(route.meta));
    }
    routeEntries(route.rules, ports, grpcRequestMatch, grpcRouteRule, next, grpcEntries);
  }
  const httpEntries: (Entry & { readonly source: RequestMatch })[] = [];
  const shadowed: NonNullable<HttpRouteTable['shadowed']>[number][] = [];
  const conflicts: RouteConflict[] = [];
  for (const route of httpRoutes) {
    const attached = attachedPorts(route, serviceKey, portNamed);
    if (attached !== 'all' && attached.length === 0) continue;
    const { ports, lost } = portsLeft(attached, taken, servicePorts);
    if (lost !== null) {
      const where =
        lost.ports === 'all' ? 'the same Service ports' : `port ${lost.ports.join(', ')}`;
      shadowed.push({
        kind: 'HTTPRoute',
        ...ref(route),
        reason: `GRPCRoute ${lost.winner} attaches to ${where}: a GRPCRoute wins over an HTTPRoute there`,
      });
      conflicts.push({ route: nameKey(route.meta), winner: lost.winner, ports: lost.ports });
      if (lost.ports === 'all') continue;
    }
    used.push(route);
    routeEntries(route.rules, ports, (m: RequestMatch) => m, httpRouteRule, next, httpEntries);
  }
  if (used.length === 0) return { table: undefined, shadowed, conflicts };
  grpcEntries.sort((a, b) => compareGrpcMatches(a.source, b.source) || a.order - b.order);
  httpEntries.sort((a, b) => compareGatewayMatches(a.source, b.source) || a.order - b.order);
  const entries: Entry[] = [...grpcEntries, ...httpEntries];
  const rules = entries.map(({ match, port, rule }) => ({
    ...rule,
    matches: [port === undefined ? match : { ...match, port }],
  }));
  const ports = entries.some((e) => e.port === undefined)
    ? undefined
    : [...new Set(entries.map((e) => e.port as number))].sort((a, b) => a - b);
  const first = used[0] as HttpKindRoute;
  return {
    table: {
      source: gatewayRouteRef(first),
      ...(ports === undefined ? {} : { ports }),
      rules,
      ...(used.length > 1 ? { merged: used.map(gatewayRouteRef) } : {}),
      ...(shadowed.length > 0 ? { shadowed } : {}),
    },
    shadowed,
    conflicts,
  };
}

type Exported = { readonly meta: Meta; readonly exportTo: readonly string[] | null };

/**
 * The VirtualServices or DestinationRules a proxy in namespace `viewer` uses, in Istio's order:
 * those exported to its namespace alone first (`.` from its own namespace, or naming it), then
 * those exported everywhere; the oldest first within each. `viewer` null: a proxy in a namespace
 * no `exportTo` names, which sees only those exported everywhere.
 */
export function forViewer<T extends Exported>(objects: readonly T[], viewer: string | null): T[] {
  return byTier(objects, (o) => (!visibleTo(o, viewer) ? -1 : o.exportTo === null ? 1 : 0));
}

/** `objects` by their tier (lowest first; a negative one left out), the oldest first within one. */
function byTier<T extends Exported>(objects: readonly T[], tier: (o: T) => number): T[] {
  return objects
    .map((o) => ({ o, t: tier(o) }))
    .filter(({ t }) => t >= 0)
    .sort((a, b) => a.t - b.t || olderFirst(a.o, b.o))
    .map(({ o }) => o);
}

/** Two `exportTo`s naming the same namespaces (in any order). */
function sameExport(a: readonly string[] | null, b: readonly string[] | null): boolean {
  if (a === null || b === null) return a === b;
  return [...a].sort().join(' ') === [...b].sort().join(' ');
}

/** Whether `exportTo` lets the proxies of namespace `viewer` see `o` (null: everything exported). */
function visibleTo(o: Exported, viewer: string | null): boolean {
  if (o.exportTo === null) return true;
  if (viewer === null) return false;
  return (o.exportTo.includes('.') && o.meta.namespace === viewer) || o.exportTo.includes(viewer);
}

/**
 * The DestinationRules a proxy in namespace `viewer` uses for a Service of `serviceNamespace`, in
 * Istio's lookup order: the rules of the proxy's own namespace, then those of the Service's, then
 * those of the root namespace, each as its `exportTo` lets the proxy see it, the oldest first
 * within each. A rule in any other namespace is never used, exported or not (as in Istio: a rule
 * there is for its own namespace's proxies). `viewer` null: a namespace no rule lives in or names.
 */
export function destinationRulesFor<T extends Exported>(
  rules: readonly T[],
  viewer: string | null,
  serviceNamespace: string,
  rootNamespace: string | null,
): T[] {
  const lookup = [viewer, serviceNamespace, rootNamespace];
  return byTier(rules, (o) => (visibleTo(o, viewer) ? lookup.indexOf(o.meta.namespace) : -1));
}

/**
 * The namespaces whose proxies may see other rules for this Service than the rest: those an
 * `exportTo` names, the own namespace of an object exported with `.`, and the namespace of each
 * DestinationRule (its proxies look there first). Sorted.
 */
export function exportViews(objects: ServiceTrafficObjects): string[] {
  // A DestinationRule's own namespace looks it up first.
  const out = new Set<string>(objects.destinationRules.map((o) => o.meta.namespace));
  for (const o of [...objects.virtualServices, ...objects.destinationRules]) {
    for (const entry of o.exportTo ?? []) {
      if (entry === '.') out.add(o.meta.namespace);
      else if (entry !== '~' && entry !== '*') out.add(entry);
    }
  }
  return [...out].sort();
}

/**
 * The tcp (or tls) route table of Service `serviceKey` from its TCPRoutes (TLSRoutes), oldest
 * first: each route's rule on each Service port it attaches to, its backends weighted; a TLSRoute
 * takes the server names of its `hostnames` (none: any). undefined: none attaches.
 */
function gatewayTcpTable(
  kind: 'TCPRoute' | 'TLSRoute',
  serviceKey: string,
  routes: readonly (TcpRouteObject | TlsRouteObject)[],
  servicePorts: readonly NamedPort[],
): TcpRouteTable | undefined {
  const portNamed = (name: string): number | null =>
    servicePorts.find((p) => p.name === name)?.port ?? null;
  const used: (TcpRouteObject | TlsRouteObject)[] = [];
  const rules: TcpRouteRule[] = [];
  for (const route of [...routes].sort(olderFirst)) {
    const ports = attachedPorts(route, serviceKey, portNamed);
    if (ports !== 'all' && ports.length === 0) continue;
    used.push(route);
    const hostnames = route.kind === 'TLSRoute' ? route.hostnames : [];
    const sni =
      route.kind === 'TLSRoute' ? { sniHosts: hostnames.length === 0 ? ['*'] : hostnames } : {};
    const matches = ports === 'all' ? [sni] : ports.map((port) => ({ port, ...sni }));
    for (const rule of route.rules) {
      rules.push({
        // A tcp rule without matches takes every connection; a tls one needs its server names.
        matches: kind === 'TCPRoute' && ports === 'all' ? [] : matches,
        destinations: gatewayDestinations(rule.backends),
      });
    }
  }
  const first = used[0];
  if (first === undefined) return undefined;
  return {
    source: { kind, ...ref(first) },
    ...(used.length > 1 ? { merged: used.slice(1).map(ref) } : {}),
    rules,
  };
}

/** The traffic objects that name one Service. */
export interface ServiceTrafficObjects {
  readonly virtualServices: readonly VirtualServiceObject[];
  readonly destinationRules: readonly DestinationRuleObject[];
  readonly httpRoutes: readonly HttpRouteObject[];
  readonly grpcRoutes: readonly GrpcRouteObject[];
  readonly tcpRoutes?: readonly TcpRouteObject[];
  readonly tlsRoutes?: readonly TlsRouteObject[];
  /** The VirtualServices a rule delegates to, by namespace and name. */
  readonly delegate?: DelegateLookup;
}

/** Who looks at a Service's traffic, and what the lookup of its DestinationRules needs. */
export interface TrafficViewer {
  /** The Service's ports (a route's `sectionName`, the ports a GRPCRoute leaves to HTTPRoutes). */
  readonly ports?: readonly NamedPort[];
  /** The proxies' namespace; null: a namespace that no rule names and no rule lives in. */
  readonly viewer?: string | null;
  /** The mesh's root namespace (the last one a DestinationRule is looked up in). */
  readonly rootNamespace?: string | null;
  /**
   * The namespace of what the service comes from (a DestinationRule's second place of lookup):
   * a ServiceEntry's; absent, the Service key's.
   */
  readonly namespace?: string;
}

/**
 * The traffic rules of the Service `serviceKey` from the objects that name it (in any order), as
 * proxies in `at.viewer` use them.
 */
export function serviceTraffic(
  serviceKey: string,
  objects: ServiceTrafficObjects,
  at: TrafficViewer = {},
): ServiceTraffic {
  const ports = at.ports ?? [];
  const viewer = at.viewer ?? null;
  const vss = forViewer(objects.virtualServices, viewer);
  const gateway = gatewayRoutesTable(
    serviceKey,
    [...objects.grpcRoutes].sort(olderFirst),
    [...objects.httpRoutes].sort(olderFirst),
    ports,
  );
  let routes: HttpRouteTable | undefined;
  let tcpRoutes: TcpRouteTable | undefined;
  let tlsRoutes: TcpRouteTable | undefined;
  const winner = vss[0];
  if (winner !== undefined) {
    const overRoutes = [
      ...(gateway.table?.merged ?? (gateway.table === undefined ? [] : [gateway.table.source])),
    ];
    const shadowed: NonNullable<HttpRouteTable['shadowed']>[number][] = [
      ...vss.slice(1).map((v) => ({
        kind: 'VirtualService' as const,
        ...ref(v),
        reason: `VirtualService ${nameKey(winner.meta)} is older and names the same host`,
      })),
      ...overRoutes.map((h) => ({
        kind: h.kind ?? ('HTTPRoute' as const),
        namespace: h.namespace,
        name: h.name,
        reason: `VirtualService ${nameKey(winner.meta)} names the same host: a VirtualService wins over ${h.kind === 'GRPCRoute' ? 'a GRPCRoute' : 'an HTTPRoute'}`,
      })),
      ...gateway.shadowed,
    ];
    // A VirtualService of `tcp` routes only leaves HTTP to the default (or to the routes).
    if (winner.http.length > 0)
      routes = virtualServiceTable(winner, shadowed, objects.delegate ?? (() => undefined));
    else routes = gateway.table;
    if (winner.tcp.length > 0) {
      tcpRoutes = { source: { kind: 'VirtualService', ...ref(winner) }, rules: winner.tcp };
    }
    if (winner.tls.length > 0) {
      tlsRoutes = { source: { kind: 'VirtualService', ...ref(winner) }, rules: winner.tls };
    }
  } else {
    routes = gateway.table;
  }
  // TCPRoutes and TLSRoutes where the VirtualService (if any) has no rules of their kind.
  tcpRoutes ??= gatewayTcpTable('TCPRoute', serviceKey, objects.tcpRoutes ?? [], ports);
  tlsRoutes ??= gatewayTcpTable('TLSRoute', serviceKey, objects.tlsRoutes ?? [], ports);

  // Rules with a workloadSelector apply to the selected proxies of their own namespace only.
  const selecting = (o: DestinationRuleObject): boolean => o.workloadSelector !== undefined;
  const drs = destinationRulesFor(
    objects.destinationRules.filter((o) => !selecting(o)),
    viewer,
    at.namespace ?? serviceKey.slice(0, serviceKey.indexOf('/')),
    at.rootNamespace ?? null,
  );
  const { policy: shared, subsets } = destinationPolicy(drs);
  const own = objects.destinationRules
    .filter((o) => selecting(o) && o.meta.namespace === viewer)
    .sort(olderFirst);
  const policy =
    own.length === 0
      ? shared
      : {
          // Without a shared rule, the first selecting one names the policy.
          ...(shared ?? { source: ref(own[0] as DestinationRuleObject) }),
          workloads: own.map((o) => ({
            source: ref(o),
            selector: o.workloadSelector ?? {},
            ...(o.trafficPolicy === undefined ? {} : { trafficPolicy: o.trafficPolicy }),
          })),
        };
  return {
    ...(routes === undefined ? {} : { routes }),
    ...(tcpRoutes === undefined ? {} : { tcpRoutes }),
    ...(tlsRoutes === undefined ? {} : { tlsRoutes }),
    ...(policy === undefined ? {} : { policy }),
    conflicts: gateway.conflicts,
    subsets,
  };
}

/**
 * The policy of the DestinationRule a lookup gave first (`drs`, in lookup order), with those Istio
 * merges into it: the younger rules of its namespace exported alike, their subsets added (a name
 * already there keeps the older one's), the first host-wide policy kept. The others are shadowed.
 */
function destinationPolicy(drs: readonly DestinationRuleObject[]): {
  policy?: DestinationPolicy;
  subsets: ServiceTraffic['subsets'];
} {
  const dr = drs[0];
  if (dr === undefined) return { subsets: [] };
  const merged = drs.filter(
    (o) =>
      o === dr || (o.meta.namespace === dr.meta.namespace && sameExport(o.exportTo, dr.exportTo)),
  );
  const subsetRules: DestinationRuleObject['subsets'][number][] = [];
  for (const o of merged) {
    for (const s of o.subsets) {
      if (!subsetRules.some((t) => t.name === s.name)) subsetRules.push(s);
    }
  }
  const subsets = subsetRules.map((s) => ({
    name: s.name,
    ...(s.trafficPolicy === undefined ? {} : { trafficPolicy: s.trafficPolicy }),
  }));
  const tp = merged.find((o) => o.trafficPolicy !== undefined)?.trafficPolicy;
  const shadowed = drs
    .filter((o) => !merged.includes(o))
    .map((o) => ({
      ...ref(o),
      reason:
        o.meta.namespace === dr.meta.namespace
          ? `DestinationRule ${nameKey(dr.meta)} is older and exported otherwise: only the rules of its namespace exported alike are merged into it`
          : `DestinationRule ${nameKey(dr.meta)} comes first in the lookup: namespace ${dr.meta.namespace} is read before ${o.meta.namespace} (the proxy's namespace, then the Service's, then the root namespace)`,
    }));
  return {
    policy: {
      source: ref(dr),
      ...(merged.length > 1 ? { merged: merged.slice(1).map(ref) } : {}),
      ...(shadowed.length > 0 ? { shadowed } : {}),
      ...(tp === undefined ? {} : { trafficPolicy: tp }),
      ...(subsets.length > 0 ? { subsets } : {}),
    },
    subsets: subsetRules.map((s) => ({ name: s.name, labels: s.labels })),
  };
}

/** The subsets whose labels a Pod carries (a subset without labels takes every Pod). */
export function subsetsOf(
  subsets: ServiceTraffic['subsets'],
  labels: Readonly<Record<string, string>> | null,
): string[] {
  if (labels === null) return [];
  return subsets.filter((s) => selectorMatches(s.labels, labels)).map((s) => s.name);
}

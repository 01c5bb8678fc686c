// Traffic management of one Service: the VirtualServices, DestinationRules and HTTPRoutes that
// name it, compiled into the route table and destination policy of its MeshService (the wire
// contract, src/api/mesh.ts). Pure: no I/O.
//
// Precedence, as Istio and the Gateway API define it, and where they leave it open:
// - Several VirtualServices for one host: the oldest (creationTimestamp, then namespace/name)
//   gives the routes; the others are listed as shadowed. (Istio merges them only on gateways.)
// - Several DestinationRules for one host: the oldest wins likewise.
// - A VirtualService and HTTPRoutes for one host: the VirtualService wins; the HTTPRoutes are
//   shadowed (and their status says so in cluster mode).
// - HTTPRoutes for one Service are merged: across all their rules, a match wins by Gateway API's
//   order (exact path, then regex path, then the longest path prefix, then a method, then the
//   most header matches, then the most query parameter matches), ties broken by the oldest
//   route, then namespace/name, then the order of rules and matches within the route.

import type {
  DestinationPolicy,
  HttpRouteRule,
  HttpRouteTable,
  TcpRouteTable,
  RequestMatch,
  RetryPolicy,
  TrafficPolicy,
} from '../api/mesh';
import {
  nameKey,
  selectorMatches,
  type DestinationRuleObject,
  type HttpRouteObject,
  type HttpRouteRuleSpec,
  type Meta,
  type VirtualServiceObject,
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
): HttpRouteTable {
  const rules: HttpRouteRule[] = vs.http.map((r) => ({
    ...(r.name === undefined ? {} : { name: r.name }),
    matches: r.matches,
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
  }));
  return {
    source: { kind: 'VirtualService', ...ref(vs) },
    rules,
    ...(shadowed.length > 0 ? { shadowed } : {}),
  };
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
  parent: HttpRouteObject['parents'][number],
  portNamed: (name: string) => number | null,
): number | undefined | null {
  if (parent.sectionName === undefined) return parent.port;
  const named = portNamed(parent.sectionName);
  if (named === null || (parent.port !== undefined && parent.port !== named)) return null;
  return named;
}

function httpRoutesTable(
  serviceKey: string,
  routes: readonly HttpRouteObject[],
  portNamed: (name: string) => number | null,
): HttpRouteTable {
  const entries: {
    order: number;
    match: RequestMatch;
    rule: HttpRouteRuleSpec;
  }[] = [];
  let order = 0;
  for (const route of routes) {
    const ports = route.parents
      .filter((p) => p.service === serviceKey)
      .map((p) => parentPort(p, portNamed))
      .filter((p) => p !== null);
    // A parentRef without a port covers every port.
    const portSet = ports.includes(undefined) ? [undefined] : [...new Set(ports)];
    for (const rule of route.rules) {
      for (const match of rule.matches) {
        for (const port of portSet) {
          entries.push({
            order: order++,
            match: port === undefined ? match : { ...match, port },
            rule,
          });
        }
      }
    }
  }
  entries.sort((a, b) => compareGatewayMatches(a.match, b.match) || a.order - b.order);
  const rules: HttpRouteRule[] = entries.map(({ match, rule }) => {
    const total = rule.backends.reduce((sum, b) => sum + b.weight, 0);
    const retries = httpRouteRetries(rule);
    return {
      ...(rule.name === undefined ? {} : { name: rule.name }),
      matches: [match],
      // No backend, or weights that add up to 0: the proxy answers 500 (Gateway API).
      destinations:
        total === 0
          ? []
          : rule.backends
              .filter((b) => b.weight > 0)
              .map((b) => ({ service: b.service, port: b.port, weight: b.weight })),
      ...(rule.timeoutMs === undefined ? {} : { timeoutMs: rule.timeoutMs }),
      ...(retries === undefined ? {} : { retries }),
      ...(rule.requestHeaders === undefined ? {} : { requestHeaders: rule.requestHeaders }),
      ...(rule.responseHeaders === undefined ? {} : { responseHeaders: rule.responseHeaders }),
      ...(rule.rewrite === undefined ? {} : { rewrite: rule.rewrite }),
      ...(rule.reply === undefined ? {} : { reply: rule.reply }),
      ...(rule.mirrors === undefined ? {} : { mirrors: rule.mirrors }),
    };
  });
  const first = routes[0] as HttpRouteObject;
  return {
    source: { kind: 'HTTPRoute', ...ref(first) },
    rules,
    ...(routes.length > 1 ? { merged: routes.map(ref) } : {}),
  };
}

/**
 * The traffic rules of the Service `serviceKey` from the objects that name it (in any order).
 */
export function serviceTraffic(
  serviceKey: string,
  virtualServices: readonly VirtualServiceObject[],
  destinationRules: readonly DestinationRuleObject[],
  httpRoutes: readonly HttpRouteObject[],
  /** The Service's port of that name (a parent's `sectionName`), or null. */
  portNamed: (name: string) => number | null = () => null,
): ServiceTraffic {
  const vss = [...virtualServices].sort(olderFirst);
  // A route whose references to this Service name none of its ports does not apply to it.
  const hrs = httpRoutes
    .filter((h) =>
      h.parents.some((p) => p.service === serviceKey && parentPort(p, portNamed) !== null),
    )
    .sort(olderFirst);
  let routes: HttpRouteTable | undefined;
  let tcpRoutes: TcpRouteTable | undefined;
  let tlsRoutes: TcpRouteTable | undefined;
  const winner = vss[0];
  if (winner !== undefined) {
    const shadowed: NonNullable<HttpRouteTable['shadowed']>[number][] = [
      ...vss.slice(1).map((v) => ({
        kind: 'VirtualService' as const,
        ...ref(v),
        reason: `VirtualService ${nameKey(winner.meta)} is older and names the same host`,
      })),
      ...hrs.map((h) => ({
        kind: 'HTTPRoute' as const,
        ...ref(h),
        reason: `VirtualService ${nameKey(winner.meta)} names the same host: a VirtualService wins over an HTTPRoute`,
      })),
    ];
    // A VirtualService of `tcp` routes only leaves HTTP to the default (or to HTTPRoutes).
    if (winner.http.length > 0) routes = virtualServiceTable(winner, shadowed);
    else if (hrs.length > 0) routes = httpRoutesTable(serviceKey, hrs, portNamed);
    if (winner.tcp.length > 0) {
      tcpRoutes = { source: { kind: 'VirtualService', ...ref(winner) }, rules: winner.tcp };
    }
    if (winner.tls.length > 0) {
      tlsRoutes = { source: { kind: 'VirtualService', ...ref(winner) }, rules: winner.tls };
    }
  } else if (hrs.length > 0) {
    routes = httpRoutesTable(serviceKey, hrs, portNamed);
  }

  const drs = [...destinationRules].sort(olderFirst);
  const dr = drs[0];
  let policy: DestinationPolicy | undefined;
  if (dr !== undefined) {
    const subsets = dr.subsets.map((s) => ({
      name: s.name,
      ...(s.trafficPolicy === undefined ? {} : { trafficPolicy: s.trafficPolicy }),
    }));
    const tp: TrafficPolicy | undefined = dr.trafficPolicy;
    policy = {
      source: ref(dr),
      ...(drs.length > 1 ? { shadowed: drs.slice(1).map(ref) } : {}),
      ...(tp === undefined ? {} : { trafficPolicy: tp }),
      ...(subsets.length > 0 ? { subsets } : {}),
    };
  }
  return {
    ...(routes === undefined ? {} : { routes }),
    ...(tcpRoutes === undefined ? {} : { tcpRoutes }),
    ...(tlsRoutes === undefined ? {} : { tlsRoutes }),
    ...(policy === undefined ? {} : { policy }),
    subsets: dr?.subsets.map((s) => ({ name: s.name, labels: s.labels })) ?? [],
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

// The status Mooring writes on an HTTPRoute, GRPCRoute, TCPRoute or TLSRoute attached to Services
// (GAMMA), one entry in `status.parents` per Service parent with `controllerName:
// mooring.dev/mesh` (entries of other controllers are kept as they are):
//   Accepted      True / Accepted; False / NoMatchingParent when the Service does not exist, or has
//                 no port of the sectionName; False / Conflicted for an HTTPRoute when a GRPCRoute
//                 takes every port it attaches to (GEP-1294: a GRPCRoute wins there)
//   ResolvedRefs  True / ResolvedRefs; False / BackendNotFound naming the missing Services
// A VirtualService for the same Service with rules for the route's kind of traffic (http, tcp,
// tls) wins over the route (README "Traffic management"): the route stays Accepted and its
// message says so. `lastTransitionTime` moves only when a
// condition's status changes. Pure: the adapter reads the objects and writes the status.

import { nameKey, type GatewayRouteObject } from './objects';
import { parentPort, type RouteConflict } from './traffic';

export const MESH_CONTROLLER_NAME = 'mooring.dev/mesh';

export interface RouteCondition {
  readonly type: 'Accepted' | 'ResolvedRefs';
  readonly status: 'True' | 'False';
  readonly reason: string;
  readonly message: string;
  readonly observedGeneration: number;
  readonly lastTransitionTime: string;
}

export interface RouteParentStatus {
  readonly parentRef: {
    readonly group: '';
    readonly kind: 'Service';
    readonly namespace: string;
    readonly name: string;
    readonly port?: number;
    readonly sectionName?: string;
  };
  readonly controllerName: string;
  readonly conditions: readonly RouteCondition[];
}

export interface RouteFacts {
  /** Whether a Service of that key exists. */
  serviceExists(key: string): boolean;
  /** The port of that Service with that name, or null. */
  portNamed(key: string, name: string): number | null;
  /**
   * The VirtualService (`namespace/name`) that wins over routes of `kind` for a Service, if any:
   * one with rules for that kind's traffic (http, tcp, tls).
   */
  virtualServiceFor(key: string, kind: GatewayRouteObject['kind']): string | null;
  /** The GRPCRoute that takes ports of Service `key` from the HTTPRoute `route`, if any. */
  grpcConflict(key: string, route: string): RouteConflict | null;
}

type Raw = Record<string, unknown>;
const isObject = (v: unknown): v is Raw => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Our parents' statuses, before timestamps: what decides whether a write is needed. */
function ourParents(
  route: GatewayRouteObject,
  facts: RouteFacts,
): Omit<RouteParentStatus, never>[] {
  const missing = [...new Set(route.rules.flatMap((r) => r.backends.map((b) => b.service)))].filter(
    (k) => !facts.serviceExists(k),
  );
  const out: RouteParentStatus[] = [];
  const tcp = route.kind === 'TCPRoute' || route.kind === 'TLSRoute';
  const what = tcp ? 'connections' : 'requests';
  for (const parent of route.parents) {
    const [namespace, name] = parent.service.split('/') as [string, string];
    const exists = facts.serviceExists(parent.service);
    const vs = exists ? facts.virtualServiceFor(parent.service, route.kind) : null;
    const conflict =
      exists && vs === null && route.kind === 'HTTPRoute'
        ? facts.grpcConflict(parent.service, nameKey(route.meta))
        : null;
    const noPort =
      exists && parentPort(parent, (n) => facts.portNamed(parent.service, n)) === null
        ? parent.port === undefined
          ? `Service ${parent.service} has no port named ${JSON.stringify(parent.sectionName)}`
          : `Service ${parent.service} has no port ${parent.port} named ${JSON.stringify(parent.sectionName)}`
        : null;
    const condition = (
      type: RouteCondition['type'],
      status: RouteCondition['status'],
      reason: string,
      message: string,
    ): RouteCondition => ({
      type,
      status,
      reason,
      message,
      observedGeneration: route.generation,
      lastTransitionTime: '',
    });
    let accepted: RouteCondition;
    if (!exists || noPort !== null) {
      accepted = condition(
        'Accepted',
        'False',
        'NoMatchingParent',
        noPort ?? `Service ${parent.service} does not exist`,
      );
    } else if (conflict?.ports === 'all') {
      accepted = condition(
        'Accepted',
        'False',
        'Conflicted',
        `GRPCRoute ${conflict.winner} attaches to this Service's ports too and wins over an HTTPRoute: this route is not used while it does`,
      );
    } else if (vs !== null) {
      accepted = condition(
        'Accepted',
        'True',
        'Accepted',
        `VirtualService ${vs} names this Service too and wins: this route is not used while it exists`,
      );
    } else if (conflict !== null) {
      accepted = condition(
        'Accepted',
        'True',
        'Accepted',
        `Mooring routes the requests to this Service by this route, except on port ${conflict.ports.join(', ')}, where GRPCRoute ${conflict.winner} wins`,
      );
    } else {
      accepted = condition(
        'Accepted',
        'True',
        'Accepted',
        `Mooring routes the ${what} to this Service by this route`,
      );
    }
    const conditions: RouteCondition[] = [
      accepted,
      missing.length === 0
        ? condition(
            'ResolvedRefs',
            'True',
            'ResolvedRefs',
            'every backend is a Service of the mesh',
          )
        : condition(
            'ResolvedRefs',
            'False',
            'BackendNotFound',
            `no such Service: ${missing.join(', ')} (${tcp ? 'its share of the connections is closed' : `its share of the requests is answered ${route.kind === 'GRPCRoute' ? '503, UNAVAILABLE' : '500'}`})`,
          ),
    ];
    out.push({
      parentRef: {
        group: '',
        kind: 'Service',
        namespace,
        name,
        ...(parent.port === undefined ? {} : { port: parent.port }),
        ...(parent.sectionName === undefined ? {} : { sectionName: parent.sectionName }),
      },
      controllerName: MESH_CONTROLLER_NAME,
      conditions,
    });
  }
  return out;
}

const sameRef = (a: unknown, b: RouteParentStatus['parentRef']): boolean =>
  isObject(a) &&
  a.name === b.name &&
  (a.namespace ?? b.namespace) === b.namespace &&
  (a.kind ?? 'Gateway') === 'Service' &&
  (a.port ?? undefined) === b.port &&
  (a.sectionName ?? undefined) === b.sectionName;

/**
 * `status.parents` for a route given the current one (`previous`, raw): null when it already
 * says what it should (no write needed).
 */
export function routeStatusParents(
  route: GatewayRouteObject,
  previous: unknown,
  facts: RouteFacts,
  now: string,
): unknown[] | null {
  const before: unknown[] = Array.isArray(previous) ? (previous as unknown[]) : [];
  const others = before.filter((p) => !isObject(p) || p.controllerName !== MESH_CONTROLLER_NAME);
  const mine = before.filter(
    (p): p is Raw => isObject(p) && p.controllerName === MESH_CONTROLLER_NAME,
  );
  const wanted = ourParents(route, facts).map((status) => {
    const old = mine.find((p) => sameRef(p.parentRef, status.parentRef));
    const oldConditions = Array.isArray(old?.conditions) ? (old.conditions as unknown[]) : [];
    return {
      ...status,
      conditions: status.conditions.map((c) => {
        const prev = oldConditions.find((o): o is Raw => isObject(o) && o.type === c.type);
        const since =
          prev !== undefined &&
          prev.status === c.status &&
          typeof prev.lastTransitionTime === 'string'
            ? prev.lastTransitionTime
            : now;
        return { ...c, lastTransitionTime: since };
      }),
    };
  });
  const strip = (list: unknown[]): string =>
    JSON.stringify(
      list.map((p) =>
        isObject(p)
          ? {
              ...p,
              conditions: Array.isArray(p.conditions)
                ? (p.conditions as unknown[]).map((c) =>
                    isObject(c) ? { ...c, lastTransitionTime: '' } : c,
                  )
                : p.conditions,
            }
          : p,
      ),
    );
  if (strip(mine) === strip(wanted) && mine.length === wanted.length) return null;
  return [...others, ...wanted];
}

/** The route's key, for logs. */
export const routeKey = (route: GatewayRouteObject): string => nameKey(route.meta);

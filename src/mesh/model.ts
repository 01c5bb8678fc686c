// The mesh model: the checked Kubernetes objects in, each Service's `MeshService` and each
// Pod's `ProxyScope` out (src/api/mesh.ts). Incremental: a change marks what it touches (a
// Service itself; the Service of an EndpointSlice; the Services whose endpoints are a changed
// Pod; the Pods, and their Services, under a changed PeerAuthentication), and `commit()`
// rebuilds only those, keeps the ones whose canonical text did not change, and stamps the others
// with a new version. The push asks what changed since the version a proxy holds.
// Pure: no I/O, no clock; the caller decides when to commit.

import type {
  AuthorizationPolicyRules,
  Endpoint,
  JwtProvider,
  MeshService,
  MeshSettings,
  MtlsMode,
  Protocol,
  ProxyScope,
  ServicePort,
} from '../api/mesh';
import { spiffeIdOf } from '../ca/identity';
import { canonicalJson, utf8Length } from './canonical';
import {
  nameKey,
  podLocality,
  selectorMatches,
  type EndpointSliceObject,
  type NodeObject,
  type MeshKind,
  type MeshObject,
  type ObjectRef,
  type DestinationRuleObject,
  type GatewayRouteObject,
  type GrpcRouteObject,
  type HttpRouteObject,
  type PeerAuthenticationObject,
  type AuthorizationPolicyObject,
  type RequestAuthenticationObject,
  type PodObject,
  type ServiceEntryObject,
  type SidecarObject,
  type ServiceObject,
  type TelemetryObject,
  type WorkloadEntryObject,
  type TcpRouteObject,
  type TlsRouteObject,
  type TrafficObject,
  type VirtualServiceObject,
} from './objects';
import { resolveAuthorization } from './authorization';
import { jwksSource, resolveJwt } from './request-authentication';
import { egressAllows } from './sidecar';
import { resolveTelemetry } from './telemetry';
import { meshKeyOfHost } from './hosts';
import { parseCidr } from '../ip';
import { modeOfPort, resolvePeerAuthentication, type ResolvedMtls } from './peer-authentication';
import { protocolOf } from './protocol';
import type { RouteFacts } from './route-status';
import {
  exportViews,
  olderFirst,
  serviceTraffic,
  subsetsOf,
  type ServiceTraffic,
  type ServiceTrafficObjects,
} from './traffic';
import { isVisible } from './visibility';
import { workloadInfoOf, workloadInfoOfEntry } from './workload';

export interface MeshModelOptions {
  readonly trustDomain: string;
  /** Mooring's namespace: a PeerAuthentication there without selector is mesh-wide. */
  readonly rootNamespace: string;
  /** `mesh.mtlsMode`: the mode where no PeerAuthentication sets one. */
  readonly defaultMtlsMode: MtlsMode;
  readonly settings: MeshSettings;
  /** Default `cluster.local`. */
  readonly clusterDomain?: string;
}

/** A Service as the model built it, with its canonical text (what goes on the wire). */
export interface BuiltService {
  readonly key: string;
  readonly namespace: string;
  readonly service: MeshService;
  readonly json: string;
  /** Bytes of `json` in UTF-8. */
  readonly bytes: number;
  /** The model version at which its content (or visibility) last changed. */
  readonly version: number;
  readonly exportTo: readonly string[] | null;
  /** The model version at which its visibility last changed. */
  readonly exportToVersion: number;
  /**
   * What proxies of these namespaces get instead, when a VirtualService's or DestinationRule's
   * `exportTo`, or a DestinationRule in their own namespace, gives them other rules than the
   * rest (absent: all get `service`).
   */
  readonly views?: ReadonlyMap<string, ServiceView>;
}

/** A Service as proxies of one namespace see it. */
export interface ServiceView {
  readonly service: MeshService;
  readonly json: string;
  readonly bytes: number;
}

/** `b` as a proxy in `namespace` gets it. */
const viewOf = (b: BuiltService, namespace: string): BuiltService => {
  const v = b.views?.get(namespace);
  return v === undefined ? b : { ...b, service: v.service, json: v.json, bytes: v.bytes };
};

/** The views' texts, to tell a change. */
const viewsText = (views: ReadonlyMap<string, ServiceView> | undefined): string =>
  views === undefined ? '' : [...views].map(([ns, v]) => `${ns}\n${v.json}`).join('\n');

/** What one commit changed. */
export interface Commit {
  readonly version: number;
  /** Services added, or whose content or visibility changed. */
  readonly services: readonly string[];
  readonly removed: readonly string[];
  /** Pods whose ProxyScope may have changed (each proxy compares its own). */
  readonly pods: readonly string[];
  readonly settings: boolean;
  /** Services rebuilt (changed or not): the cost of the commit. */
  readonly rebuilt: number;
}

/** A service's routes and destination policy, each when it has one. */
function trafficParts(
  traffic: ServiceTraffic,
): Pick<MeshService, 'routes' | 'tcpRoutes' | 'tlsRoutes' | 'policy'> {
  return {
    ...(traffic.routes === undefined ? {} : { routes: traffic.routes }),
    ...(traffic.tcpRoutes === undefined ? {} : { tcpRoutes: traffic.tcpRoutes }),
    ...(traffic.tlsRoutes === undefined ? {} : { tlsRoutes: traffic.tlsRoutes }),
    ...(traffic.policy === undefined ? {} : { policy: traffic.policy }),
  };
}

/** What a service key is built from (a Service, or a ServiceEntry's host). */
interface ServiceSource {
  readonly namespace: string;
  readonly exportTo: readonly string[] | null;
  build(mtls: Map<string, ResolvedMtls>, viewer: string | null): MeshService | null;
}

export interface ModelChanges {
  readonly services: readonly BuiltService[];
  readonly removed: readonly string[];
}

const add = <K, V>(index: Map<K, Set<V>>, key: K, value: V): void => {
  let set = index.get(key);
  if (set === undefined) index.set(key, (set = new Set()));
  set.add(value);
};
const drop = <K, V>(index: Map<K, Set<V>>, key: K, value: V): void => {
  const set = index.get(key);
  if (set === undefined) return;
  set.delete(value);
  if (set.size === 0) index.delete(key);
};

const podRefsOf = (slice: EndpointSliceObject): string[] => {
  const refs = new Set<string>();
  for (const e of slice.endpoints) {
    if (e.targetRef?.kind === 'Pod') refs.add(nameKey(e.targetRef));
  }
  return [...refs];
};

/**
 * A ServiceEntry endpoint's port for each of the entry's ports: its own under the port's name,
 * else the port's `targetPort`, else its number.
 */
const entryPorts = (
  se: ServiceEntryObject,
  own: Readonly<Record<string, number>>,
): Record<string, number> =>
  Object.fromEntries(
    se.ports.map((p) => [
      String(p.number),
      (p.name === '' ? undefined : own[p.name]) ?? p.targetPort ?? p.number,
    ]),
  );

/** The Nodes a slice's endpoints name. */
const nodesOf = (slice: EndpointSliceObject): Set<string> => {
  const out = new Set<string>();
  for (const e of slice.endpoints) if (e.nodeName !== null) out.add(e.nodeName);
  return out;
};

const serviceKeyOf = (slice: EndpointSliceObject): string | null =>
  slice.serviceName === null ? null : `${slice.meta.namespace}/${slice.serviceName}`;

interface EndpointDraft {
  address: string;
  ports: Record<string, number>;
  ready: boolean;
  pod: PodObject | undefined;
  podName: string | null;
  locality: string | null;
}

export class MeshModel {
  private readonly services = new Map<string, ServiceObject>();
  private readonly servicesByNamespace = new Map<string, Set<string>>();
  private readonly slices = new Map<string, EndpointSliceObject>();
  private readonly slicesByService = new Map<string, Set<string>>();
  private readonly slicesByPod = new Map<string, Set<string>>();
  private readonly pods = new Map<string, PodObject>();
  private readonly podsByNamespace = new Map<string, Set<string>>();
  /** Nodes by name; the Pods and the slices' endpoints on each (their locality is its). */
  private readonly nodes = new Map<string, NodeObject>();
  private readonly podsByNode = new Map<string, Set<string>>();
  private readonly slicesByNode = new Map<string, Set<string>>();
  private readonly peerAuthentications = new PolicyStore<PeerAuthenticationObject>();
  private readonly authorizationPolicies = new PolicyStore<AuthorizationPolicyObject>();
  private readonly requestAuthentications = new PolicyStore<RequestAuthenticationObject>();
  private readonly sidecars = new PolicyStore<SidecarObject>();
  private readonly telemetries = new PolicyStore<TelemetryObject>();
  private readonly workloadEntries = new PolicyStore<WorkloadEntryObject>();
  /** Namespaces whose Sidecar changed since the last commit. */
  private readonly dirtySidecars = new Set<string>();
  /**
   * The version at which each namespace's Sidecar changed (the root namespace's: every
   * namespace's may have): a proxy older than that is told every service it sees, and removed.
   */
  private readonly sidecarChanged = new Map<string, number>();
  /** `sidecarOf` by namespace, until a Sidecar changes. */
  private readonly sidecarOfNamespace = new Map<string, SidecarObject | undefined>();
  /** Namespaces with a Sidecar that has a workloadSelector (their Pods are looked at one by one). */
  private readonly selectingSidecars = new Set<string>();
  /** JWKS texts the server fetched, by source (`jwksSource`); null: could not be had. */
  private readonly jwks = new Map<string, string | null>();
  private readonly virtualServices = new Map<string, VirtualServiceObject>();
  private readonly destinationRules = new Map<string, DestinationRuleObject>();
  private readonly httpRoutes = new Map<string, HttpRouteObject>();
  private readonly grpcRoutes = new Map<string, GrpcRouteObject>();
  private readonly tcpRoutes = new Map<string, TcpRouteObject>();
  private readonly tlsRoutes = new Map<string, TlsRouteObject>();
  private readonly serviceEntries = new Map<string, ServiceEntryObject>();
  /** The ServiceEntries naming each service key (a host). */
  private readonly entriesByService = new Map<string, Set<string>>();
  /** ServiceEntries with a workloadSelector, by namespace: a Pod there may be their endpoint. */
  private readonly selectingEntries = new Map<string, Set<string>>();
  /** The VirtualServices delegated to, by key: the keys of those that delegate to each. */
  private readonly delegatedBy = new Map<string, Set<string>>();
  /** Traffic objects by the Service keys they name: `Kind` -> Service key -> object keys. */
  private readonly trafficByService = new Map<string, Set<string>>();
  /** The text of each stored object, to tell a rewrite from a change. */
  private readonly texts = new Map<string, string>();

  private readonly built = new Map<string, BuiltService>();
  private readonly tombstones = new Map<string, number>();
  /** Keys changed at each version after `logFloor`. */
  private log: { readonly version: number; readonly keys: readonly string[] }[] = [];
  private logFloor = 0;

  private readonly dirtyServices = new Set<string>();
  private readonly dirtyPods = new Set<string>();
  private settingsDirty = false;
  private settingsValue: MeshSettings;
  private settingsText: string;
  private defaultMtlsMode: MtlsMode;
  private versionValue = 0;
  private readonly clusterDomain: string;

  constructor(private readonly options: MeshModelOptions) {
    this.settingsValue = options.settings;
    this.settingsText = canonicalJson(options.settings);
    this.defaultMtlsMode = options.defaultMtlsMode;
    this.clusterDomain = options.clusterDomain ?? 'cluster.local';
  }

  get version(): number {
    return this.versionValue;
  }

  get settings(): MeshSettings {
    return this.settingsValue;
  }

  get settingsJson(): string {
    return this.settingsText;
  }

  /** How many objects of each kind the model holds. */
  counts(): Record<MeshKind, number> {
    return {
      Service: this.services.size,
      EndpointSlice: this.slices.size,
      Pod: this.pods.size,
      PeerAuthentication: this.peerAuthentications.size,
      AuthorizationPolicy: this.authorizationPolicies.size,
      RequestAuthentication: this.requestAuthentications.size,
      Sidecar: this.sidecars.size,
      VirtualService: this.virtualServices.size,
      DestinationRule: this.destinationRules.size,
      HTTPRoute: this.httpRoutes.size,
      GRPCRoute: this.grpcRoutes.size,
      TCPRoute: this.tcpRoutes.size,
      TLSRoute: this.tlsRoutes.size,
      ServiceEntry: this.serviceEntries.size,
      Node: this.nodes.size,
      Telemetry: this.telemetries.size,
      WorkloadEntry: this.workloadEntries.size,
    };
  }

  // --- input -----------------------------------------------------------------------------------

  /** Adds or replaces an object; returns false when it is the same as the stored one. */
  upsert(obj: MeshObject): boolean {
    const key = nameKey(obj.meta);
    const textKey = `${obj.kind}/${key}`;
    const text = JSON.stringify(obj);
    if (this.texts.get(textKey) === text) return false;
    this.texts.set(textKey, text);
    this.put(obj.kind, key, obj);
    return true;
  }

  /** True when the model holds an object of that kind and name. */
  has(ref: ObjectRef): boolean {
    return this.texts.has(`${ref.kind}/${nameKey(ref)}`);
  }

  /** Removes an object; returns false when there was none. */
  remove(ref: ObjectRef): boolean {
    const key = nameKey(ref);
    if (!this.texts.delete(`${ref.kind}/${key}`)) return false;
    this.put(ref.kind, key, null);
    return true;
  }

  /** Stores (or, with null, deletes) an object of `kind` and marks what it touches. */
  private put(kind: MeshKind, key: string, obj: MeshObject | null): void {
    switch (kind) {
      case 'Service':
        return this.putService(key, obj as ServiceObject | null);
      case 'EndpointSlice':
        return this.putSlice(key, obj as EndpointSliceObject | null);
      case 'Pod':
        return this.putPod(key, obj as PodObject | null);
      case 'PeerAuthentication':
        return this.putPeerAuthentication(key, obj as PeerAuthenticationObject | null);
      case 'AuthorizationPolicy':
        return this.putAuthorizationPolicy(key, obj as AuthorizationPolicyObject | null);
      case 'RequestAuthentication':
        return this.putRequestAuthentication(key, obj as RequestAuthenticationObject | null);
      case 'Sidecar':
        return this.putSidecar(key, obj as SidecarObject | null);
      case 'VirtualService':
        return this.putVirtualService(key, obj as VirtualServiceObject | null);
      case 'DestinationRule':
        return this.putTraffic(
          kind,
          key,
          this.destinationRules,
          obj as DestinationRuleObject | null,
        );
      case 'HTTPRoute':
        return this.putTraffic(kind, key, this.httpRoutes, obj as HttpRouteObject | null);
      case 'GRPCRoute':
        return this.putTraffic(kind, key, this.grpcRoutes, obj as GrpcRouteObject | null);
      case 'TCPRoute':
        return this.putTraffic(kind, key, this.tcpRoutes, obj as TcpRouteObject | null);
      case 'TLSRoute':
        return this.putTraffic(kind, key, this.tlsRoutes, obj as TlsRouteObject | null);
      case 'ServiceEntry':
        return this.putServiceEntry(key, obj as ServiceEntryObject | null);
      case 'Node':
        return this.putNode(key, obj as NodeObject | null);
      case 'Telemetry':
        return this.putTelemetry(key, obj as TelemetryObject | null);
      case 'WorkloadEntry':
        return this.putWorkloadEntry(key, obj as WorkloadEntryObject | null);
    }
  }

  /**
   * A WorkloadEntry: the Services of its namespace whose selector takes its labels (before or
   * after), and the hosts of the namespace's ServiceEntries that select workloads.
   */
  private putWorkloadEntry(key: string, entry: WorkloadEntryObject | null): void {
    const old = this.workloadEntries.get(key);
    const namespace = this.workloadEntries.put(key, entry);
    if (namespace === undefined) return;
    for (const serviceKey of this.servicesByNamespace.get(namespace) ?? []) {
      const selector = this.services.get(serviceKey)?.selector ?? null;
      if (selector === null) continue;
      if (
        [old, entry].some(
          (e) => e !== undefined && e !== null && selectorMatches(selector, e.labels),
        )
      ) {
        this.dirtyServices.add(serviceKey);
      }
    }
    this.touchSelectingEntries(namespace);
  }

  /** The hosts of a namespace's ServiceEntries that select workloads: one of them changed. */
  private touchSelectingEntries(namespace: string): void {
    for (const entryKey of this.selectingEntries.get(namespace) ?? []) {
      const se = this.serviceEntries.get(entryKey);
      for (const serviceKey of se === undefined ? [] : MeshModel.entryKeys(se)) {
        this.dirtyServices.add(serviceKey);
      }
    }
  }

  /**
   * The SPIFFE ID of a service account of `namespace`: null without one (plain text), undefined
   * when it cannot be named (the endpoint is then never dialled).
   */
  private identityOfAccount(
    namespace: string,
    serviceAccount: string | null,
  ): string | null | undefined {
    if (serviceAccount === null) return null;
    try {
      return spiffeIdOf(this.options.trustDomain, { namespace, serviceAccount });
    } catch {
      return undefined;
    }
  }

  /** A WorkloadEntry as an endpoint at `ports`; null when its identity cannot be named. */
  private workloadEntryEndpoint(
    entry: WorkloadEntryObject,
    ports: Record<string, number>,
  ): Endpoint | null {
    const identity = this.identityOfAccount(entry.meta.namespace, entry.serviceAccount);
    // Fail closed: a meshed endpoint whose identity cannot be named is never dialled.
    if (identity === undefined) return null;
    return {
      address: entry.address,
      ports,
      ready: true,
      identity,
      workload: workloadInfoOfEntry(entry),
      pod: null,
      ...(entry.locality === null ? {} : { locality: entry.locality }),
    };
  }

  /** A Node's locality changed: the Services with endpoints on it, the scopes of its Pods. */
  private putNode(key: string, node: NodeObject | null): void {
    const name = key.slice(key.indexOf('/') + 1);
    if (node === null) this.nodes.delete(name);
    else this.nodes.set(name, node);
    for (const podKey of this.podsByNode.get(name) ?? []) this.touchPod(podKey);
    for (const sliceKey of this.slicesByNode.get(name) ?? []) {
      const slice = this.slices.get(sliceKey);
      const service = slice === undefined ? null : serviceKeyOf(slice);
      if (service !== null) this.dirtyServices.add(service);
    }
  }

  /**
   * Where a Pod runs, `region/zone/subzone`: its `istio-locality` label, else its Node's labels;
   * `node` and `zone` stand in for an endpoint without a Pod. Null: unknown.
   */
  private localityOf(
    pod: PodObject | undefined,
    node: string | null,
    zone: string | null,
  ): string | null {
    if (pod !== undefined) {
      const own = podLocality(pod.meta.labels);
      if (own !== null) return own;
    }
    const known = this.nodes.get(pod?.nodeName ?? node ?? '');
    if (known !== undefined) return known.locality;
    return zone === null ? null : `/${zone}/`;
  }

  /** The service keys of a ServiceEntry's hosts. */
  private static entryKeys(se: ServiceEntryObject): string[] {
    return se.hosts.flatMap((h) => meshKeyOfHost(h, se.meta.namespace) ?? []);
  }

  /** A ServiceEntry: the services of its hosts, before and after, are rebuilt. */
  private putServiceEntry(key: string, se: ServiceEntryObject | null): void {
    const old = this.serviceEntries.get(key);
    for (const serviceKey of old === undefined ? [] : MeshModel.entryKeys(old)) {
      drop(this.entriesByService, serviceKey, key);
      this.dirtyServices.add(serviceKey);
    }
    if (old !== undefined) drop(this.selectingEntries, old.meta.namespace, key);
    if (se === null) {
      this.serviceEntries.delete(key);
      return;
    }
    this.serviceEntries.set(key, se);
    if (se.workloadSelector !== null) add(this.selectingEntries, se.meta.namespace, key);
    for (const serviceKey of MeshModel.entryKeys(se)) {
      add(this.entriesByService, serviceKey, key);
      this.dirtyServices.add(serviceKey);
    }
  }

  /**
   * The ServiceEntry a service key is built from: the oldest that names the host (the others
   * are not used, as a younger VirtualService is not); undefined when none does.
   */
  private entryOf(serviceKey: string): { entry: ServiceEntryObject; host: string } | undefined {
    const entries = [...(this.entriesByService.get(serviceKey) ?? [])]
      .flatMap((k) => this.serviceEntries.get(k) ?? [])
      .sort(olderFirst);
    const entry = entries[0];
    if (entry === undefined) return undefined;
    const host = entry.hosts.find((h) => meshKeyOfHost(h, entry.meta.namespace) === serviceKey);
    return host === undefined ? undefined : { entry, host };
  }

  /**
   * What a service key is built from: a Kubernetes Service, else a ServiceEntry's host (a
   * Service of the same key, `httpbin.org`'s `org/httpbin`, wins); undefined: neither.
   */
  private sourceOf(key: string): ServiceSource | undefined {
    const svc = this.services.get(key);
    if (svc !== undefined) {
      return {
        namespace: svc.meta.namespace,
        exportTo: svc.exportTo,
        build: (mtls, viewer) => this.buildService(key, svc, mtls, viewer),
      };
    }
    const found = this.entryOf(key);
    if (found === undefined) return undefined;
    return {
      namespace: found.entry.meta.namespace,
      exportTo: found.entry.exportTo,
      build: (mtls, viewer) => this.buildEntryService(key, found.entry, found.host, viewer, mtls),
    };
  }

  /**
   * A VirtualService, with its delegations: a change to one delegated to changes the Services of
   * those that delegate to it.
   */
  private putVirtualService(key: string, obj: VirtualServiceObject | null): void {
    const delegatesOf = (vs: VirtualServiceObject | undefined | null): string[] =>
      (vs?.http ?? []).flatMap((r) => (r.delegate === undefined ? [] : [nameKey(r.delegate)]));
    for (const target of delegatesOf(this.virtualServices.get(key))) {
      drop(this.delegatedBy, target, key);
    }
    for (const root of this.delegatedBy.get(key) ?? []) {
      for (const host of this.virtualServices.get(root)?.hosts ?? []) this.dirtyServices.add(host);
    }
    this.putTraffic('VirtualService', key, this.virtualServices, obj);
    for (const target of delegatesOf(obj)) add(this.delegatedBy, target, key);
  }

  /** The Service keys a traffic object names. */
  private static targetsOf(obj: TrafficObject): string[] {
    switch (obj.kind) {
      case 'VirtualService':
        return [...obj.hosts];
      case 'DestinationRule':
        return obj.host === null ? [] : [obj.host];
      case 'HTTPRoute':
      case 'GRPCRoute':
      case 'TCPRoute':
      case 'TLSRoute':
        return [...new Set(obj.parents.map((p) => p.service))];
    }
  }

  private putTraffic<T extends TrafficObject>(
    kind: T['kind'],
    key: string,
    store: Map<string, T>,
    obj: T | null,
  ): void {
    const old = store.get(key);
    for (const target of old === undefined ? [] : MeshModel.targetsOf(old)) {
      drop(this.trafficByService, `${kind}|${target}`, key);
      this.dirtyServices.add(target);
    }
    if (obj === null) {
      store.delete(key);
      return;
    }
    store.set(key, obj);
    for (const target of MeshModel.targetsOf(obj)) {
      add(this.trafficByService, `${kind}|${target}`, key);
      this.dirtyServices.add(target);
    }
  }

  private trafficObjects<T>(kind: MeshKind, serviceKey: string, store: Map<string, T>): T[] {
    const out: T[] = [];
    for (const key of this.trafficByService.get(`${kind}|${serviceKey}`) ?? []) {
      const obj = store.get(key);
      if (obj !== undefined) out.push(obj);
    }
    return out;
  }

  /** A Gateway API route as the model holds it (`namespace/name`). */
  gatewayRoute(kind: GatewayRouteObject['kind'], key: string): GatewayRouteObject | undefined {
    switch (kind) {
      case 'HTTPRoute':
        return this.httpRoutes.get(key);
      case 'GRPCRoute':
        return this.grpcRoutes.get(key);
      case 'TCPRoute':
        return this.tcpRoutes.get(key);
      case 'TLSRoute':
        return this.tlsRoutes.get(key);
    }
  }

  /** What an HTTPRoute's status depends on: which Services exist, which VirtualService wins. */
  routeFacts(): RouteFacts {
    // One status pass asks for the same Services again (each route, each parent): built once.
    const conflicts = new Map<string, ServiceTraffic['conflicts']>();
    return {
      serviceExists: (key) => this.services.has(key),
      portNamed: (key, name) => this.portNamed(key, name),
      virtualServiceFor: (key, kind) => {
        const vss = this.trafficObjects('VirtualService', key, this.virtualServices);
        const oldest = vss.sort(olderFirst)[0];
        // A VirtualService wins over the routes of the kinds of traffic it has rules for: one
        // with `tcp` routes only leaves HTTP to the routes (serviceTraffic).
        const rules =
          kind === 'TCPRoute' ? oldest?.tcp : kind === 'TLSRoute' ? oldest?.tls : oldest?.http;
        return oldest === undefined || (rules?.length ?? 0) === 0 ? null : nameKey(oldest.meta);
      },
      grpcConflict: (key, route) => {
        let list = conflicts.get(key);
        if (list === undefined) conflicts.set(key, (list = this.trafficOf(key).conflicts));
        return list.find((c) => c.route === route) ?? null;
      },
    };
  }

  /** The traffic objects that name a Service. */
  private trafficObjectsOf(serviceKey: string): ServiceTrafficObjects {
    return {
      virtualServices: this.trafficObjects('VirtualService', serviceKey, this.virtualServices),
      destinationRules: this.trafficObjects('DestinationRule', serviceKey, this.destinationRules),
      httpRoutes: this.trafficObjects('HTTPRoute', serviceKey, this.httpRoutes),
      grpcRoutes: this.trafficObjects('GRPCRoute', serviceKey, this.grpcRoutes),
      tcpRoutes: this.trafficObjects('TCPRoute', serviceKey, this.tcpRoutes),
      tlsRoutes: this.trafficObjects('TLSRoute', serviceKey, this.tlsRoutes),
      delegate: (namespace, name) => this.virtualServices.get(`${namespace}/${name}`),
    };
  }

  /**
   * The route table, destination policy and subsets of a Service, as proxies in `viewer` use
   * them (null: in a namespace no rule names or lives in).
   */
  trafficOf(
    serviceKey: string,
    viewer: string | null = null,
    entry: ServiceEntryObject | undefined = this.services.has(serviceKey)
      ? undefined
      : this.entryOf(serviceKey)?.entry,
  ): ServiceTraffic {
    return serviceTraffic(serviceKey, this.trafficObjectsOf(serviceKey), {
      ports: this.services.get(serviceKey)?.ports ?? [],
      viewer,
      rootNamespace: this.options.rootNamespace,
      ...(entry === undefined ? {} : { namespace: entry.meta.namespace }),
    });
  }

  /**
   * The Service as the namespaces an `exportTo` of its rules names, or a DestinationRule of it
   * lives in, see it, where that differs from `json` (what the others get); undefined when none
   * does.
   */
  private viewsOf(
    key: string,
    source: ServiceSource,
    mtls: Map<string, ResolvedMtls>,
    json: string,
  ): ReadonlyMap<string, ServiceView> | undefined {
    let views: Map<string, ServiceView> | undefined;
    for (const namespace of exportViews(this.trafficObjectsOf(key))) {
      const service = source.build(mtls, namespace);
      if (service === null) continue;
      const text = canonicalJson(service);
      if (text === json) continue;
      (views ??= new Map()).set(namespace, { service, json: text, bytes: utf8Length(text) });
    }
    return views;
  }

  /** The port of Service `serviceKey` named `name`, or null. */
  private portNamed(serviceKey: string, name: string): number | null {
    return this.services.get(serviceKey)?.ports.find((p) => p.name === name)?.port ?? null;
  }

  /** `mesh.mtlsMode` changed: every Pod's mode may have. */
  setDefaultMtlsMode(mode: MtlsMode): void {
    if (mode === this.defaultMtlsMode) return;
    this.defaultMtlsMode = mode;
    for (const podKey of this.pods.keys()) this.touchPod(podKey);
  }

  setSettings(settings: MeshSettings): void {
    const text = canonicalJson(settings);
    if (text === this.settingsText) return;
    this.settingsValue = settings;
    this.settingsText = text;
    this.settingsDirty = true;
  }

  /** True when something awaits a commit. */
  dirty(): boolean {
    return (
      this.dirtyServices.size > 0 ||
      this.dirtyPods.size > 0 ||
      this.dirtySidecars.size > 0 ||
      this.settingsDirty
    );
  }

  private putService(key: string, svc: ServiceObject | null): void {
    const old = this.services.get(key);
    const namespace = (svc ?? old)?.meta.namespace;
    if (namespace === undefined) return;
    if (svc === null) {
      this.services.delete(key);
      drop(this.servicesByNamespace, namespace, key);
    } else {
      this.services.set(key, svc);
      add(this.servicesByNamespace, namespace, key);
    }
    this.dirtyServices.add(key);
    // The Pods it selects (before or after) may see their inbound ports change.
    for (const selector of [old?.selector, svc?.selector]) {
      if (selector === null || selector === undefined) continue;
      for (const podKey of this.podsByNamespace.get(namespace) ?? []) {
        const pod = this.pods.get(podKey);
        if (pod !== undefined && selectorMatches(selector, pod.meta.labels)) {
          this.dirtyPods.add(podKey);
        }
      }
    }
  }

  private putSlice(key: string, slice: EndpointSliceObject | null): void {
    const old = this.slices.get(key);
    if (old !== undefined) {
      const oldService = serviceKeyOf(old);
      if (oldService !== null) {
        drop(this.slicesByService, oldService, key);
        this.dirtyServices.add(oldService);
      }
      for (const podKey of podRefsOf(old)) drop(this.slicesByPod, podKey, key);
      for (const node of nodesOf(old)) drop(this.slicesByNode, node, key);
    }
    if (slice === null) {
      this.slices.delete(key);
      return;
    }
    this.slices.set(key, slice);
    const service = serviceKeyOf(slice);
    if (service !== null) {
      add(this.slicesByService, service, key);
      this.dirtyServices.add(service);
    }
    for (const podKey of podRefsOf(slice)) add(this.slicesByPod, podKey, key);
    for (const node of nodesOf(slice)) add(this.slicesByNode, node, key);
  }

  private putPod(key: string, pod: PodObject | null): void {
    const old = this.pods.get(key);
    const namespace = (pod ?? old)?.meta.namespace;
    if (namespace === undefined) return;
    if (old?.nodeName !== undefined && old.nodeName !== null) {
      drop(this.podsByNode, old.nodeName, key);
    }
    if (pod === null) {
      this.pods.delete(key);
      drop(this.podsByNamespace, namespace, key);
    } else {
      this.pods.set(key, pod);
      add(this.podsByNamespace, namespace, key);
      if (pod.nodeName !== null) add(this.podsByNode, pod.nodeName, key);
    }
    this.touchPod(key);
  }

  private putPeerAuthentication(key: string, pa: PeerAuthenticationObject | null): void {
    const namespace = this.peerAuthentications.put(key, pa);
    if (namespace !== undefined)
      for (const podKey of this.podsUnder(namespace)) this.touchPod(podKey);
  }

  /** Only the scopes of the Pods it may apply to change (no Service's endpoints do). */
  private putAuthorizationPolicy(key: string, ap: AuthorizationPolicyObject | null): void {
    const namespace = this.authorizationPolicies.put(key, ap);
    if (namespace === undefined) return;
    for (const podKey of this.podsUnder(namespace)) this.dirtyPods.add(podKey);
  }

  /** As an AuthorizationPolicy: only the scopes of the Pods it may apply to change. */
  private putRequestAuthentication(key: string, ra: RequestAuthenticationObject | null): void {
    const namespace = this.requestAuthentications.put(key, ra);
    if (namespace === undefined) return;
    for (const podKey of this.podsUnder(namespace)) this.dirtyPods.add(podKey);
  }

  /** As an AuthorizationPolicy: only the scopes of the Pods it may apply to change. */
  private putTelemetry(key: string, t: TelemetryObject | null): void {
    const namespace = this.telemetries.put(key, t);
    if (namespace === undefined) return;
    for (const podKey of this.podsUnder(namespace)) this.dirtyPods.add(podKey);
  }

  /** What the proxies of its namespace (the root's: of every namespace) see changes. */
  private putSidecar(key: string, sidecar: SidecarObject | null): void {
    const namespace = this.sidecars.put(key, sidecar);
    if (namespace === undefined) return;
    this.dirtySidecars.add(namespace);
    this.sidecarOfNamespace.clear();
    const selecting = this.sidecars.of([namespace]).some((s) => s.workloadSelector !== null);
    if (selecting) this.selectingSidecars.add(namespace);
    else this.selectingSidecars.delete(namespace);
    // Their scopes carry its outbound traffic policy.
    for (const podKey of this.podsUnder(namespace)) this.dirtyPods.add(podKey);
  }

  /**
   * The Sidecar of a namespace's proxies: its own (the oldest), else the root namespace's. Kept
   * until a Sidecar changes: every delta of every proxy asks.
   */
  sidecarOf(namespace: string): SidecarObject | undefined {
    if (this.sidecarOfNamespace.has(namespace)) return this.sidecarOfNamespace.get(namespace);
    const whole = (ns: string): SidecarObject | undefined =>
      this.sidecars
        .of([ns])
        .filter((s) => s.workloadSelector === null)
        .sort(olderFirst)[0];
    let sidecar = whole(namespace);
    if (sidecar === undefined && namespace !== this.options.rootNamespace) {
      sidecar = whole(this.options.rootNamespace);
    }
    this.sidecarOfNamespace.set(namespace, sidecar);
    return sidecar;
  }

  /**
   * The Sidecar of one Pod's proxy: the oldest of its namespace whose workloadSelector takes the
   * Pod, else its namespace's (`sidecarOf`).
   */
  sidecarOfPod(podKey: string): SidecarObject | undefined {
    const pod = this.pods.get(podKey);
    if (pod === undefined) return undefined;
    const namespace = pod.meta.namespace;
    if (!this.selectingSidecars.has(namespace)) return this.sidecarOf(namespace);
    const own = this.sidecars
      .of([namespace])
      .filter(
        (s) => s.workloadSelector !== null && selectorMatches(s.workloadSelector, pod.meta.labels),
      )
      .sort(olderFirst)[0];
    return own ?? this.sidecarOf(namespace);
  }

  /** The version at which what a namespace's proxies see last changed by a Sidecar. */
  private sidecarVersion(namespace: string): number {
    return Math.max(
      this.sidecarChanged.get(namespace) ?? 0,
      this.sidecarChanged.get(this.options.rootNamespace) ?? 0,
    );
  }

  /**
   * Where the server must fetch keys from, for the RequestAuthentications it holds, each with
   * the shortest timeout a rule gives it (null: the server's default).
   */
  jwksSources(): Map<string, number | null> {
    const out = new Map<string, number | null>();
    for (const ra of this.requestAuthentications.values()) {
      for (const rule of ra.jwtRules) {
        const source = jwksSource(rule);
        if (source === null) continue;
        const known = out.get(source) ?? null;
        const timeout = rule.timeoutMs;
        out.set(
          source,
          known === null ? timeout : timeout === null ? known : Math.min(known, timeout),
        );
      }
    }
    return out;
  }

  /** True when keys were fetched from `source` (a failure since keeps them). */
  hasJwks(source: string): boolean {
    return (this.jwks.get(source) ?? null) !== null;
  }

  /**
   * The keys fetched from `source` (null: it failed, every token it would check fails); the
   * Pods whose RequestAuthentications use it are pushed again when they changed.
   */
  setJwks(source: string, text: string | null): void {
    if (this.jwks.has(source) && this.jwks.get(source) === text) return;
    this.jwks.set(source, text);
    for (const ra of this.requestAuthentications.values()) {
      if (!ra.jwtRules.some((r) => jwksSource(r) === source)) continue;
      for (const podKey of this.podsUnder(ra.meta.namespace)) this.dirtyPods.add(podKey);
    }
  }

  /** The Pods a policy of `namespace` may apply to: every one for the root namespace. */
  private podsUnder(namespace: string): Iterable<string> {
    return namespace === this.options.rootNamespace
      ? this.pods.keys()
      : (this.podsByNamespace.get(namespace) ?? []);
  }

  /** A Pod changed: its scope, and every Service with it as an endpoint. */
  private touchPod(podKey: string): void {
    this.dirtyPods.add(podKey);
    for (const sliceKey of this.slicesByPod.get(podKey) ?? []) {
      const slice = this.slices.get(sliceKey);
      const service = slice === undefined ? null : serviceKeyOf(slice);
      if (service !== null) this.dirtyServices.add(service);
    }
    // The hosts of the namespace's ServiceEntries that select Pods (it may be, or have been, one).
    this.touchSelectingEntries(podKey.slice(0, podKey.indexOf('/')));
  }

  // --- commit ----------------------------------------------------------------------------------

  /** Rebuilds what changed since the last commit; null when nothing did. */
  commit(): Commit | null {
    if (!this.dirty()) return null;
    const next = this.versionValue + 1;
    const mtls = new Map<string, ResolvedMtls>();
    const changed: string[] = [];
    const removed: string[] = [];
    const rebuilt = this.dirtyServices.size;
    for (const key of this.dirtyServices) {
      const source = this.sourceOf(key);
      const service = source === undefined ? null : source.build(mtls, null);
      const prev = this.built.get(key);
      if (service === null || source === undefined) {
        if (prev !== undefined) {
          this.built.delete(key);
          this.tombstones.set(key, next);
          removed.push(key);
        }
        continue;
      }
      const json = canonicalJson(service);
      const views = this.viewsOf(key, source, mtls, json);
      // Who sees it: its exportTo, and its namespace (`.`, a Sidecar's hosts), which a
      // ServiceEntry's host changes when the oldest entry naming it is another namespace's.
      const sameExport =
        prev !== undefined &&
        prev.namespace === source.namespace &&
        canonicalJson(prev.exportTo) === canonicalJson(source.exportTo);
      const sameViews = prev !== undefined && viewsText(prev.views) === viewsText(views);
      if (prev !== undefined && prev.json === json && sameExport && sameViews) continue;
      // A proxy that cannot see it now may have seen it before: an earlier exportTo, or the
      // version that was deleted (its tombstone) before this one came. A new Service was seen
      // by nobody.
      const exportToVersion =
        prev === undefined
          ? this.tombstones.has(key)
            ? next
            : 0
          : sameExport
            ? prev.exportToVersion
            : next;
      this.built.set(key, {
        key,
        namespace: source.namespace,
        service,
        json,
        bytes: utf8Length(json),
        version: next,
        exportTo: source.exportTo,
        exportToVersion,
        ...(views === undefined ? {} : { views }),
      });
      this.tombstones.delete(key);
      changed.push(key);
    }
    const pods = [...this.dirtyPods];
    const settings = this.settingsDirty;
    const sidecars = [...this.dirtySidecars];
    this.dirtyServices.clear();
    this.dirtyPods.clear();
    this.dirtySidecars.clear();
    this.settingsDirty = false;
    if (
      changed.length === 0 &&
      removed.length === 0 &&
      pods.length === 0 &&
      sidecars.length === 0 &&
      !settings
    ) {
      return null;
    }
    for (const namespace of sidecars) this.sidecarChanged.set(namespace, next);
    this.versionValue = next;
    if (changed.length > 0 || removed.length > 0) {
      this.log.push({ version: next, keys: [...changed, ...removed] });
    }
    return { version: next, services: changed, removed, pods, settings, rebuilt };
  }

  /**
   * Forgets the history a proxy at `version` or later no longer needs: removed Services and the
   * change log up to it. A proxy older than that is answered from a scan of every Service.
   */
  prune(version: number): void {
    const upTo = Math.min(version, this.versionValue);
    if (upTo <= this.logFloor) return;
    this.log = this.log.filter((entry) => entry.version > upTo);
    this.logFloor = upTo;
    for (const [key, at] of this.tombstones) if (at <= upTo) this.tombstones.delete(key);
  }

  // --- output ----------------------------------------------------------------------------------

  service(key: string): BuiltService | undefined {
    return this.built.get(key);
  }

  /** Whether a proxy in `namespace` sees `b`: its exportTo, and the namespace's Sidecar. */
  private sees(b: BuiltService, namespace: string, sidecar: SidecarObject | undefined): boolean {
    return (
      isVisible(b.exportTo, b.namespace, namespace) &&
      egressAllows(sidecar, namespace, { namespace: b.namespace, hostname: b.service.hostname })
    );
  }

  /** The Services a proxy in `namespace` (under `sidecar`: its Pod's) sees, by key. */
  visibleServices(
    namespace: string,
    sidecar: SidecarObject | undefined = this.sidecarOf(namespace),
  ): BuiltService[] {
    const out: BuiltService[] = [];
    for (const b of this.built.values()) {
      if (this.sees(b, namespace, sidecar)) out.push(viewOf(b, namespace));
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /**
   * What a proxy in `namespace` (under `sidecar`: its Pod's) that holds `since` must learn to be
   * at the current version. `moved`: its Pod is now under another Sidecar than before.
   */
  changesSince(
    since: number,
    namespace: string,
    sidecar: SidecarObject | undefined = this.sidecarOf(namespace),
    moved = false,
  ): ModelChanges {
    if (since >= this.versionValue) return { services: [], removed: [] };
    // A Sidecar changed since, or another applies: every service it may show or hide is told again.
    const rescan = moved || since < this.sidecarVersion(namespace);
    let keys: Iterable<string>;
    if (since >= this.logFloor && !rescan) {
      const set = new Set<string>();
      for (const entry of this.log) {
        if (entry.version > since) for (const key of entry.keys) set.add(key);
      }
      keys = set;
    } else {
      keys = new Set([...this.built.keys(), ...this.tombstones.keys()]);
    }
    const services: BuiltService[] = [];
    const removed: string[] = [];
    for (const key of keys) {
      const b = this.built.get(key);
      if (b === undefined) {
        const at = this.tombstones.get(key);
        if (at !== undefined && at > since) removed.push(key);
        continue;
      }
      const seen = this.sees(b, namespace, sidecar);
      if (rescan) {
        if (seen) services.push(viewOf(b, namespace));
        else removed.push(key);
        continue;
      }
      if (b.version <= since) continue;
      if (seen) services.push(viewOf(b, namespace));
      else if (b.exportToVersion > since) removed.push(key);
    }
    services.sort((a, b) => (a.key < b.key ? -1 : 1));
    return { services, removed: removed.sort() };
  }

  /** The scope of the proxy of Pod `namespace/name`; null when the model has no such Pod. */
  proxyScope(podKey: string): ProxyScope | null {
    const pod = this.pods.get(podKey);
    if (pod === undefined) return null;
    let identity: string;
    try {
      identity = this.identityOf(pod);
    } catch {
      return null;
    }
    const mtls = this.mtlsOf(pod);
    const ports = this.inboundPorts(pod);
    const authorization = this.authorizationOf(pod);
    const jwt = this.jwtOf(pod);
    const outbound = this.sidecarOfPod(podKey)?.outboundTrafficPolicy ?? null;
    const locality = this.localityOf(pod, null, null);
    const root = this.options.rootNamespace;
    const telemetry = resolveTelemetry(
      pod.meta,
      this.telemetries.of([root, pod.meta.namespace]),
      root,
    );
    // A Pod's own annotations over its Telemetries.
    const sampling = pod.traceSamplingPercent ?? telemetry.samplingPercent;
    const accessLog = pod.accessLog ?? telemetry.accessLog?.on ?? null;
    const side = accessLog === true ? (telemetry.accessLog?.side ?? null) : null;
    return {
      pod: { name: pod.meta.name, namespace: pod.meta.namespace, ip: pod.ips[0] ?? null },
      identity,
      workload: workloadInfoOf(pod),
      labels: pod.meta.labels,
      inbound: {
        mtlsMode: mtls.mode,
        ...(mtls.portMtls === undefined ? {} : { portMtls: mtls.portMtls }),
        ...(ports.length === 0 ? {} : { ports }),
        source: mtls.source,
        ...(authorization.length === 0 ? {} : { authorization }),
        ...(jwt.length === 0 ? {} : { jwt }),
      },
      ...(sampling === null ? {} : { traceSamplingPercent: sampling }),
      ...(accessLog === null ? {} : { accessLog }),
      ...(side === null ? {} : { accessLogSide: side }),
      ...(telemetry.metricOverrides.length === 0
        ? {}
        : { metricOverrides: telemetry.metricOverrides }),
      ...(outbound === null ? {} : { outboundTrafficPolicy: outbound }),
      ...(locality === null ? {} : { locality }),
    };
  }

  /** The Pod `namespace/name` as the model holds it. */
  pod(podKey: string): PodObject | undefined {
    return this.pods.get(podKey);
  }

  // --- building --------------------------------------------------------------------------------

  private identityOf(pod: PodObject): string {
    return spiffeIdOf(this.options.trustDomain, {
      namespace: pod.meta.namespace,
      serviceAccount: pod.serviceAccount,
    });
  }

  private mtlsOf(pod: PodObject, cache?: Map<string, ResolvedMtls>): ResolvedMtls {
    const key = nameKey(pod.meta);
    const cached = cache?.get(key);
    if (cached !== undefined) return cached;
    const resolved = resolvePeerAuthentication(
      pod.meta,
      this.peerAuthentications.of([this.options.rootNamespace, pod.meta.namespace]),
      this.options.rootNamespace,
      this.defaultMtlsMode,
    );
    cache?.set(key, resolved);
    return resolved;
  }

  private authorizationOf(pod: PodObject): AuthorizationPolicyRules[] {
    const root = this.options.rootNamespace;
    return resolveAuthorization(
      pod.meta,
      this.authorizationPolicies.of([root, pod.meta.namespace]),
      root,
    );
  }

  private jwtOf(pod: PodObject): JwtProvider[] {
    const root = this.options.rootNamespace;
    return resolveJwt(
      pod.meta,
      this.requestAuthentications.of([root, pod.meta.namespace]),
      root,
      (source) => this.jwks.get(source) ?? null,
    );
  }

  /** The protocols of the Pod's ports, from the Services that select it (Istio's targetPort). */
  private inboundPorts(pod: PodObject): { port: number; protocol: Protocol }[] {
    const byPort = new Map<number, Protocol>();
    const keys = [...(this.servicesByNamespace.get(pod.meta.namespace) ?? [])].sort();
    for (const key of keys) {
      const svc = this.services.get(key);
      if (svc?.selector === null || svc === undefined) continue;
      if (!selectorMatches(svc.selector, pod.meta.labels)) continue;
      for (const sp of svc.ports) {
        const protocol = protocolOf(sp);
        if (protocol === null) continue;
        const target =
          typeof sp.targetPort === 'number'
            ? sp.targetPort
            : pod.containerPorts.find((c) => c.name === sp.targetPort && c.protocol === 'TCP')
                ?.containerPort;
        if (target === undefined) continue;
        const known = byPort.get(target);
        if (known === undefined || (known === 'unknown' && protocol !== 'unknown')) {
          byPort.set(target, protocol);
        }
      }
    }
    return [...byPort.entries()]
      .sort(([a], [b]) => a - b)
      .map(([port, protocol]) => ({ port, protocol }));
  }

  private buildService(
    key: string,
    svc: ServiceObject,
    mtlsCache: Map<string, ResolvedMtls>,
    viewer: string | null,
  ): MeshService | null {
    if (svc.type === 'ExternalName') return null;
    const ports: ServicePort[] = [];
    for (const sp of svc.ports) {
      const protocol = protocolOf(sp);
      if (protocol !== null) ports.push({ port: sp.port, name: sp.name, protocol });
    }
    if (ports.length === 0) return null;
    ports.sort((a, b) => a.port - b.port);

    const drafts = new Map<string, EndpointDraft>();
    for (const sliceKey of [...(this.slicesByService.get(key) ?? [])].sort()) {
      const slice = this.slices.get(sliceKey);
      if (slice === undefined || slice.addressType === 'FQDN') continue;
      const mapping: [number, number][] = [];
      for (const sp of ports) {
        const match = slice.ports.find((p) => p.name === sp.name && p.protocol === 'TCP');
        if (match?.port !== null && match?.port !== undefined) mapping.push([sp.port, match.port]);
      }
      if (mapping.length === 0) continue;
      for (const e of slice.endpoints) {
        if (!e.ready && !e.serving) continue;
        const podRef = e.targetRef?.kind === 'Pod' ? e.targetRef : null;
        const pod = podRef === null ? undefined : this.pods.get(nameKey(podRef));
        for (const address of e.addresses) {
          const draft = drafts.get(address);
          if (draft === undefined) {
            drafts.set(address, {
              address,
              ports: Object.fromEntries(mapping.map(([s, t]) => [String(s), t])),
              ready: e.ready,
              pod,
              podName: podRef?.name ?? null,
              locality: this.localityOf(pod, e.nodeName, e.zone),
            });
          } else {
            for (const [s, t] of mapping) draft.ports[String(s)] ??= t;
            draft.ready ||= e.ready;
          }
        }
      }
    }

    const traffic = this.trafficOf(key, viewer);
    const endpoints: Endpoint[] = [];
    for (const draft of drafts.values()) {
      const endpoint = this.buildEndpoint(draft, mtlsCache);
      if (endpoint === null) continue;
      const subsets =
        traffic.subsets.length === 0
          ? []
          : subsetsOf(traffic.subsets, draft.pod?.meta.labels ?? null);
      endpoints.push(subsets.length === 0 ? endpoint : { ...endpoint, subsets });
    }
    // WorkloadEntries the selector takes, at each port's targetPort (a name through their ports).
    const selector = svc.selector;
    for (const entry of selector === null ? [] : this.workloadEntries.of([svc.meta.namespace])) {
      if (selector === null || !selectorMatches(selector, entry.labels)) continue;
      if (drafts.has(entry.address)) continue;
      const mapped: Record<string, number> = {};
      for (const sp of svc.ports) {
        const target =
          typeof sp.targetPort === 'number' ? sp.targetPort : entry.ports[sp.targetPort];
        if (target !== undefined && ports.some((p) => p.port === sp.port)) {
          mapped[String(sp.port)] = target;
        }
      }
      if (Object.keys(mapped).length === 0) continue;
      const endpoint = this.workloadEntryEndpoint(entry, mapped);
      if (endpoint === null) continue;
      const subsets = subsetsOf(traffic.subsets, entry.labels);
      endpoints.push(subsets.length === 0 ? endpoint : { ...endpoint, subsets });
    }
    endpoints.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
    return {
      key,
      name: svc.meta.name,
      namespace: svc.meta.namespace,
      hostname: `${svc.meta.name}.${svc.meta.namespace}.svc.${this.clusterDomain}`,
      addresses: [...svc.clusterIPs],
      ports,
      endpoints,
      ...trafficParts(traffic),
      ...(svc.preferClose ? { preferClose: true as const } : {}),
    };
  }

  /** The service of a ServiceEntry's host, as proxies in `viewer` see it (null: every other). */
  private buildEntryService(
    key: string,
    se: ServiceEntryObject,
    host: string,
    viewer: string | null,
    mtlsCache: Map<string, ResolvedMtls>,
  ): MeshService | null {
    const ports: ServicePort[] = se.ports
      .map((p) => ({
        port: p.number,
        name: p.name,
        protocol: p.protocol,
        ...(p.tls ? { tls: true as const } : {}),
      }))
      .sort((a, b) => a.port - b.port);
    if (ports.length === 0) return null;
    const addresses: string[] = [];
    const subnets: string[] = [];
    for (const cidr of se.addresses) {
      const [address = '', prefix] = cidr.split('/');
      if (prefix === (address.includes(':') ? '128' : '32')) addresses.push(address);
      else subnets.push(parseCidr(cidr) ?? cidr);
    }
    const traffic = this.trafficOf(key, viewer, se);
    const endpoints =
      se.workloadSelector !== null
        ? this.selectedEndpoints(se, se.workloadSelector, traffic, mtlsCache)
        : this.listedEndpoints(se, host, traffic);
    return {
      key,
      name: host,
      namespace: se.meta.namespace,
      hostname: host,
      addresses: addresses.sort(),
      ports,
      endpoints,
      ...trafficParts(traffic),
      entry: {
        source: { namespace: se.meta.namespace, name: se.meta.name },
        location: se.location,
        resolution: se.resolution,
        ...(subnets.length === 0 ? {} : { subnets: subnets.sort() }),
      },
    };
  }

  /** The endpoints a ServiceEntry lists (its host itself for DNS without any; none for NONE). */
  private listedEndpoints(
    se: ServiceEntryObject,
    host: string,
    traffic: ServiceTraffic,
  ): Endpoint[] {
    const listed =
      se.resolution === 'NONE'
        ? []
        : se.endpoints.length > 0 || host.startsWith('*.')
          ? se.endpoints
          : [{ address: host, ports: {}, labels: {}, serviceAccount: null, locality: null }];
    return listed.flatMap((e) => {
      const subsets = subsetsOf(traffic.subsets, e.labels);
      const identity =
        se.location === 'MESH_INTERNAL'
          ? this.identityOfAccount(se.meta.namespace, e.serviceAccount)
          : null;
      // Fail closed: a meshed endpoint whose identity cannot be named is never dialled.
      if (identity === undefined) return [];
      return {
        address: e.address,
        ports: entryPorts(se, e.ports),
        ready: true,
        identity,
        workload: null,
        pod: null,
        ...(subsets.length === 0 ? {} : { subsets }),
        ...(e.locality === null ? {} : { locality: e.locality }),
      };
    });
  }

  /**
   * A ServiceEntry's workloadSelector: the Pods of its namespace with its labels and an address,
   * each at the entry's `targetPort` (else its number), with its identity when meshed, as a
   * Service's endpoint is; a Pod not Ready is kept as terminating (used when nothing else is).
   */
  private selectedEndpoints(
    se: ServiceEntryObject,
    selector: Readonly<Record<string, string>>,
    traffic: ServiceTraffic,
    mtlsCache: Map<string, ResolvedMtls>,
  ): Endpoint[] {
    // A Pod has no ports by name: each port's targetPort, else its number.
    const ports = entryPorts(se, {});
    const out: Endpoint[] = [];
    for (const podKey of [...(this.podsByNamespace.get(se.meta.namespace) ?? [])].sort()) {
      const pod = this.pods.get(podKey);
      if (pod === undefined || !selectorMatches(selector, pod.meta.labels)) continue;
      for (const address of pod.ips) {
        const endpoint = this.buildEndpoint(
          {
            address,
            ports: { ...ports },
            ready: pod.ready,
            pod,
            podName: pod.meta.name,
            locality: this.localityOf(pod, null, null),
          },
          mtlsCache,
        );
        if (endpoint === null) continue;
        const subsets = subsetsOf(traffic.subsets, pod.meta.labels);
        out.push(subsets.length === 0 ? endpoint : { ...endpoint, subsets });
      }
    }
    for (const entry of this.workloadEntries.of([se.meta.namespace])) {
      if (!selectorMatches(selector, entry.labels)) continue;
      const endpoint = this.workloadEntryEndpoint(entry, entryPorts(se, entry.ports));
      if (endpoint === null) continue;
      const subsets = subsetsOf(traffic.subsets, entry.labels);
      out.push(subsets.length === 0 ? endpoint : { ...endpoint, subsets });
    }
    return out.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  }

  /** An endpoint: plain text unless its Pod is meshed; null when its identity cannot be named. */
  private buildEndpoint(
    draft: EndpointDraft,
    mtlsCache: Map<string, ResolvedMtls>,
  ): Endpoint | null {
    const { pod } = draft;
    let identity: string | null = null;
    let plaintextPorts: number[] = [];
    if (pod?.meshed === true) {
      const mtls = this.mtlsOf(pod, mtlsCache);
      const endpointPorts = [...new Set(Object.values(draft.ports))].sort((a, b) => a - b);
      plaintextPorts = endpointPorts.filter((p) => modeOfPort(mtls, p) === 'DISABLE');
      if (plaintextPorts.length < endpointPorts.length) {
        try {
          identity = this.identityOf(pod);
        } catch {
          // Fail closed: a meshed endpoint without a valid identity is never dialled.
          return null;
        }
      } else {
        plaintextPorts = [];
      }
    }
    return {
      address: draft.address,
      ports: draft.ports,
      ready: draft.ready,
      identity,
      ...(plaintextPorts.length > 0 ? { plaintextPorts } : {}),
      workload: pod === undefined ? null : workloadInfoOf(pod),
      pod: draft.podName,
      ...(draft.locality === null ? {} : { locality: draft.locality }),
    };
  }
}

/** The objects of one policy kind by key, and the keys of each namespace's. */
class PolicyStore<T extends { readonly meta: { readonly namespace: string } }> {
  private readonly all = new Map<string, T>();
  private readonly byNamespace = new Map<string, Set<string>>();

  get size(): number {
    return this.all.size;
  }

  get(key: string): T | undefined {
    return this.all.get(key);
  }

  /** Stores (with null, deletes) the object of `key`; its namespace, undefined when nothing was. */
  put(key: string, obj: T | null): string | undefined {
    const namespace = (obj ?? this.all.get(key))?.meta.namespace;
    if (namespace === undefined) return undefined;
    if (obj === null) {
      this.all.delete(key);
      drop(this.byNamespace, namespace, key);
    } else {
      this.all.set(key, obj);
      add(this.byNamespace, namespace, key);
    }
    return namespace;
  }

  values(): IterableIterator<T> {
    return this.all.values();
  }

  /** The objects of these namespaces (each namespace once). */
  of(namespaces: readonly string[]): T[] {
    const out: T[] = [];
    for (const ns of new Set(namespaces)) {
      for (const key of this.byNamespace.get(ns) ?? []) {
        const obj = this.all.get(key);
        if (obj !== undefined) out.push(obj);
      }
    }
    return out;
  }
}

// Cluster mode's mesh source: Services, EndpointSlices and Pods of every namespace, the Nodes
// (their locality), and PeerAuthentications, AuthorizationPolicies and RequestAuthentications
// (security.istio.io), VirtualServices, DestinationRules, ServiceEntries, Sidecars and
// WorkloadEntries (networking.istio.io), Telemetries (telemetry.istio.io), HTTPRoutes, GRPCRoutes,
// TCPRoutes and TLSRoutes (gateway.networking.k8s.io), the Istio and Gateway API kinds each at the
// first version of MESH_API_VERSIONS the apiserver serves, when its CRD is installed; each through
// a Reflector (list, then watch; relist after a failure). Every object goes through the validator
// that --mesh-dir files go through, so the same objects make the same model.
//
// A kind whose CRD is not installed is off, said in one log line, and looked for again every
// `crdRecheckMs`: installed later, it comes on (and goes off again if the CRD is deleted). When
// the CRD is there at start, start() waits for its first list like the others': a proxy must
// never get a PERMISSIVE scope before a STRICT policy was read, no scope without the
// AuthorizationPolicies that deny, the default routes before the VirtualService, nor every
// service before the Sidecar that limits them.
//
// A CRD whose schema changes (the Gateway API's standard channel replaced by the experimental
// one, say) is noticed by its generation at the same recheck: its kind is listed again (twice:
// at once and CRD_SETTLE_MS later, for the apiserver's handlers take a moment to serve the new
// schema), because until then the watch hands on objects pruned by the old schema, and their
// resourceVersion does not move when the new schema keeps more of them. Reading CRDs needs `get`
// on them (the chart grants it for each of them); without it, the next resync repairs this.
//
// An invalid object (an admission webhook or a CRD schema let it through) is logged once and
// skipped; one that was valid before keeps its last valid version. An invalid AuthorizationPolicy
// is neither: what the validator puts in its place (`failClosed`: it denies, or allows nothing)
// goes into the model whatever it held before, for dropping a policy would open what it closes.

import {
  routeStatusParents,
  MESH_API_VERSIONS,
  MESH_KINDS,
  nameKey,
  refKey,
  validateMeshObject,
  type MeshKind,
  type MeshModel,
  type ObjectProblem,
  type ObjectRef,
  type RouteFacts,
} from '../../mesh';
import { groupPath, corePath, isKubeApiError, type KubeApi, type KubeObject } from './api';
import { Reflector, type ReflectorEventType } from './reflector';
import type { SourceLogger } from '../mesh-dir';

export const PEER_AUTHENTICATION_GROUP = 'security.istio.io';

/** The kinds that come with a CRD: each is on only while its CRD is installed. */
interface OptionalKind {
  readonly kind: MeshKind;
  readonly group: string;
  readonly plural: string;
}

export const OPTIONAL_KINDS: readonly OptionalKind[] = [
  { kind: 'PeerAuthentication', group: PEER_AUTHENTICATION_GROUP, plural: 'peerauthentications' },
  {
    kind: 'AuthorizationPolicy',
    group: PEER_AUTHENTICATION_GROUP,
    plural: 'authorizationpolicies',
  },
  {
    kind: 'RequestAuthentication',
    group: PEER_AUTHENTICATION_GROUP,
    plural: 'requestauthentications',
  },
  { kind: 'VirtualService', group: 'networking.istio.io', plural: 'virtualservices' },
  { kind: 'DestinationRule', group: 'networking.istio.io', plural: 'destinationrules' },
  { kind: 'ServiceEntry', group: 'networking.istio.io', plural: 'serviceentries' },
  { kind: 'Sidecar', group: 'networking.istio.io', plural: 'sidecars' },
  { kind: 'WorkloadEntry', group: 'networking.istio.io', plural: 'workloadentries' },
  { kind: 'Telemetry', group: 'telemetry.istio.io', plural: 'telemetries' },
  { kind: 'HTTPRoute', group: 'gateway.networking.k8s.io', plural: 'httproutes' },
  { kind: 'GRPCRoute', group: 'gateway.networking.k8s.io', plural: 'grpcroutes' },
  { kind: 'TCPRoute', group: 'gateway.networking.k8s.io', plural: 'tcproutes' },
  { kind: 'TLSRoute', group: 'gateway.networking.k8s.io', plural: 'tlsroutes' },
];

/**
 * The route kinds whose status Mooring writes, with their resources: PUT on `<plural>/status` at
 * the version the kind is watched at (v1alpha2 where a CRD serves only that, say).
 */
const ROUTE_KINDS = [
  ['HTTPRoute', 'httproutes'],
  ['GRPCRoute', 'grpcroutes'],
  ['TCPRoute', 'tcproutes'],
  ['TLSRoute', 'tlsroutes'],
] as const;
const STATUS_KINDS: ReadonlySet<MeshKind> = new Set<MeshKind>(ROUTE_KINDS.map(([kind]) => kind));

export interface ClusterMeshSourceOptions {
  readonly api: KubeApi;
  readonly model: MeshModel;
  readonly log: SourceLogger;
  readonly onChange: () => void;
  /** How often a missing CRD is looked for again. Default 30 s. */
  readonly crdRecheckMs?: number;
  /** Every object again to the model this often (repairs a missed event). Default 5 min. */
  readonly resyncMs?: number;
  /**
   * Write `status.parents` of the HTTPRoutes, GRPCRoutes, TCPRoutes and TLSRoutes attached to
   * Services. Default true.
   */
  readonly writeRouteStatus?: boolean;
}

type Raw = KubeObject & Record<string, unknown>;

/** After a CRD's schema changed, the second list of its kind comes this much later. */
export const CRD_SETTLE_MS = 5_000;

/** A Node as the model reads it: its name and labels (its locality). */
export function slimNode(node: Raw): Raw {
  const metadata = (node.metadata ?? {}) as Record<string, unknown>;
  return {
    apiVersion: node.apiVersion,
    kind: node.kind,
    metadata: {
      name: metadata.name,
      resourceVersion: metadata.resourceVersion,
      creationTimestamp: metadata.creationTimestamp,
      labels: metadata.labels,
    },
  } as Raw;
}

/** Only what the model reads of a Pod: a cache of many Pods stays small. */
export function slimPod(pod: Raw): Raw {
  const metadata = (pod.metadata ?? {}) as Record<string, unknown>;
  const spec = (pod.spec ?? {}) as Record<string, unknown>;
  const status = (pod.status ?? {}) as Record<string, unknown>;
  const ports = (containers: unknown): unknown =>
    Array.isArray(containers)
      ? containers.map((c: unknown) =>
          typeof c === 'object' && c !== null ? { ports: (c as { ports?: unknown }).ports } : c,
        )
      : containers;
  return {
    apiVersion: pod.apiVersion,
    kind: pod.kind,
    metadata: {
      name: metadata.name,
      namespace: metadata.namespace,
      resourceVersion: metadata.resourceVersion,
      creationTimestamp: metadata.creationTimestamp,
      generateName: metadata.generateName,
      labels: metadata.labels,
      annotations: metadata.annotations,
      ownerReferences: metadata.ownerReferences,
    },
    spec: {
      serviceAccountName: spec.serviceAccountName,
      serviceAccount: spec.serviceAccount,
      nodeName: spec.nodeName,
      containers: ports(spec.containers),
      initContainers: ports(spec.initContainers),
    },
    status: {
      podIP: status.podIP,
      podIPs: status.podIPs,
      // Only the Ready condition (a ServiceEntry's workloadSelector endpoints follow it).
      ...(Array.isArray(status.conditions)
        ? {
            conditions: (status.conditions as { type?: unknown }[]).filter(
              (c) => typeof c === 'object' && c !== null && c.type === 'Ready',
            ),
          }
        : {}),
    },
  } as Raw;
}

interface KindWatch {
  readonly kind: MeshKind;
  readonly apiVersion: string;
  readonly reflector: Reflector<Raw>;
}

export class ClusterMeshSource {
  private readonly watches = new Map<MeshKind, KindWatch>();
  /** Problems by object (refKey). */
  private readonly problemsByObject = new Map<string, ObjectProblem[]>();
  private readonly logged = new Map<string, string>();
  private crdTimer: NodeJS.Timeout | null = null;
  /** The apiVersion each optional kind is watched at (null: its CRD is not installed). */
  private readonly crdVersions = new Map<MeshKind, string | null>();
  private stopped = false;
  private checking: Promise<void> = Promise.resolve();
  private statusTimer: NodeJS.Timeout | null = null;
  private statusWriting: Promise<void> = Promise.resolve();
  private statusForbiddenLogged = false;
  /** The generation of each optional kind's CRD when last read (to see a schema change). */
  private readonly crdGenerations = new Map<MeshKind, number>();
  private crdReadForbidden = false;
  private readonly settleTimers = new Set<NodeJS.Timeout>();

  constructor(private readonly options: ClusterMeshSourceOptions) {}

  /** Starts every watch; resolves once each has listed its objects once. */
  async start(): Promise<void> {
    const core: [MeshKind, string, string, ((o: Raw) => Raw)?][] = [
      ['Service', 'v1', corePath('services')],
      ['EndpointSlice', 'discovery.k8s.io/v1', groupPath('discovery.k8s.io/v1', 'endpointslices')],
      ['Pod', 'v1', corePath('pods'), slimPod],
      ['Node', 'v1', corePath('nodes'), slimNode],
    ];
    const starting = core.map(([kind, apiVersion, path, transform]) =>
      this.startWatch(kind, apiVersion, path, transform),
    );
    starting.push(this.checkCrds());
    await Promise.all(starting);
    this.crdTimer = setInterval(() => {
      this.checking = this.checking.then(() => this.checkCrds()).catch(() => undefined);
    }, this.options.crdRecheckMs ?? 30_000);
    this.crdTimer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.crdTimer !== null) clearInterval(this.crdTimer);
    if (this.statusTimer !== null) clearTimeout(this.statusTimer);
    for (const t of this.settleTimers) clearTimeout(t);
    this.settleTimers.clear();
    await this.checking;
    await this.statusWriting;
    await Promise.all([...this.watches.values()].map((w) => w.reflector.stop()));
    this.watches.clear();
  }

  problems(): readonly ObjectProblem[] {
    return [...this.problemsByObject.values()].flat();
  }

  describe(): Record<string, unknown> {
    return {
      source: 'cluster',
      kinds: Object.fromEntries(
        MESH_KINDS.map((kind) => {
          const w = this.watches.get(kind);
          return [
            kind,
            w === undefined
              ? 'off'
              : { apiVersion: w.apiVersion, synced: w.reflector.hasSynced(), ...w.reflector.stats },
          ];
        }),
      ),
    };
  }

  private async startWatch(
    kind: MeshKind,
    apiVersion: string,
    path: string,
    transform?: (o: Raw) => Raw,
  ): Promise<void> {
    const reflector = new Reflector<Raw>({
      api: this.options.api,
      name: `mesh-${kind.toLowerCase()}s`,
      path,
      resyncMs: this.options.resyncMs ?? 300_000,
      logger: this.options.log,
      ...(transform === undefined ? {} : { transform }),
      onEvent: (type, obj) => this.onEvent(kind, apiVersion, type, obj),
    });
    this.watches.set(kind, { kind, apiVersion, reflector });
    await reflector.start();
  }

  /** Which served version of the kind's group has the kind (the first of MESH_API_VERSIONS). */
  private async servedVersion(crd: OptionalKind): Promise<string | null> {
    let group: { versions?: { groupVersion?: string; version?: string }[] };
    try {
      group = await this.options.api.request({ method: 'GET', path: `/apis/${crd.group}` });
    } catch (err) {
      if (isKubeApiError(err, 404)) return null;
      throw err;
    }
    const served = new Set((group.versions ?? []).map((v) => v.groupVersion));
    for (const apiVersion of MESH_API_VERSIONS[crd.kind]) {
      if (!served.has(apiVersion)) continue;
      // The group may be served for other kinds (AuthorizationPolicy) without this one.
      try {
        await this.options.api.request({
          method: 'GET',
          path: `/apis/${apiVersion}/${crd.plural}`,
          query: { limit: '1' },
        });
        return apiVersion;
      } catch (err) {
        if (!isKubeApiError(err, 404)) throw err;
      }
    }
    return null;
  }

  private async checkCrds(): Promise<void> {
    await Promise.all(OPTIONAL_KINDS.map((crd) => this.checkCrd(crd)));
  }

  private async checkCrd(crd: OptionalKind): Promise<void> {
    if (this.stopped) return;
    const { kind } = crd;
    let apiVersion: string | null;
    try {
      apiVersion = await this.servedVersion(crd);
    } catch (err) {
      this.options.log.warn(
        { err },
        `cannot tell whether ${kind} is installed; trying again later`,
      );
      return;
    }
    const known = this.crdVersions.get(kind);
    if (known !== undefined && apiVersion === known) {
      if (apiVersion !== null) await this.checkSchema(crd);
      return;
    }
    const previous = this.watches.get(kind);
    if (previous !== undefined) {
      this.watches.delete(kind);
      await previous.reflector.stop();
      let changed = false;
      for (const obj of previous.reflector.list()) {
        changed = this.forget(this.refOf(kind, obj)) || changed;
      }
      if (changed) this.options.onChange();
    }
    this.crdVersions.set(kind, apiVersion);
    if (apiVersion === null) {
      this.options.log.info(
        {
          kind,
          group: crd.group,
          recheckSeconds: (this.options.crdRecheckMs ?? 30_000) / 1000,
        },
        `${kind} is off: its CRD (${crd.plural}.${crd.group}) is not installed`,
      );
      return;
    }
    this.options.log.info({ kind, apiVersion }, `${kind} is on`);
    const generation = await this.crdGeneration(crd);
    if (generation !== null) this.crdGenerations.set(kind, generation);
    await this.startWatch(kind, apiVersion, groupPath(apiVersion, crd.plural));
  }

  /** Lists the kind again when its CRD's generation moved (its schema may have changed). */
  private async checkSchema(crd: OptionalKind): Promise<void> {
    const { kind } = crd;
    const generation = await this.crdGeneration(crd);
    if (generation === null) return;
    const previous = this.crdGenerations.get(kind);
    this.crdGenerations.set(kind, generation);
    if (previous === undefined || previous === generation) return;
    const watch = this.watches.get(kind);
    if (watch === undefined) return;
    this.options.log.info(
      { kind, crd: `${crd.plural}.${crd.group}`, generation },
      `the CRD of ${kind} changed: listing its objects again`,
    );
    watch.reflector.refresh();
    const timer = setTimeout(() => {
      this.settleTimers.delete(timer);
      if (!this.stopped) this.watches.get(kind)?.reflector.refresh();
    }, CRD_SETTLE_MS);
    timer.unref();
    this.settleTimers.add(timer);
  }

  /** `metadata.generation` of the kind's CRD; null when it cannot be read. */
  private async crdGeneration(crd: OptionalKind): Promise<number | null> {
    if (this.crdReadForbidden) return null;
    const name = `${crd.plural}.${crd.group}`;
    try {
      const obj = await this.options.api.request<{ metadata?: { generation?: number } }>({
        method: 'GET',
        path: groupPath('apiextensions.k8s.io/v1', 'customresourcedefinitions', undefined, name),
      });
      return obj.metadata?.generation ?? null;
    } catch (err) {
      if (isKubeApiError(err, 403)) {
        this.crdReadForbidden = true;
        this.options.log.warn(
          { crd: name },
          'cannot read CRDs (RBAC: get on customresourcedefinitions): a CRD schema change reaches the mesh at the next resync',
        );
      } else if (!isKubeApiError(err, 404)) {
        this.options.log.warn({ err, crd: name }, 'cannot read a CRD; trying again later');
      }
      return null;
    }
  }

  private refOf(kind: MeshKind, obj: Raw): ObjectRef {
    return { kind, namespace: obj.metadata?.namespace ?? '', name: obj.metadata?.name ?? '' };
  }

  /** Removes an object from the model and its problems; true when the model changed. */
  private forget(ref: ObjectRef): boolean {
    const key = refKey(ref);
    this.problemsByObject.delete(key);
    this.logged.delete(key);
    return this.options.model.remove(ref);
  }

  /** Soon (after a burst of events), the status of every route that needs a new one. */
  private scheduleRouteStatus(): void {
    if (this.options.writeRouteStatus === false || this.statusTimer !== null || this.stopped)
      return;
    this.statusTimer = setTimeout(() => {
      this.statusTimer = null;
      this.statusWriting = this.statusWriting.then(() => this.writeRouteStatus());
    }, 200);
    this.statusTimer.unref();
  }

  private async writeRouteStatus(): Promise<void> {
    const facts = this.options.model.routeFacts();
    for (const [kind, plural] of ROUTE_KINDS) {
      const watch = this.watches.get(kind);
      if (watch === undefined || this.stopped) continue;
      if (!(await this.writeStatusOf(kind, plural, watch, facts))) return;
    }
  }

  /** Writes the status of every route of `kind` that needs it; false when RBAC forbids it. */
  private async writeStatusOf(
    kind: (typeof ROUTE_KINDS)[number][0],
    plural: string,
    watch: KindWatch,
    facts: RouteFacts,
  ): Promise<boolean> {
    for (const raw of watch.reflector.list()) {
      const ref = this.refOf(kind, raw);
      const route = this.options.model.gatewayRoute(kind, nameKey(ref));
      if (route === undefined || route.parents.length === 0) continue;
      const status = (raw as { status?: { parents?: unknown } }).status;
      const parents = routeStatusParents(route, status?.parents, facts, new Date().toISOString());
      if (parents === null) continue;
      try {
        await this.options.api.request({
          method: 'PUT',
          path: `${groupPath(watch.apiVersion, plural, ref.namespace, ref.name)}/status`,
          body: {
            ...raw,
            apiVersion: watch.apiVersion,
            kind,
            status: { ...status, parents },
          },
        });
      } catch (err) {
        if (isKubeApiError(err, 409) || isKubeApiError(err, 404)) {
          // Changed or gone meanwhile: its event brings the next try.
          continue;
        }
        if (isKubeApiError(err, 403)) {
          if (!this.statusForbiddenLogged) {
            this.statusForbiddenLogged = true;
            this.options.log.warn(
              { kind },
              `cannot write ${kind} status (RBAC: update on ${plural}/status): routes still apply`,
            );
          }
          return false;
        }
        this.options.log.warn(
          { err, kind, namespace: ref.namespace, name: ref.name },
          `cannot write ${kind} status`,
        );
      }
    }
    return true;
  }

  private onEvent(kind: MeshKind, apiVersion: string, type: ReflectorEventType, obj: Raw): void {
    // A route's own change, or what its status depends on: its Services, a VirtualService.
    if (STATUS_KINDS.has(kind) || kind === 'Service' || kind === 'VirtualService') {
      this.scheduleRouteStatus();
    }
    const ref = this.refOf(kind, obj);
    if (type === 'deleted') {
      if (this.forget(ref)) this.options.onChange();
      return;
    }
    // Objects of a list carry no kind or apiVersion.
    const v = validateMeshObject(
      { ...obj, apiVersion: obj.apiVersion ?? apiVersion, kind },
      ref.namespace,
    );
    const key = refKey(ref);
    if (v.status === 'valid') {
      this.record(key, ref, v.warnings, 'field-ignored');
      if (this.options.model.upsert(v.object)) this.options.onChange();
      return;
    }
    if (v.status === 'invalid') {
      if (v.failClosed !== undefined) {
        // Its closed stand-in, whatever the model held before (a last valid version included).
        this.record(key, ref, v.problems, 'fail-closed');
        if (this.options.model.upsert(v.failClosed)) this.options.onChange();
        return;
      }
      // The model keeps the last valid version: it holds the object when it was ever valid.
      const kept = this.options.model.has(ref);
      this.record(key, ref, v.problems, kept ? 'kept-last-valid' : 'skipped');
    }
  }

  private record(
    key: string,
    ref: ObjectRef,
    list: readonly { field: string; message: string }[],
    effect: ObjectProblem['effect'],
  ): void {
    if (list.length === 0) {
      this.problemsByObject.delete(key);
      this.logged.delete(key);
      return;
    }
    const problems = list.map((p) => ({
      source: 'cluster',
      kind: ref.kind,
      namespace: ref.namespace,
      name: ref.name,
      field: p.field,
      message: p.message,
      effect,
    }));
    this.problemsByObject.set(key, problems);
    const text = JSON.stringify(problems);
    if (this.logged.get(key) === text) return;
    this.logged.set(key, text);
    for (const p of problems) {
      this.options.log.warn(
        {
          kind: p.kind,
          namespace: p.namespace,
          name: p.name,
          field: p.field,
          effect: p.effect,
          reason: p.message,
        },
        'invalid mesh object',
      );
    }
  }
}

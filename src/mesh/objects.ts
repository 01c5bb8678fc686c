// The Kubernetes objects the mesh model reads, as the validator (validate.ts) leaves them: only
// the fields the model uses, defaults filled, every value checked. Both sources (the apiserver
// and --mesh-dir files) go through the same validator, so the same objects give the same model.
// Pure: types and small helpers, no I/O.

import type {
  AuthorizationRule,
  CorsPolicy,
  FaultPolicy,
  HeaderMatch,
  HeaderOperations,
  JwtLocations,
  MetricOverride,
  MtlsMode,
  Protocol,
  RequestMatch,
  RetryPolicy,
  RouteMirror,
  RouteReply,
  RouteRewrite,
  TcpRouteRule,
  TrafficPolicy,
} from '../api/mesh';

/** The kinds the mesh reads, by `kind`. */
export const MESH_KINDS = [
  'Service',
  'EndpointSlice',
  'Pod',
  'PeerAuthentication',
  'AuthorizationPolicy',
  'VirtualService',
  'DestinationRule',
  'HTTPRoute',
  'GRPCRoute',
  'TCPRoute',
  'TLSRoute',
  'ServiceEntry',
  'RequestAuthentication',
  'Sidecar',
  'Node',
  'Telemetry',
  'WorkloadEntry',
] as const;
export type MeshKind = (typeof MESH_KINDS)[number];

/** `apiVersion`s accepted for each kind. */
export const MESH_API_VERSIONS: Readonly<Record<MeshKind, readonly string[]>> = {
  Service: ['v1'],
  EndpointSlice: ['discovery.k8s.io/v1'],
  Pod: ['v1'],
  PeerAuthentication: ['security.istio.io/v1', 'security.istio.io/v1beta1'],
  AuthorizationPolicy: ['security.istio.io/v1', 'security.istio.io/v1beta1'],
  VirtualService: ['networking.istio.io/v1', 'networking.istio.io/v1beta1'],
  DestinationRule: ['networking.istio.io/v1', 'networking.istio.io/v1beta1'],
  HTTPRoute: ['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1beta1'],
  GRPCRoute: ['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1alpha2'],
  // TCPRoute and TLSRoute are v1 in the standard channel (v1.6); their alphas in the experimental.
  TCPRoute: ['gateway.networking.k8s.io/v1', 'gateway.networking.k8s.io/v1alpha2'],
  TLSRoute: [
    'gateway.networking.k8s.io/v1',
    'gateway.networking.k8s.io/v1alpha3',
    'gateway.networking.k8s.io/v1alpha2',
  ],
  ServiceEntry: ['networking.istio.io/v1', 'networking.istio.io/v1beta1'],
  RequestAuthentication: ['security.istio.io/v1', 'security.istio.io/v1beta1'],
  Sidecar: ['networking.istio.io/v1', 'networking.istio.io/v1beta1'],
  Node: ['v1'],
  Telemetry: ['telemetry.istio.io/v1', 'telemetry.istio.io/v1alpha1'],
  WorkloadEntry: ['networking.istio.io/v1', 'networking.istio.io/v1beta1'],
};

/** Names an object: kind, namespace, name. */
export interface ObjectRef {
  readonly kind: MeshKind;
  readonly namespace: string;
  readonly name: string;
}

/** `Kind/namespace/name`: unique over every kind. */
export const refKey = (ref: ObjectRef): string => `${ref.kind}/${ref.namespace}/${ref.name}`;
/** `namespace/name`: unique within a kind. */
export const nameKey = (ref: { readonly namespace: string; readonly name: string }): string =>
  `${ref.namespace}/${ref.name}`;

export interface Meta {
  readonly name: string;
  readonly namespace: string;
  readonly labels: Readonly<Record<string, string>>;
  /** RFC 3339, or null when absent (objects from files): an absent one sorts last. */
  readonly creationTimestamp: string | null;
}

export type PortProtocol = 'TCP' | 'UDP' | 'SCTP';

export interface ServicePortSpec {
  /** '' when unnamed (a Service with one port). */
  readonly name: string;
  readonly port: number;
  /** A container port number, or the name of a container port; default: `port`. */
  readonly targetPort: number | string;
  readonly protocol: PortProtocol;
  readonly appProtocol: string | null;
}

export interface ServiceObject {
  readonly kind: 'Service';
  readonly meta: Meta;
  readonly type: 'ClusterIP' | 'NodePort' | 'LoadBalancer' | 'ExternalName';
  /** Every ClusterIP (IPv4 and IPv6); empty for a headless Service. */
  readonly clusterIPs: readonly string[];
  readonly ports: readonly ServicePortSpec[];
  /** null: no selector (endpoints managed by hand). */
  readonly selector: Readonly<Record<string, string>> | null;
  /** The `networking.istio.io/exportTo` annotation's entries; null: exported everywhere. */
  readonly exportTo: readonly string[] | null;
  /** `spec.trafficDistribution` PreferClose, PreferSameZone or PreferSameNode. */
  readonly preferClose: boolean;
}

export interface SliceEndpoint {
  readonly addresses: readonly string[];
  /** conditions.ready, true when absent (unknown state is ready, as Kubernetes says). */
  readonly ready: boolean;
  /** conditions.serving, `ready` when absent. */
  readonly serving: boolean;
  readonly targetRef: {
    readonly kind: string;
    readonly namespace: string;
    readonly name: string;
  } | null;
  /** `nodeName` and `zone`, or null. */
  readonly nodeName: string | null;
  readonly zone: string | null;
}

export interface SlicePort {
  readonly name: string;
  /** null: the slice says nothing of this port's number (it is then unusable). */
  readonly port: number | null;
  readonly protocol: PortProtocol;
}

export interface EndpointSliceObject {
  readonly kind: 'EndpointSlice';
  readonly meta: Meta;
  /** The `kubernetes.io/service-name` label; null: the slice belongs to no Service. */
  readonly serviceName: string | null;
  readonly addressType: 'IPv4' | 'IPv6' | 'FQDN';
  readonly endpoints: readonly SliceEndpoint[];
  readonly ports: readonly SlicePort[];
}

export interface ContainerPortSpec {
  readonly name: string | null;
  readonly containerPort: number;
  readonly protocol: PortProtocol;
}

export interface PodObject {
  readonly kind: 'Pod';
  readonly meta: Meta;
  readonly generateName: string | null;
  /** The controller owner reference, if any. */
  readonly controller: { readonly kind: string; readonly name: string } | null;
  readonly serviceAccount: string;
  /** The Pod carries `mooring.dev/status`: its proxy speaks mutual TLS. */
  readonly meshed: boolean;
  /** status.podIPs (or podIP); empty before the Pod has an address. */
  readonly ips: readonly string[];
  readonly containerPorts: readonly ContainerPortSpec[];
  /** `proxy.mooring.dev/trace-sampling`, when valid. */
  readonly traceSamplingPercent: number | null;
  /** `proxy.mooring.dev/access-log`, when valid. */
  readonly accessLog: boolean | null;
  /** `spec.nodeName`, or null before the Pod is scheduled. */
  readonly nodeName: string | null;
  /** Its `Ready` condition (true when the status has no conditions, as in a file). */
  readonly ready: boolean;
}

/** A Node (cluster-scoped: `meta.namespace` is ''), for the locality of the Pods it runs. */
export interface NodeObject {
  readonly kind: 'Node';
  readonly meta: Meta;
  /** `region/zone/subzone` from its topology labels (parts may be empty). */
  readonly locality: string;
}

/** PeerAuthentication's mode, UNSET included (it inherits from the level above). */
export type PeerAuthMode = MtlsMode | 'UNSET';

export interface PeerAuthenticationObject {
  readonly kind: 'PeerAuthentication';
  readonly meta: Meta;
  /** spec.selector.matchLabels; null or empty: a namespace (or mesh-wide) policy. */
  readonly selector: Readonly<Record<string, string>> | null;
  readonly mode: PeerAuthMode;
  /** spec.portLevelMtls by container port. */
  readonly portLevel: Readonly<Record<string, PeerAuthMode>>;
}

/**
 * An AuthorizationPolicy. A policy the validator cannot read whole is not dropped, which would
 * open what it closes: it stands in as `failClosed` (see validate.ts).
 */
export interface AuthorizationPolicyObject {
  readonly kind: 'AuthorizationPolicy';
  readonly meta: Meta;
  /** spec.selector.matchLabels; null or empty: every workload of its namespace (or the mesh). */
  readonly selector: Readonly<Record<string, string>> | null;
  /** AUDIT decides nothing (Istio's needs a logging plugin): it is read and has no effect. */
  readonly action: 'ALLOW' | 'DENY' | 'AUDIT';
  readonly rules: readonly AuthorizationRule[];
  /** Why the policy stands in closed (it had problems), or absent. */
  readonly failClosed?: string;
}

/** One of a RequestAuthentication's `jwtRules`. */
export interface JwtRuleSpec {
  readonly issuer: string;
  readonly audiences: readonly string[];
  /** Where the keys come from: inline, a URI, or (neither) the issuer's OpenID configuration. */
  readonly jwks: string | null;
  readonly jwksUri: string | null;
  readonly locations: JwtLocations | null;
  readonly forwardOriginalToken: boolean;
  readonly outputPayloadToHeader: string | null;
  readonly outputClaimToHeaders: readonly { readonly header: string; readonly claim: string }[];
  /** How long the server waits for the keys; null: its default. */
  readonly timeoutMs: number | null;
}

export interface RequestAuthenticationObject {
  readonly kind: 'RequestAuthentication';
  readonly meta: Meta;
  /** spec.selector.matchLabels; null or empty: every workload of its namespace (or the mesh). */
  readonly selector: Readonly<Record<string, string>> | null;
  readonly jwtRules: readonly JwtRuleSpec[];
}

/**
 * Istio's WorkloadEntry: a workload outside Kubernetes (a VM), an endpoint of the Services of its
 * namespace whose selector its labels match, and of the ServiceEntries whose workloadSelector
 * does.
 */
export interface WorkloadEntryObject {
  readonly kind: 'WorkloadEntry';
  readonly meta: Meta;
  /** An IP address. */
  readonly address: string;
  /** Its port for each port name (a Service's or ServiceEntry's `targetPort` name). */
  readonly ports: Readonly<Record<string, number>>;
  /** `spec.labels`: what selectors match. */
  readonly labels: Readonly<Record<string, string>>;
  /** Meshed (runs a Mooring agent): mutual TLS with this service account's identity. */
  readonly serviceAccount: string | null;
  readonly locality: string | null;
}

/** Istio's Telemetry (telemetry.istio.io): tracing, access logs and metrics of workloads. */
export interface TelemetryObject {
  readonly kind: 'Telemetry';
  readonly meta: Meta;
  /** spec.selector.matchLabels; null: every workload of its namespace (or the mesh). */
  readonly selector: Readonly<Record<string, string>> | null;
  /** `tracing[0]`: `randomSamplingPercentage` (0 with `disableSpanReporting`); null: not set. */
  readonly samplingPercent: number | null;
  /** `accessLogging[0]`: on or off, and the side it logs; null: not set. */
  readonly accessLog: { readonly on: boolean; readonly side: 'outbound' | 'inbound' | null } | null;
  readonly metricOverrides: readonly MetricOverride[];
}

/**
 * Istio's Sidecar for a whole namespace (no workloadSelector; in the root namespace: the mesh's
 * default): which services its proxies are given, and their outbound traffic policy.
 */
export interface SidecarObject {
  readonly kind: 'Sidecar';
  readonly meta: Meta;
  /**
   * `egress[].hosts` as `namespace/host` patterns (namespace `*`, `.` or a name; host `*`,
   * `*.suffix` or a name); null: no egress given (every service).
   */
  readonly egressHosts: readonly { readonly namespace: string; readonly host: string }[] | null;
  readonly outboundTrafficPolicy: 'ALLOW_ANY' | 'REGISTRY_ONLY' | null;
  /**
   * `workloadSelector.labels`: the Sidecar of the Pods of its namespace with these labels (over
   * the namespace's own); null: of the whole namespace (in the root namespace: the default).
   */
  readonly workloadSelector: Readonly<Record<string, string>> | null;
}

// --- traffic management ------------------------------------------------------------------------
// Hosts and destinations are resolved to Service keys (`namespace/name`) by the validator: a
// short name is relative to the object's namespace, `name.namespace` and
// `name.namespace.svc[.<cluster domain>]` name a Service. The rest is already the wire form.

/** A weighted destination of a route, its host resolved to a Service key. */
export interface RouteTarget {
  readonly service: string;
  /** The host as written, for messages. */
  readonly host: string;
  readonly port?: number;
  readonly subset?: string;
  readonly weight: number;
}

export interface VirtualServiceRoute {
  readonly name?: string;
  /** Any one matches; empty: every request. */
  readonly matches: readonly RequestMatch[];
  readonly route: readonly RouteTarget[];
  /** The VirtualService whose rules apply under these matches (then no `route`). */
  readonly delegate?: { readonly namespace: string; readonly name: string };
  readonly timeoutMs?: number;
  /** Absent: Istio's default policy; `attempts: 0`: none. */
  readonly retries?: RetryPolicy;
  readonly fault?: FaultPolicy;
  readonly requestHeaders?: HeaderOperations;
  readonly responseHeaders?: HeaderOperations;
  readonly rewrite?: RouteRewrite;
  readonly reply?: RouteReply;
  readonly cors?: CorsPolicy;
  readonly mirrors?: readonly RouteMirror[];
}

export interface VirtualServiceObject {
  readonly kind: 'VirtualService';
  readonly meta: Meta;
  /** The Services its hosts name (hosts outside the mesh's Services are left out, with a warning). */
  readonly hosts: readonly string[];
  readonly http: readonly VirtualServiceRoute[];
  readonly tcp: readonly TcpRouteRule[];
  /** `tls` rules: matches with `sniHosts`. */
  readonly tls: readonly TcpRouteRule[];
  /** `exportTo`: the namespaces whose proxies use it (`.` its own, `~` none); null: every one. */
  readonly exportTo: readonly string[] | null;
}

export interface DestinationRuleObject {
  readonly kind: 'DestinationRule';
  readonly meta: Meta;
  /** The Service its host names; null: a host outside the mesh's Services (no effect). */
  readonly host: string | null;
  readonly trafficPolicy?: TrafficPolicy;
  readonly subsets: readonly {
    readonly name: string;
    readonly labels: Readonly<Record<string, string>>;
    readonly trafficPolicy?: TrafficPolicy;
  }[];
  /** As VirtualService's. */
  readonly exportTo: readonly string[] | null;
  /**
   * `workloadSelector.matchLabels`: the rule applies only to the proxies of its namespace whose
   * Pod carries these labels (over the rules without one); null: to every proxy that looks it up.
   */
  readonly workloadSelector?: Readonly<Record<string, string>>;
}

export interface HttpRouteBackend {
  readonly service: string;
  readonly port: number;
  readonly weight: number;
}

/** What the rules of every Gateway API route have (a rule without matches has one, of any request). */
export interface GatewayRuleSpec<M> {
  readonly name?: string;
  readonly matches: readonly M[];
  readonly backends: readonly HttpRouteBackend[];
  readonly requestHeaders?: HeaderOperations;
  readonly responseHeaders?: HeaderOperations;
  /** `RequestMirror` filters. */
  readonly mirrors?: readonly RouteMirror[];
}

/** Defaults filled: a rule without matches has one match, `PathPrefix /`. */
export interface HttpRouteRuleSpec extends GatewayRuleSpec<RequestMatch> {
  /** `timeouts.request`. */
  readonly timeoutMs?: number;
  /** `timeouts.backendRequest`: each try's timeout. */
  readonly backendTimeoutMs?: number;
  readonly retry?: {
    readonly attempts?: number;
    readonly codes: readonly number[];
    readonly backoffMs?: number;
  };
  readonly rewrite?: RouteRewrite;
  readonly reply?: RouteReply;
  /** The `CORS` filter (experimental channel). */
  readonly cors?: CorsPolicy;
}

/** A Service parent of a Gateway API route (GAMMA). */
export interface RouteParent {
  readonly service: string;
  readonly port?: number;
  /** GAMMA: the name of one of the Service's ports (the route applies to that port only). */
  readonly sectionName?: string;
  readonly index: number;
}

/** A Gateway API route of kind `K` whose rules are `R`. */
interface GatewayRoute<K extends string, R> {
  readonly kind: K;
  readonly meta: Meta;
  /** The Service parents (GAMMA); Gateway parents are not the mesh's and are left out. */
  readonly parents: readonly RouteParent[];
  readonly rules: readonly R[];
  /** `metadata.generation`, for the status' `observedGeneration`. */
  readonly generation: number;
}

export type HttpRouteObject = GatewayRoute<'HTTPRoute', HttpRouteRuleSpec>;

/**
 * A GRPCRoute's match: the gRPC service and method (`Exact`: a name each, either one may be
 * absent; `RegularExpression`: a pattern each), and headers.
 */
export interface GrpcRouteMatch {
  readonly type: 'Exact' | 'RegularExpression';
  readonly service?: string;
  readonly method?: string;
  readonly headers?: readonly HeaderMatch[];
}

export type GrpcRouteRuleSpec = GatewayRuleSpec<GrpcRouteMatch>;

export type GrpcRouteObject = GatewayRoute<'GRPCRoute', GrpcRouteRuleSpec>;

/** A TCPRoute's or TLSRoute's rule: its backends, weighted (no matches, no filters). */
export interface GatewayTcpRuleSpec {
  readonly name?: string;
  readonly backends: readonly HttpRouteBackend[];
}

export type TcpRouteObject = GatewayRoute<'TCPRoute', GatewayTcpRuleSpec>;

export interface TlsRouteObject extends GatewayRoute<'TLSRoute', GatewayTcpRuleSpec> {
  /** The server names (SNI) it takes: `example.com`, `*.example.com`; empty: any. */
  readonly hostnames: readonly string[];
}

/** The Gateway API routes Mooring reads (their parents and status work alike). */
export type GatewayRouteObject =
  HttpRouteObject | GrpcRouteObject | TcpRouteObject | TlsRouteObject;

export type TrafficObject =
  | VirtualServiceObject
  | DestinationRuleObject
  | HttpRouteObject
  | GrpcRouteObject
  | TcpRouteObject
  | TlsRouteObject;

/** One of a ServiceEntry's `ports`. */
export interface ServiceEntryPort {
  readonly number: number;
  /** '' when unnamed. */
  readonly name: string;
  /** Istio's protocol as the proxy carries it (HTTPS and TLS: `tcp`, with `tls`). */
  readonly protocol: Protocol;
  /** HTTPS or TLS: the app's own TLS, told apart by the ClientHello's server name. */
  readonly tls: boolean;
  /** The endpoints' port; null: `number` (or an endpoint's own port of this name). */
  readonly targetPort: number | null;
}

export interface ServiceEntryEndpoint {
  /** An IP address (STATIC), or a DNS name or an IP address (DNS). */
  readonly address: string;
  /** The endpoint's port by the entry's port name. */
  readonly ports: Readonly<Record<string, number>>;
  readonly labels: Readonly<Record<string, string>>;
  /** MESH_INTERNAL: the endpoint is a meshed workload of this service account (mutual TLS). */
  readonly serviceAccount: string | null;
  /** `region/zone/subzone`, or null. */
  readonly locality: string | null;
}

/**
 * Istio's ServiceEntry: hosts the mesh does not learn from Kubernetes (an API outside the
 * cluster, a VM), each of its `hosts` a service of the mesh with the entry's ports and endpoints.
 */
export interface ServiceEntryObject {
  readonly kind: 'ServiceEntry';
  readonly meta: Meta;
  /** Lowercase DNS names, `*.` in front for a wildcard. */
  readonly hosts: readonly string[];
  /** Canonical addresses and CIDRs (`10.0.0.1/32`). */
  readonly addresses: readonly string[];
  readonly ports: readonly ServiceEntryPort[];
  readonly location: 'MESH_EXTERNAL' | 'MESH_INTERNAL';
  readonly resolution: 'NONE' | 'STATIC' | 'DNS';
  readonly endpoints: readonly ServiceEntryEndpoint[];
  /** The namespaces whose proxies see it; null: every one. */
  readonly exportTo: readonly string[] | null;
  /**
   * `workloadSelector.labels`: the endpoints are the Pods of its namespace with these labels (in
   * place of `endpoints`); null: none.
   */
  readonly workloadSelector: Readonly<Record<string, string>> | null;
}

export type MeshObject =
  | ServiceObject
  | EndpointSliceObject
  | PodObject
  | PeerAuthenticationObject
  | AuthorizationPolicyObject
  | RequestAuthenticationObject
  | ServiceEntryObject
  | SidecarObject
  | NodeObject
  | TelemetryObject
  | WorkloadEntryObject
  | TrafficObject;

export const refOf = (obj: MeshObject): ObjectRef => ({
  kind: obj.kind,
  namespace: obj.meta.namespace,
  name: obj.meta.name,
});

/** Istio's locality labels: a Node's topology, and a Pod's own `istio-locality` over it. */
export const REGION_LABELS = [
  'topology.kubernetes.io/region',
  'failure-domain.beta.kubernetes.io/region',
];
export const ZONE_LABELS = [
  'topology.kubernetes.io/zone',
  'failure-domain.beta.kubernetes.io/zone',
];
export const SUBZONE_LABEL = 'topology.istio.io/subzone';
export const POD_LOCALITY_LABEL = 'istio-locality';

/** `region/zone/subzone` from a Node's labels (the first of each part's labels that is set). */
export function nodeLocality(labels: Readonly<Record<string, string>>): string {
  const first = (keys: readonly string[]): string => {
    for (const k of keys) {
      const v = labels[k];
      if (v !== undefined && v !== '') return v;
    }
    return '';
  };
  return `${first(REGION_LABELS)}/${first(ZONE_LABELS)}/${first([SUBZONE_LABEL])}`;
}

/** A Pod's `istio-locality` label (`region.zone.subzone`, dots as labels cannot hold `/`). */
export function podLocality(labels: Readonly<Record<string, string>>): string | null {
  const value = labels[POD_LOCALITY_LABEL];
  if (value === undefined || value === '') return null;
  const [region = '', zone = '', subzone = ''] = value.split('.');
  return `${region}/${zone}/${subzone}`;
}

/** True when every label of `selector` is on `labels` with the same value. */
export function selectorMatches(
  selector: Readonly<Record<string, string>>,
  labels: Readonly<Record<string, string>>,
): boolean {
  for (const [key, value] of Object.entries(selector)) {
    if (labels[key] !== value) return false;
  }
  return true;
}

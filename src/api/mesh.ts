// The mesh configuration the server pushes to every proxy (`mooring serve` -> `mooring agent`),
// one wire contract for both ends. Shaped like Envoy's configuration, in Mooring's words:
// services (listeners and clusters: addresses, ports, protocols) -> routes -> endpoints, each a
// plain JSON value that the proxy compiles once into lookup tables.
//
// Transport: `GET /v1/mesh/watch` on the server's HTTPS port, authenticated like the CA API with
// the workload's service-account token (`Authorization: Bearer ...`). The query names the Pod
// (`pod`, `namespace`, `ip`); the server refuses a Pod outside the token's namespace or run by
// another service account. The answer is `application/x-ndjson`: one `MeshMessage` per line,
// first a `snapshot`, then `delta`s (only the resources that changed, after a short debounce),
// and `heartbeat`s while nothing changes so that the agent can tell a dead stream from a quiet
// mesh. A stream that ends is resumed with a new request; its first message is a new snapshot.
// Versions only grow within one server process; the agent keeps its last good configuration while
// the server is away.
//
// Pure: types, constants and a structural check of what arrives. No I/O.

export const MESH_API_VERSION = 'mooring.dev/mesh/v1';
export const MESH_WATCH_PATH = '/v1/mesh/watch';
export const MESH_CONTENT_TYPE = 'application/x-ndjson';
/** The server sends a heartbeat at least this often while nothing changes. */
export const MESH_HEARTBEAT_MS = 15_000;
/** The agent treats a stream silent for this long as dead and reconnects. */
export const MESH_STREAM_IDLE_MS = 45_000;

/**
 * How the proxy carries a port. `http`: HTTP/1.1 (and an `Upgrade` such as WebSocket); `http2`:
 * HTTP/2 (h2c from the app); `grpc`: HTTP/2 with trailers; `tcp`: opaque bytes, never sniffed (a
 * server-first protocol works at once); `unknown`: sniffed from the client's first bytes, opaque
 * TCP after a short wait (`settings.protocolDetectionTimeoutMs`).
 */
export type Protocol = 'http' | 'http2' | 'grpc' | 'tcp' | 'unknown';
export const PROTOCOLS: readonly Protocol[] = ['http', 'http2', 'grpc', 'tcp', 'unknown'];

/** PeerAuthentication's `mtls.mode` (UNSET resolves to the parent's mode before it is sent). */
export type MtlsMode = 'PERMISSIVE' | 'STRICT' | 'DISABLE';
export const MTLS_MODES: readonly MtlsMode[] = ['PERMISSIVE', 'STRICT', 'DISABLE'];

/** Who a workload is, for metric labels and span attributes (Istio's `unknown` when absent). */
export interface WorkloadInfo {
  /** The workload's name: the Deployment (ReplicaSet owner), StatefulSet, Job... or the Pod. */
  readonly name: string;
  readonly namespace: string;
  /** The `app` (or `app.kubernetes.io/name`) label. */
  readonly app: string | null;
  /** The `version` (or `app.kubernetes.io/version`) label. */
  readonly version: string | null;
}

// ---------------------------------------------------------------------------------------------
// Traffic management (VirtualService, DestinationRule, HTTPRoute), compiled by the server from
// whichever object applies to a host. Durations are milliseconds; a percentage is 0-100.

export type StringMatch =
  { readonly exact: string } | { readonly prefix: string } | { readonly regex: string };

export interface HeaderMatch {
  /** Lowercase header name. */
  readonly name: string;
  /** Absent: the header must be present (any value). */
  readonly value?: StringMatch;
  /** True: the request matches when this header does NOT match (Istio's `withoutHeaders`). */
  readonly invert?: boolean;
}

export interface RequestMatch {
  readonly uri?: StringMatch;
  /**
   * Gateway API's `PathPrefix`: the path's segments start with these (`/foo` matches `/foo`,
   * `/foo/` and `/foo/bar`, not `/foobar`); the query is not part of the path.
   */
  readonly pathPrefix?: string;
  /** The service port the request came in on (Istio's `match.port`, a HTTPRoute parentRef's port). */
  readonly port?: number;
  readonly method?: StringMatch;
  /** Istio's `authority`: the Host header (`:authority`) as the client sent it. */
  readonly authority?: StringMatch;
  /** Istio's `scheme`: `http` for what an app sends through its sidecar. */
  readonly scheme?: StringMatch;
  readonly headers?: readonly HeaderMatch[];
  readonly queryParams?: readonly { readonly name: string; readonly value?: StringMatch }[];
  /**
   * Istio's `sourceLabels` and `sourceNamespace`: the calling Pod's. Each proxy keeps only the
   * matches its own Pod meets (and drops these conditions from them) when it takes a
   * configuration: the request path never reads them.
   */
  readonly sourceLabels?: Readonly<Record<string, string>>;
  readonly sourceNamespace?: string;
}

export interface RouteDestination {
  /** The destination service's key, `<namespace>/<name>` (a key of the snapshot's services). */
  readonly service: string;
  /** The service port; absent: the port the request came in on. */
  readonly port?: number;
  /** A subset of the service's DestinationRule. */
  readonly subset?: string;
  /** Relative weight; the weights of one rule need not add up to 100. */
  readonly weight: number;
}

export interface RetryPolicy {
  /** Retries after the first try (Istio's `attempts`). 0: no retry. */
  readonly attempts: number;
  readonly perTryTimeoutMs?: number;
  /** Envoy's conditions: `5xx`, `gateway-error`, `connect-failure`, `refused-stream`, `reset`,... */
  readonly retryOn: readonly string[];
  /** For `retriable-status-codes` (and HTTPRoute's `retry.codes`). */
  readonly retriableStatusCodes?: readonly number[];
  /** HTTPRoute's `retry.backoff`; Envoy's default base interval is 25 ms. */
  readonly backoffBaseMs?: number;
}

export interface FaultPolicy {
  readonly delay?: { readonly fixedDelayMs: number; readonly percent: number };
  /**
   * With `grpcStatus` (Istio's `abort.grpcStatus`), a gRPC request gets that status in a
   * trailers-only answer, any other the HTTP status gRPC maps it to (`httpStatus`).
   */
  readonly abort?: {
    readonly httpStatus: number;
    readonly percent: number;
    readonly grpcStatus?: number;
  };
}

export interface HeaderOperations {
  readonly set?: readonly { readonly name: string; readonly value: string }[];
  readonly add?: readonly { readonly name: string; readonly value: string }[];
  readonly remove?: readonly string[];
}

/**
 * A route the proxy answers itself: Istio's `redirect` and `directResponse`, Gateway API's
 * `RequestRedirect` filter.
 */
export type RouteReply =
  | {
      readonly kind: 'redirect';
      /** 301, 302, 303, 307 or 308. */
      readonly status: number;
      /** The Location's scheme; absent: the request's (`http`, as the app sent it). */
      readonly scheme?: string;
      /** The Location's host; absent: the request's. */
      readonly host?: string;
      /**
       * The Location's port: a number; `scheme`, the scheme's own (80, 443: then none is
       * written); `request`, the request's Host as it came (kept only with the request's host);
       * `service`, the Service port (Gateway API's listener port, for a mesh).
       */
      readonly port: number | 'scheme' | 'request' | 'service';
      /** The path, as a rewrite replaces it (the query is kept); absent: the request's. */
      readonly path?: RouteRewrite;
    }
  | {
      readonly kind: 'direct';
      readonly status: number;
      readonly body: string;
      /** `base64`: `body` is Istio's `body.bytes`, the bytes sent as they are. */
      readonly encoding?: 'base64';
    };

/**
 * Istio's `corsPolicy`: a request from an allowed origin gets the CORS headers on its answer; a
 * preflight from one is answered by the proxy (200), never sent on.
 */
export interface CorsPolicy {
  readonly allowOrigins: readonly StringMatch[];
  readonly allowMethods: readonly string[];
  readonly allowHeaders: readonly string[];
  readonly exposeHeaders: readonly string[];
  readonly maxAgeSeconds?: number;
  readonly allowCredentials: boolean;
  /**
   * Istio's `unmatchedPreflights: IGNORE` (Envoy's `forward_not_matching_preflights: false`): a
   * preflight from an origin not allowed is answered 200 by the proxy, without CORS headers,
   * instead of going to the app.
   */
  readonly ignoreUnmatchedPreflights?: true;
}

export interface HttpRouteRule {
  /** For logs, metrics and the config dump. */
  readonly name?: string;
  /** Any one matches (OR); empty: every request. */
  readonly matches: readonly RequestMatch[];
  readonly destinations: readonly RouteDestination[];
  /**
   * The answer when the destination drawn is no Service of the mesh, or when the weights add up
   * to 0: HTTPRoute's 500, GRPCRoute's 503 (UNAVAILABLE); absent: 503 and 500 (VirtualService).
   */
  readonly noBackendStatus?: 500 | 503;
  /** Whole-request timeout; absent: none (Istio's default for HTTP). */
  readonly timeoutMs?: number;
  readonly retries?: RetryPolicy;
  readonly fault?: FaultPolicy;
  readonly requestHeaders?: HeaderOperations;
  /** On the upstream's answer (not on the proxy's own replies), before it reaches the client. */
  readonly responseHeaders?: HeaderOperations;
  /** The proxy answers itself, and no destination gets the request. */
  readonly reply?: RouteReply;
  /** Istio's `corsPolicy` (Envoy's CORS filter). */
  readonly cors?: CorsPolicy;
  /** Path and authority rewrite, after the match and before the request leaves. */
  readonly rewrite?: RouteRewrite;
  /** Copies of the request sent to these destinations too, their answers dropped. */
  readonly mirrors?: readonly RouteMirror[];
}

/**
 * Istio's `mirror` / `mirrors` and Gateway API's `RequestMirror`: a share of a rule's requests is
 * also sent, fire and forget, to another destination (Envoy's request mirror policy: the copy's
 * `Host` / `:authority` gets `-shadow` after its host name).
 */
export interface RouteMirror {
  /** The Service's key, `<namespace>/<name>`. */
  readonly service: string;
  /** The service port; absent: the port the request came in on. */
  readonly port?: number;
  readonly subset?: string;
  /** The share of requests copied, 0 to 100 (fractions allowed). */
  readonly percent: number;
}

/**
 * Istio's `rewrite` and Gateway API's `URLRewrite`. `prefix` replaces what the matching match
 * matched of the path (its `uri.prefix`, its `pathPrefix` segment by segment, its `uri.exact`;
 * `/` when the match has no path condition; the whole path for a regex); `fullPath` replaces the
 * whole path. The query is kept either way.
 */
export interface RouteRewrite {
  readonly prefix?: string;
  readonly fullPath?: string;
  /**
   * Istio's `uriRegexRewrite`: every match of `match` in the path (not the query) replaced by
   * `rewrite`, which names groups `\\1`, `\\2`... (RE2's, Envoy's regex_rewrite).
   */
  readonly regex?: { readonly match: string; readonly rewrite: string };
  /** The new `Host` / `:authority`. */
  readonly authority?: string;
}

/** The routes of one host (one service), in order: the first rule that matches wins. */
/**
 * A VirtualService's `tcp` routes for a Service: an opaque TCP connection goes to the
 * destinations of the first rule one of whose matches it meets, by weight.
 */
export interface TcpRouteTable {
  /** A VirtualService, or the oldest of the TCPRoutes (TLSRoutes) attached to the Service. */
  readonly source: {
    readonly kind: 'VirtualService' | 'TCPRoute' | 'TLSRoute';
    readonly namespace: string;
    readonly name: string;
  };
  /** The younger routes whose rules follow the source's. */
  readonly merged?: readonly { readonly namespace: string; readonly name: string }[];
  readonly rules: readonly TcpRouteRule[];
}

export interface TcpRouteRule {
  /** Any one matches; empty: every connection. `sourceLabels`/`sourceNamespace` as for HTTP. */
  readonly matches: readonly {
    readonly port?: number;
    readonly sourceLabels?: Readonly<Record<string, string>>;
    readonly sourceNamespace?: string;
    /**
     * A `tls` rule's server names (SNI of the ClientHello): `example.com`, `*.example.com` (any
     * name under it) or `*` (any).
     */
    readonly sniHosts?: readonly string[];
    /** The connection's original destination address is in one of these CIDRs (canonical). */
    readonly destinationSubnets?: readonly string[];
    /** The connection's source address (the app's, in this Pod) is in this CIDR. */
    readonly sourceSubnet?: string;
  }[];
  readonly destinations: readonly RouteDestination[];
}

export interface HttpRouteTable {
  /** Where the rules come from, for the config dump and logs. */
  readonly source: {
    readonly kind: 'VirtualService' | 'HTTPRoute' | 'GRPCRoute';
    readonly namespace: string;
    readonly name: string;
  };
  /** Service ports the table applies to; absent: every HTTP port of the service. */
  readonly ports?: readonly number[];
  readonly rules: readonly HttpRouteRule[];
  /**
   * With HTTPRoutes, every route merged into this table (the `source` is the first); the rules
   * are then in Gateway API's precedence order across them.
   */
  readonly merged?: readonly {
    /** Absent: an HTTPRoute. */
    readonly kind?: 'HTTPRoute' | 'GRPCRoute';
    readonly namespace: string;
    readonly name: string;
  }[];
  /**
   * Objects that name this host too and lose to `source` (a younger VirtualService, any
   * HTTPRoute when a VirtualService exists), with why: the precedence made visible.
   */
  readonly shadowed?: readonly {
    readonly kind: 'VirtualService' | 'HTTPRoute' | 'GRPCRoute';
    readonly namespace: string;
    readonly name: string;
    readonly reason: string;
  }[];
}

export type LoadBalancer = 'LEAST_REQUEST' | 'ROUND_ROBIN' | 'RANDOM';

export interface ConnectionPoolPolicy {
  readonly tcp?: {
    readonly maxConnections?: number;
    readonly connectTimeoutMs?: number;
    /** An opaque TCP connection with no bytes either way for this long is closed; 0: never. */
    readonly idleTimeoutMs?: number;
    /**
     * Upstream connections live at most this long: an opaque TCP one is closed, an HTTP one takes
     * no new request (a new connection is opened).
     */
    readonly maxConnectionDurationMs?: number;
    /** Istio's `tcpKeepalive`: TCP keepalive on upstream connections. */
    readonly keepalive?: TcpKeepalive;
  };
  readonly http?: {
    readonly http1MaxPendingRequests?: number;
    readonly maxRequestsPerConnection?: number;
    readonly maxRetries?: number;
    /**
     * An upstream HTTP/1.1 connection or HTTP/2 session with no request on it for this long is
     * closed; 0: never. Unset: the proxy's own (60 s).
     */
    readonly idleTimeoutMs?: number;
  };
}

/**
 * TCP keepalive (SO_KEEPALIVE) with, when set, the idle time before the first probe
 * (TCP_KEEPIDLE), the time between probes (TCP_KEEPINTVL) and how many go unanswered before the
 * connection is dropped (TCP_KEEPCNT); unset: the system's (Linux: 7200 s, 75 s, 9).
 */
export interface TcpKeepalive {
  readonly timeS?: number;
  readonly intervalS?: number;
  readonly probes?: number;
}

export interface OutlierDetectionPolicy {
  readonly consecutive5xxErrors?: number;
  readonly consecutiveGatewayErrors?: number;
  readonly intervalMs?: number;
  readonly baseEjectionTimeMs?: number;
  readonly maxEjectionPercent?: number;
}

/**
 * Istio's `loadBalancer.consistentHash`: what a request is hashed on (one of them). Requests with
 * the same value go to the same endpoint while the endpoints stay; without one, any endpoint.
 */
export interface ConsistentHash {
  /** `httpHeaderName`, lower-cased. */
  readonly header?: string;
  /** `httpCookie`; with a `ttlMs`, a request without the cookie is given one (0: a session cookie). */
  readonly cookie?: { readonly name: string; readonly path?: string; readonly ttlMs?: number };
  /** `useSourceIp`: the client's address (for a sidecar, its own Pod's: one endpoint per caller). */
  readonly sourceIp?: boolean;
  /** `httpQueryParameterName`. */
  readonly queryParameter?: string;
}

/** One port's part of a traffic policy (Istio's `portLevelSettings`). */
export interface PortTrafficPolicy {
  readonly port: number;
  readonly loadBalancer?: LoadBalancer;
  readonly consistentHash?: ConsistentHash;
  readonly connectionPool?: ConnectionPoolPolicy;
  readonly outlierDetection?: OutlierDetectionPolicy;
  readonly tls?: TlsPolicy;
  readonly localityLb?: LocalityLbSetting;
}

/**
 * A DestinationRule's `tls`: `ISTIO_MUTUAL`, mutual TLS with the mesh's certificates to a meshed
 * endpoint (what Mooring does anyway); `DISABLE`, plain text to every endpoint; `SIMPLE` and
 * `MUTUAL`, TLS the proxy originates (the app speaking plain text to it), with a client
 * certificate for `MUTUAL`.
 */
export interface TlsPolicy {
  readonly mode: 'ISTIO_MUTUAL' | 'DISABLE' | 'SIMPLE' | 'MUTUAL';
  /** The server name sent (SNI); checked on the certificate when no `subjectAltNames`. */
  readonly sni?: string;
  /** Names one of which the server's certificate must carry. */
  readonly subjectAltNames?: readonly string[];
  /** PEM files in the proxy's container: the roots (absent: Node's bundled ones)... */
  readonly caCertificates?: string;
  /** ...revocation lists, one for each CA of the server's chain (a certificate listed fails)... */
  readonly caCrl?: string;
  /** ...and, for MUTUAL, the client's certificate chain and key. */
  readonly clientCertificate?: string;
  readonly privateKey?: string;
  /** No check of the server's chain or name. */
  readonly insecureSkipVerify?: true;
}

/**
 * Istio's `loadBalancer.localityLbSetting`. Localities are `region/zone/subzone`; in `from` and
 * `to`, a `*` stands for any value of its part and of those after it.
 */
export interface LocalityLbSetting {
  /** false: no locality balancing for this traffic (Istio's mesh default is on). */
  readonly enabled?: boolean;
  /**
   * Weighted distribution: for a caller in a locality the first entry's `from` matches, the share
   * of traffic (percent) each `to` pattern gets, split evenly among the localities it matches.
   */
  readonly distribute?: readonly {
    readonly from: string;
    readonly to: Readonly<Record<string, number>>;
  }[];
  /** Regions to fail over to, after the caller's own region, for a caller in `from`. */
  readonly failover?: readonly { readonly from: string; readonly to: string }[];
  /**
   * Failover by the topology labels named, in order (`topology.kubernetes.io/region`,
   * `topology.kubernetes.io/zone`, `topology.istio.io/subzone`, and `topology.istio.io/network`
   * or `topology.istio.io/cluster`, the same for every endpoint of one cluster).
   */
  readonly failoverPriority?: readonly string[];
}

export interface TrafficPolicy {
  /** Per service port: replaces, for requests to that port, the settings it gives. */
  readonly portLevelSettings?: readonly PortTrafficPolicy[];
  readonly loadBalancer?: LoadBalancer;
  /** In place of `loadBalancer` (Istio's `simple` and `consistentHash` are one or the other). */
  readonly consistentHash?: ConsistentHash;
  readonly connectionPool?: ConnectionPoolPolicy;
  readonly outlierDetection?: OutlierDetectionPolicy;
  readonly tls?: TlsPolicy;
  readonly localityLb?: LocalityLbSetting;
}

export interface DestinationPolicy {
  readonly source: { readonly namespace: string; readonly name: string };
  /**
   * Younger DestinationRules of the source's namespace, exported alike, merged into it (their
   * subsets added, the host-wide policy the first one's that has it).
   */
  readonly merged?: readonly { readonly namespace: string; readonly name: string }[];
  /** DestinationRules for the same host not used (later in the lookup, or not merged), with why. */
  readonly shadowed?: readonly {
    readonly namespace: string;
    readonly name: string;
    readonly reason: string;
  }[];
  /** The host-wide policy. */
  readonly trafficPolicy?: TrafficPolicy;
  /** Subsets by name; each endpoint lists the subsets it belongs to (`Endpoint.subsets`). */
  readonly subsets?: readonly { readonly name: string; readonly trafficPolicy?: TrafficPolicy }[];
  /**
   * DestinationRules of the proxy's namespace with a `workloadSelector`, oldest first: a proxy
   * whose Pod carries a rule's labels takes that rule's host-wide policy in place of `trafficPolicy`
   * (the first one that selects it).
   */
  readonly workloads?: readonly {
    readonly source: { readonly namespace: string; readonly name: string };
    readonly selector: Readonly<Record<string, string>>;
    readonly trafficPolicy?: TrafficPolicy;
  }[];
}

// ---------------------------------------------------------------------------------------------
// Services and endpoints.

export interface ServicePort {
  readonly port: number;
  /** The Service port's name; '' when the Service has one unnamed port. */
  readonly name: string;
  readonly protocol: Protocol;
  /**
   * A ServiceEntry's HTTPS or TLS port: the app's own TLS (carried as `tcp`), told apart by the
   * ClientHello's server name when the entry has no address.
   */
  readonly tls?: true;
}

/**
 * What a service from a ServiceEntry has that a Kubernetes Service has not. Its `key` is what
 * rules naming its host resolve to (the host, or `org/httpbin` for `httpbin.org`), `name` and
 * `hostname` the host, `namespace` the entry's.
 */
export interface ServiceEntryFacts {
  readonly source: { readonly namespace: string; readonly name: string };
  /** MESH_EXTERNAL: outside the mesh (plain text unless a DestinationRule originates TLS). */
  readonly location: 'MESH_EXTERNAL' | 'MESH_INTERNAL';
  /**
   * NONE: a connection goes to the address the app dialled (no endpoints); STATIC: to
   * `endpoints`; DNS: to `endpoints` (the host itself when the entry lists none), whose addresses
   * the proxy resolves when it connects.
   */
  readonly resolution: 'NONE' | 'STATIC' | 'DNS';
  /**
   * The entry's CIDRs wider than one address (single addresses are in `addresses`). Without
   * `addresses` and `subnets`, a connection is matched by its port: the ClientHello's server name
   * on a `tls` port, the first request's Host on an HTTP one, the port alone on a TCP one.
   */
  readonly subnets?: readonly string[];
}

export interface Endpoint {
  readonly address: string;
  /** The endpoint's port for each service port, by service port number. */
  readonly ports: Readonly<Record<string, number>>;
  /** False while the endpoint is terminating (EndpointSlice `serving` but not `ready`). */
  readonly ready: boolean;
  /**
   * The SPIFFE ID the endpoint must present, when it is meshed (its Pod carries
   * `mooring.dev/status`) and accepts mutual TLS; null: connect in plain text.
   */
  readonly identity: string | null;
  /**
   * Endpoint (container) ports on which a meshed endpoint takes plain text (`portLevelMtls`
   * DISABLE); absent when it takes mutual TLS on each of its ports.
   */
  readonly plaintextPorts?: readonly number[];
  readonly workload: WorkloadInfo | null;
  readonly pod: string | null;
  /** The DestinationRule subsets whose labels this endpoint's Pod carries. */
  readonly subsets?: readonly string[];
  /**
   * `region/zone/subzone` (parts may be empty): the Pod's `istio-locality` label, else its
   * Node's topology labels (the EndpointSlice's `zone` when the Node is unknown); a
   * ServiceEntry endpoint's `locality`. Absent: unknown.
   */
  readonly locality?: string;
}

export interface MeshService {
  /** `<namespace>/<name>`. */
  readonly key: string;
  readonly name: string;
  readonly namespace: string;
  /** `<name>.<namespace>.svc.<cluster domain>`. */
  readonly hostname: string;
  /** ClusterIPs (IPv4 and IPv6); empty for a headless Service (its endpoints are dialled). */
  readonly addresses: readonly string[];
  readonly ports: readonly ServicePort[];
  readonly endpoints: readonly Endpoint[];
  readonly routes?: HttpRouteTable;
  readonly tcpRoutes?: TcpRouteTable;
  /**
   * A VirtualService's `tls` routes: a TLS connection whose server name a rule's match names goes
   * to that rule's destinations; any other connection follows the tcp routes (or the Service).
   */
  readonly tlsRoutes?: TcpRouteTable;
  readonly policy?: DestinationPolicy;
  /** Present for a ServiceEntry's host. */
  readonly entry?: ServiceEntryFacts;
  /**
   * The Service's `trafficDistribution` PreferClose (or PreferSameZone, PreferSameNode): its
   * endpoints nearest the caller first, the farther ones when none is left, as Istio does.
   */
  readonly preferClose?: true;
}

// ---------------------------------------------------------------------------------------------
// What one proxy is, and mesh-wide settings.

// ---------------------------------------------------------------------------------------------
// Authorization (Istio's AuthorizationPolicy), as the proxy enforces it on its inbound side.
// Every list is an "any of" its entries; every field given in one entry must match; an absent or
// empty field matches anything. Strings match as Istio's do: exact, `prefix*`, `*suffix`, or `*`
// (any value, but not none: a principal needs a verified peer).

/** `rules[].from[].source`. Principals are SPIFFE IDs without `spiffe://`. */
export interface AuthorizationSource {
  readonly principals?: readonly string[];
  readonly notPrincipals?: readonly string[];
  /** The request's JWT, `<iss>/<sub>` (RequestAuthentication): HTTP only. */
  readonly requestPrincipals?: readonly string[];
  readonly notRequestPrincipals?: readonly string[];
  readonly namespaces?: readonly string[];
  readonly notNamespaces?: readonly string[];
  /** CIDRs (canonical): the connection's source address. */
  readonly ipBlocks?: readonly string[];
  readonly notIpBlocks?: readonly string[];
  /** CIDRs: the original client's address (the connection's: no trusted proxy in front). */
  readonly remoteIpBlocks?: readonly string[];
  readonly notRemoteIpBlocks?: readonly string[];
}

/** `rules[].to[].operation`. `hosts`, `methods` and `paths` are HTTP only. */
export interface AuthorizationOperation {
  readonly hosts?: readonly string[];
  readonly notHosts?: readonly string[];
  /** The workload's own ports (the connections' original destination port). */
  readonly ports?: readonly number[];
  readonly notPorts?: readonly number[];
  readonly methods?: readonly string[];
  readonly notMethods?: readonly string[];
  readonly paths?: readonly string[];
  readonly notPaths?: readonly string[];
}

/**
 * `rules[].when[]`: `source.ip`, `remote.ip`, `destination.ip` (CIDRs), `destination.port`,
 * `source.namespace`, `source.principal`, or, HTTP only, `request.headers[<name>]` (the name
 * lowercase) and the request's JWT: `request.auth.principal`, `request.auth.audiences`,
 * `request.auth.presenter`, `request.auth.claims[<name>]` (`[a][b]` for a nested claim).
 */
export interface AuthorizationCondition {
  readonly key: string;
  readonly values?: readonly string[];
  readonly notValues?: readonly string[];
}

export interface AuthorizationRule {
  readonly from?: readonly AuthorizationSource[];
  readonly to?: readonly AuthorizationOperation[];
  /** Every condition must match. */
  readonly when?: readonly AuthorizationCondition[];
}

/** One AuthorizationPolicy that applies to this workload. */
export interface AuthorizationPolicyRules {
  /** `namespace/name`, for the config dump and the logs. */
  readonly name: string;
  readonly action: 'ALLOW' | 'DENY';
  /** Any one matches; none: the policy matches no request. */
  readonly rules: readonly AuthorizationRule[];
}

// ---------------------------------------------------------------------------------------------
// Request authentication (Istio's RequestAuthentication): the JWTs the proxy verifies on its
// inbound side. A request with a token that fails is refused (401); one without is let through
// with no request principal (an AuthorizationPolicy decides).

/** Where a token is looked for: a header (its value after `prefix`), a query parameter, a cookie. */
export interface JwtLocations {
  readonly headers: readonly { readonly name: string; readonly prefix: string }[];
  readonly params: readonly string[];
  readonly cookies: readonly string[];
}

export interface JwtProvider {
  /** `namespace/name` of the RequestAuthentication, for the config dump and the logs. */
  readonly source: string;
  /** The token's `iss` must be this. */
  readonly issuer: string;
  /** The token's `aud` must name one of these; absent: not checked. */
  readonly audiences?: readonly string[];
  /**
   * The JSON Web Key Set (its JSON text), inlined by the server (`jwks`, or fetched from
   * `jwksUri` or the issuer's OpenID configuration); null while it could not be had: every token
   * of this issuer fails (as Istio's stand-in key does).
   */
  readonly jwks: string | null;
  /** Absent: `Authorization: Bearer <token>` and the `access_token` query parameter. */
  readonly locations?: JwtLocations;
  /** Keep the header the token came in (else it is removed before the app). */
  readonly forwardOriginalToken?: true;
  /** A header given the verified payload (base64url JSON). */
  readonly outputPayloadToHeader?: string;
  /** Headers given a claim's value each. */
  readonly outputClaimToHeaders?: readonly { readonly header: string; readonly claim: string }[];
}

export interface InboundPolicy {
  /** The resolved PeerAuthentication mode of this workload. */
  readonly mtlsMode: MtlsMode;
  /** `portLevelMtls`, by container port. */
  readonly portMtls?: Readonly<Record<string, MtlsMode>>;
  /** Protocols of this Pod's ports, from the Services that select it (others: sniffed). */
  readonly ports?: readonly { readonly port: number; readonly protocol: Protocol }[];
  /** Where the mode comes from, for the config dump. */
  readonly source?: string;
  /**
   * The AuthorizationPolicies of this workload, by name: a request a DENY policy matches is
   * refused; with an ALLOW policy, only what one of them matches is let through. Absent: none.
   */
  readonly authorization?: readonly AuthorizationPolicyRules[];
  /** The RequestAuthentications of this workload, their rules merged. Absent: none. */
  readonly jwt?: readonly JwtProvider[];
}

export interface ProxyScope {
  readonly pod: { readonly name: string; readonly namespace: string; readonly ip: string | null };
  /** The SPIFFE ID the proxy's own certificate carries. */
  readonly identity: string;
  readonly workload: WorkloadInfo;
  /** The Pod's labels (a route match's `sourceLabels`). */
  readonly labels?: Readonly<Record<string, string>>;
  readonly inbound: InboundPolicy;
  /** Per Pod `proxy.mooring.dev/trace-sampling`, overriding the mesh's percentage. */
  readonly traceSamplingPercent?: number;
  /** Per Pod `proxy.mooring.dev/access-log`, overriding the mesh's setting. */
  readonly accessLog?: boolean;
  /** Its namespace's Sidecar's `outboundTrafficPolicy.mode`, over the mesh's. */
  readonly outboundTrafficPolicy?: 'ALLOW_ANY' | 'REGISTRY_ONLY';
  /** The Pod's `region/zone/subzone` (as an endpoint's `locality`); absent: unknown. */
  readonly locality?: string;
  /** A Telemetry's `accessLogging` `match.mode` CLIENT or SERVER: only that side is logged. */
  readonly accessLogSide?: 'outbound' | 'inbound';
  /** Telemetry `metrics.overrides` for this workload, the most specific last. */
  readonly metricOverrides?: readonly MetricOverride[];
}

/** Istio's standard metrics, as Telemetry `metrics.overrides[].match.metric` names them. */
export const ISTIO_METRICS = {
  REQUEST_COUNT: 'istio_requests_total',
  REQUEST_DURATION: 'istio_request_duration_milliseconds',
  REQUEST_SIZE: 'istio_request_bytes',
  RESPONSE_SIZE: 'istio_response_bytes',
  TCP_OPENED_CONNECTIONS: 'istio_tcp_connections_opened_total',
  TCP_CLOSED_CONNECTIONS: 'istio_tcp_connections_closed_total',
  TCP_SENT_BYTES: 'istio_tcp_sent_bytes_total',
  TCP_RECEIVED_BYTES: 'istio_tcp_received_bytes_total',
} as const;

/**
 * One Telemetry metrics override: for a metric (or all) on one side (`CLIENT`, the reporter
 * `source`; `SERVER`, `destination`; or both), off, or some of its labels removed (the series
 * they told apart summed).
 */
export interface MetricOverride {
  readonly metric: keyof typeof ISTIO_METRICS | 'ALL_METRICS';
  readonly mode: 'CLIENT' | 'SERVER' | 'CLIENT_AND_SERVER';
  /** true: not reported; false: reported again (over a less specific override). */
  readonly disabled?: boolean;
  readonly removeTags?: readonly string[];
}

export interface MeshSettings {
  readonly trustDomain: string;
  /** How long an undeclared port waits for the client's first bytes before it is opaque TCP. */
  readonly protocolDetectionTimeoutMs: number;
  readonly tracing: {
    /** OTLP/HTTP base URL; spans go to `<base>/v1/traces`. null: no export. */
    readonly otlpEndpoint: string | null;
    readonly samplingPercent: number;
  };
  readonly accessLog: boolean;
  /**
   * Istio's `outboundTrafficPolicy.mode`: REGISTRY_ONLY closes outbound connections to a
   * destination the mesh does not know (no passthrough). Absent: ALLOW_ANY.
   */
  readonly outboundTrafficPolicy?: 'REGISTRY_ONLY';
}

export type MeshMessage =
  | {
      readonly type: 'snapshot';
      readonly apiVersion: typeof MESH_API_VERSION;
      readonly version: number;
      readonly proxy: ProxyScope;
      readonly settings: MeshSettings;
      readonly services: readonly MeshService[];
    }
  | {
      readonly type: 'delta';
      readonly apiVersion: typeof MESH_API_VERSION;
      readonly version: number;
      /** Present when it changed. */
      readonly proxy?: ProxyScope;
      readonly settings?: MeshSettings;
      /** Services added or changed: each replaces the one with the same key. */
      readonly services?: readonly MeshService[];
      /** Keys of services removed. */
      readonly removed?: readonly string[];
    }
  | {
      readonly type: 'heartbeat';
      readonly apiVersion: typeof MESH_API_VERSION;
      /**
       * The version the proxy is up to date with: above that of its last snapshot or delta when
       * what changed since concerned it not (another namespace's Service not exported to it).
       * Not a sign of a missed message.
       */
      readonly version: number;
    };

// ---------------------------------------------------------------------------------------------
// Debug views: the server's admin port shows what it pushes to each Pod; the proxy's own admin
// port (127.0.0.1:15000, like Envoy's) shows what it holds. Both put the configuration under
// `mesh` in the same shape, so that `mooring proxy-config` prints either.

export const PROXY_ADMIN_PORT = 15000;
/** On the proxy's admin port: `{"source": "proxy", "mesh": MeshConfigDump, ...}`. */
export const PROXY_CONFIG_DUMP_PATH = '/config_dump';
/** On the server's admin port. */
export const MESH_DEBUG_PATHS = {
  /** Every connected proxy: version sent, connected since. */
  syncz: '/debug/mesh/syncz',
  /** `?pod=<namespace>/<name>`: `{"source": "server", "mesh": MeshConfigDump, "streams": [...]}`. */
  configDump: '/debug/mesh/config_dump',
  /** The objects read, and those that are invalid. */
  objects: '/debug/mesh/objects',
} as const;

/** A proxy's configuration as JSON (a MeshState with its services as a list, by key). */
export interface MeshConfigDump {
  readonly version: number;
  readonly proxy: ProxyScope;
  readonly settings: MeshSettings;
  readonly services: readonly MeshService[];
}

export function meshConfigDump(state: MeshState): MeshConfigDump {
  return {
    version: state.version,
    proxy: state.proxy,
    settings: state.settings,
    services: [...state.services.values()].sort((a, b) => (a.key < b.key ? -1 : 1)),
  };
}

/** The whole configuration of one proxy: a snapshot with the deltas since applied. */
export interface MeshState {
  readonly version: number;
  readonly proxy: ProxyScope;
  readonly settings: MeshSettings;
  readonly services: ReadonlyMap<string, MeshService>;
}

export class MeshMessageError extends Error {
  override readonly name = 'MeshMessageError';
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Checks the envelope of one line of the stream (type, apiVersion, version, the presence of the
 * parts each type needs) and returns it typed; throws MeshMessageError naming what is wrong.
 * The server is trusted (TLS pinned to the mesh's roots): this guards against a version skew or
 * a truncated line, not an attacker, so the resources inside are not re-validated field by field.
 */
export function parseMeshMessage(line: string): MeshMessage {
  let raw: unknown;
  try {
    raw = JSON.parse(line);
  } catch (err) {
    throw new MeshMessageError(`not JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!isObject(raw)) throw new MeshMessageError('a message must be a JSON object');
  if (raw.apiVersion !== MESH_API_VERSION) {
    throw new MeshMessageError(
      `apiVersion ${JSON.stringify(raw.apiVersion)} is not ${MESH_API_VERSION}: the server and the agent are of different versions`,
    );
  }
  if (typeof raw.version !== 'number' || !Number.isSafeInteger(raw.version) || raw.version < 0) {
    throw new MeshMessageError('"version" must be a non-negative integer');
  }
  switch (raw.type) {
    case 'snapshot':
      if (!isObject(raw.proxy)) throw new MeshMessageError('a snapshot needs "proxy"');
      if (!isObject(raw.settings)) throw new MeshMessageError('a snapshot needs "settings"');
      if (!Array.isArray(raw.services)) throw new MeshMessageError('a snapshot needs "services"');
      break;
    case 'delta':
      if (raw.services !== undefined && !Array.isArray(raw.services)) {
        throw new MeshMessageError('"services" of a delta must be an array');
      }
      if (raw.removed !== undefined && !Array.isArray(raw.removed)) {
        throw new MeshMessageError('"removed" of a delta must be an array');
      }
      break;
    case 'heartbeat':
      break;
    default:
      throw new MeshMessageError(`unknown message type ${JSON.stringify(raw.type)}`);
  }
  return raw as unknown as MeshMessage;
}

/**
 * The state after a message: a snapshot replaces it, a delta patches it, a heartbeat keeps it.
 * A delta before any snapshot, or one whose version does not grow, is an error (the stream is
 * out of step: reconnect for a new snapshot).
 */
export function applyMeshMessage(state: MeshState | null, message: MeshMessage): MeshState | null {
  if (message.type === 'heartbeat') return state;
  if (message.type === 'snapshot') {
    return {
      version: message.version,
      proxy: message.proxy,
      settings: message.settings,
      services: new Map(message.services.map((s) => [s.key, s])),
    };
  }
  if (state === null) throw new MeshMessageError('a delta arrived before any snapshot');
  if (message.version <= state.version) {
    throw new MeshMessageError(
      `delta version ${message.version} does not follow version ${state.version}`,
    );
  }
  const services = new Map(state.services);
  for (const key of message.removed ?? []) services.delete(key);
  for (const service of message.services ?? []) services.set(service.key, service);
  return {
    version: message.version,
    proxy: message.proxy ?? state.proxy,
    settings: message.settings ?? state.settings,
    services,
  };
}

// What a sidecar tells about one finished request or TCP connection, pure: the facts the
// handlers gather once, and the two records made of them, a span (OTLP/JSON, with the tags
// Envoy's tracer puts on Istio's spans) and an access log line (JSON with Envoy's field names).
//
// The access log never holds a header that could carry a credential: of the request's headers
// only `:authority`, `user-agent` and `x-request-id` are kept, and the path loses its query
// string (tokens travel there too: `?access_token=...`).

import type { SpanContext } from './trace-context';

export interface RequestFacts {
  /** `outbound` (the client's side, Istio's reporter="source") or `inbound`. */
  readonly direction: 'outbound' | 'inbound';
  /** Wall-clock start, milliseconds since the epoch (fractions kept). */
  readonly startMs: number;
  readonly durationMs: number;
  /** `HTTP/1.1`, `HTTP/2` or `TCP`. */
  readonly protocol: 'HTTP/1.1' | 'HTTP/2' | 'TCP';
  /** null for TCP. */
  readonly method: string | null;
  /** The request target (with its query string; the access log drops it). */
  readonly path: string | null;
  readonly authority: string | null;
  /** 0: no response (the client went away first, or TCP). */
  readonly status: number;
  /** gRPC status, '' when not gRPC. */
  readonly grpcStatus: string;
  /** Envoy's response flags, `-` when none. */
  readonly flags: string;
  /** Bytes from the client (request body; TCP: bytes received). */
  readonly bytesReceived: number;
  /** Bytes to the client. */
  readonly bytesSent: number;
  readonly requestId: string | null;
  readonly userAgent: string | null;
  /** `address:port` of the endpoint the last attempt went to. */
  readonly upstreamHost: string | null;
  /** Envoy's cluster name: `outbound|80||reviews.default.svc.cluster.local`, `inbound|9080||`. */
  readonly upstreamCluster: string;
  /** `address:port` of the client. */
  readonly downstreamRemote: string | null;
  /** SPIFFE IDs: the caller's and the callee's, when mutual TLS proved them. */
  readonly sourcePrincipal: string | null;
  readonly destinationPrincipal: string | null;
  /** FQDN of the destination service, or null. */
  readonly service: string | null;
  /** The port the request was sent to (the service port outbound, the app's port inbound). */
  readonly port: number;
  readonly mtls: boolean;
}

/** Who this proxy is, for the span's resource and tags. */
export interface NodeInfo {
  /** `sidecar~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local`, as Istio's node id. */
  readonly nodeId: string;
  readonly namespace: string;
  /** The `app` label (or the workload's name): Istio's canonical service. */
  readonly canonicalService: string;
  /** The `version` label, or `latest`. */
  readonly canonicalRevision: string;
  /** The trust domain stands for the mesh id. */
  readonly meshId: string;
  readonly podName: string;
}

export function nodeInfo(
  pod: { readonly name: string; readonly namespace: string; readonly ip: string | null },
  workload: { readonly name: string; readonly app: string | null; readonly version: string | null },
  trustDomain: string,
): NodeInfo {
  return {
    nodeId: `sidecar~${pod.ip ?? '0.0.0.0'}~${pod.name}.${pod.namespace}~${pod.namespace}.svc.cluster.local`,
    namespace: pod.namespace,
    canonicalService: workload.app ?? workload.name,
    canonicalRevision: workload.version ?? 'latest',
    meshId: trustDomain,
    podName: pod.name,
  };
}

/**
 * `address:port`, an IPv6 address in brackets; an IPv4-mapped IPv6 address (a client of a
 * dual-stack listener) as the IPv4 address it is, as Envoy prints it.
 */
export function hostPort(address: string, port: number): string {
  if (address.startsWith('::ffff:') && address.includes('.')) return `${address.slice(7)}:${port}`;
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** `outbound|<port>||<fqdn>` / `inbound|<port>||`, Envoy's cluster names under Istio. */
export const clusterName = (
  direction: 'outbound' | 'inbound',
  port: number,
  service: string | null,
): string =>
  direction === 'outbound' ? `outbound|${port}||${service ?? ''}` : `inbound|${port}||`;

// --- spans (OTLP/JSON) ---------------------------------------------------------------------

type AnyValue = { stringValue: string } | { intValue: string } | { boolValue: boolean };
export interface OtlpAttribute {
  readonly key: string;
  readonly value: AnyValue;
}

export interface OtlpSpan {
  readonly traceId: string;
  readonly spanId: string;
  readonly parentSpanId?: string;
  readonly traceState?: string;
  readonly name: string;
  /** 2 SERVER, 3 CLIENT. */
  readonly kind: 2 | 3;
  readonly startTimeUnixNano: string;
  readonly endTimeUnixNano: string;
  readonly attributes: readonly OtlpAttribute[];
  /** 0 UNSET, 2 ERROR. */
  readonly status: { readonly code: 0 | 2; readonly message?: string };
}

export const SPAN_KIND = { server: 2, client: 3 } as const;

const str = (key: string, v: string): OtlpAttribute => ({ key, value: { stringValue: v } });
const int = (key: string, v: number): OtlpAttribute => ({ key, value: { intValue: String(v) } });

/** Unix nanoseconds as OTLP/JSON's decimal string, from milliseconds (microsecond precision). */
export function unixNano(ms: number): string {
  const micros = Math.round(ms * 1000);
  return micros <= 0 ? '0' : `${micros}000`;
}

/** The span name: Istio's default operation, `<service FQDN or authority>:<port>/*`. */
export function operationName(f: RequestFacts): string {
  const host = f.service ?? f.authority?.replace(/:\d+$/, '') ?? 'unknown';
  return `${host}:${f.port}/*`;
}

/**
 * The span of one request: a client span outbound, a server span inbound, with the tags Envoy
 * sets on Istio's spans (`http.*`, `upstream_cluster`, `response_flags`, `guid:x-request-id`,
 * `istio.*`, `peer.address`) and the peers' identities (`istio.source_principal`,
 * `istio.destination_principal`). 5xx, or no response, marks it an error (`error: true`).
 */
export function buildSpan(span: SpanContext, f: RequestFacts, node: NodeInfo): OtlpSpan {
  const a: OtlpAttribute[] = [
    str('node_id', node.nodeId),
    str('component', 'proxy'),
    str('istio.namespace', node.namespace),
    str('istio.canonical_service', node.canonicalService),
    str('istio.canonical_revision', node.canonicalRevision),
    str('istio.mesh_id', node.meshId),
    str('upstream_cluster', f.upstreamCluster),
    str('upstream_cluster.name', f.upstreamCluster),
    str('http.protocol', f.protocol),
    str('response_flags', f.flags),
    int('request_size', f.bytesReceived),
    int('response_size', f.bytesSent),
  ];
  if (f.method !== null) a.push(str('http.method', f.method));
  if (f.path !== null) {
    const scheme = f.protocol === 'HTTP/2' && f.mtls ? 'https' : 'http';
    a.push(str('http.url', `${scheme}://${f.authority ?? ''}${f.path}`));
  }
  a.push(int('http.status_code', f.status));
  if (f.grpcStatus !== '') a.push(str('grpc.status_code', f.grpcStatus));
  if (f.requestId !== null) a.push(str('guid:x-request-id', f.requestId));
  if (f.userAgent !== null) a.push(str('user_agent', f.userAgent));
  if (f.upstreamHost !== null) a.push(str('upstream_address', f.upstreamHost));
  if (f.downstreamRemote !== null) a.push(str('peer.address', f.downstreamRemote));
  if (f.sourcePrincipal !== null) a.push(str('istio.source_principal', f.sourcePrincipal));
  if (f.destinationPrincipal !== null)
    a.push(str('istio.destination_principal', f.destinationPrincipal));
  a.push(str('connection_security_policy', f.mtls ? 'mutual_tls' : 'none'));
  const error = f.status === 0 || f.status >= 500;
  if (error) a.push({ key: 'error', value: { boolValue: true } });
  return {
    traceId: span.traceId,
    spanId: span.spanId,
    ...(span.parentSpanId === null ? {} : { parentSpanId: span.parentSpanId }),
    ...(span.traceState === null ? {} : { traceState: span.traceState }),
    name: operationName(f),
    kind: f.direction === 'outbound' ? SPAN_KIND.client : SPAN_KIND.server,
    startTimeUnixNano: unixNano(f.startMs),
    endTimeUnixNano: unixNano(f.startMs + f.durationMs),
    attributes: a,
    status: error ? { code: 2, message: f.flags === '-' ? '' : f.flags } : { code: 0 },
  };
}

/** The body of one OTLP/HTTP export (`POST <base>/v1/traces`, `application/json`). */
export function otlpTraceRequest(node: NodeInfo, spans: readonly OtlpSpan[]): string {
  return JSON.stringify({
    resourceSpans: [
      {
        resource: {
          attributes: [
            // Istio's service name in traces: `<canonical service>.<namespace>`.
            str('service.name', `${node.canonicalService}.${node.namespace}`),
            str('service.version', node.canonicalRevision),
            str('k8s.pod.name', node.podName),
            str('k8s.namespace.name', node.namespace),
          ],
        },
        scopeSpans: [{ scope: { name: 'mooring-proxy' }, spans }],
      },
    ],
  });
}

// --- access log -----------------------------------------------------------------------------

/** The path without its query string (which may carry a token) or fragment. */
export function pathOnly(target: string): string {
  let end = target.length;
  const q = target.indexOf('?');
  if (q !== -1) end = q;
  const h = target.indexOf('#');
  if (h !== -1 && h < end) end = h;
  return target.slice(0, end);
}

/**
 * One access log line (JSON, newline-terminated) with Envoy's field names. Fields that do not
 * apply (a TCP connection has no method) are null, as Envoy's JSON format prints them.
 */
export function accessLogLine(f: RequestFacts, traceId: string | null): string {
  return `${JSON.stringify({
    start_time: new Date(f.startMs).toISOString(),
    direction: f.direction,
    method: f.method,
    path: f.path === null ? null : pathOnly(f.path),
    protocol: f.protocol,
    response_code: f.status,
    grpc_status: f.grpcStatus === '' ? null : f.grpcStatus,
    response_flags: f.flags,
    bytes_received: f.bytesReceived,
    bytes_sent: f.bytesSent,
    duration: Math.round(f.durationMs),
    upstream_host: f.upstreamHost,
    upstream_cluster: f.upstreamCluster,
    downstream_remote_address: f.downstreamRemote,
    authority: f.authority,
    user_agent: f.userAgent,
    request_id: f.requestId,
    trace_id: traceId,
    downstream_peer_uri_san: f.direction === 'inbound' ? f.sourcePrincipal : null,
    upstream_peer_uri_san: f.direction === 'outbound' ? f.destinationPrincipal : null,
    source_principal: f.sourcePrincipal,
    destination_principal: f.destinationPrincipal,
    destination_service: f.service,
    connection_security_policy: f.mtls ? 'mutual_tls' : 'none',
  })}\n`;
}

// The mesh graph, pure: the PromQL it asks (the same queries a user could run against the same
// Prometheus, on Istio's standard metrics), and the nodes and edges made of the answers.
//
// Nodes are workloads and services. Each request edge of the metrics, `source workload ->
// destination service` (reporter="source": what the caller saw, failures to connect included),
// becomes two edges, workload -> service and service -> destination workload, as Kiali's
// workload graph draws them. Requests from outside the mesh have no source reporter: they come
// from reporter="destination" with `source_workload="unknown"`. Each edge carries its request
// rate, the share of 5xx answers, the p99 latency and whether its traffic was mutual TLS; TCP
// edges carry bytes per second. An edge idle in the window (a rate of 0: its counter exists but
// did not grow) is not drawn, as Kiali hides idle edges by default: with no traffic there is
// nothing to say about its rate, errors or mutual TLS.

/** One sample of an instant vector (Prometheus' /api/v1/query answer, resultType "vector"). */
export interface PromSample {
  readonly metric: Readonly<Record<string, string>>;
  /** [unix seconds, "value"]. */
  readonly value: readonly [number, string];
}

export const GRAPH_WINDOWS = ['1m', '5m', '15m', '1h'] as const;
export type GraphWindow = (typeof GRAPH_WINDOWS)[number];
export const DEFAULT_GRAPH_WINDOW: GraphWindow = '1m';

const EDGE_LABELS = [
  'source_workload',
  'source_workload_namespace',
  'destination_workload',
  'destination_workload_namespace',
  'destination_service',
  'destination_service_name',
  'destination_service_namespace',
].join(', ');

export interface GraphQueries {
  /** Request rate by edge, response code and security policy (caller's view). */
  readonly requests: string;
  /** The same from the destination's view, for callers outside the mesh. */
  readonly requestsFromOutside: string;
  /** p99 latency by edge, milliseconds. */
  readonly p99: string;
  /** TCP bytes per second by edge, both ways. */
  readonly tcp: string;
}

export function graphQueries(window: GraphWindow): GraphQueries {
  return {
    requests: `sum by (${EDGE_LABELS}, response_code, connection_security_policy) (rate(istio_requests_total{reporter="source"}[${window}]))`,
    requestsFromOutside: `sum by (${EDGE_LABELS}, response_code, connection_security_policy) (rate(istio_requests_total{reporter="destination",source_workload="unknown"}[${window}]))`,
    p99: `histogram_quantile(0.99, sum by (le, ${EDGE_LABELS}) (rate(istio_request_duration_milliseconds_bucket{reporter="source"}[${window}])))`,
    tcp: `sum by (${EDGE_LABELS}, connection_security_policy) (rate(istio_tcp_sent_bytes_total{reporter="source"}[${window}]) + rate(istio_tcp_received_bytes_total{reporter="source"}[${window}]))`,
  };
}

export interface GraphNode {
  /** `workload:<ns>/<name>`, `service:<fqdn>`, or `unknown`. */
  readonly id: string;
  readonly kind: 'workload' | 'service' | 'unknown';
  readonly name: string;
  readonly namespace: string;
}

export interface GraphEdge {
  readonly id: string;
  readonly source: string;
  readonly target: string;
  readonly protocol: 'http' | 'tcp';
  /** Requests per second (HTTP). */
  readonly rps: number;
  /** Share of 5xx answers (and requests without an answer), 0-1. */
  readonly errorRate: number;
  /** null when not known (TCP, or no histogram yet). */
  readonly p99Ms: number | null;
  /** Bytes per second (TCP). */
  readonly bytesPerSecond: number;
  /** Share of the traffic that was mutual TLS, 0-1. */
  readonly mtlsShare: number;
}

export interface MeshGraph {
  readonly nodes: readonly GraphNode[];
  readonly edges: readonly GraphEdge[];
}

export interface GraphAnswers {
  readonly requests: readonly PromSample[];
  readonly requestsFromOutside: readonly PromSample[];
  readonly p99: readonly PromSample[];
  readonly tcp: readonly PromSample[];
}

const label = (s: PromSample, name: string): string => s.metric[name] ?? 'unknown';
const numberOf = (s: PromSample): number => {
  const v = Number(s.value[1]);
  return Number.isFinite(v) ? v : 0;
};

interface Acc {
  rps: number;
  errors: number;
  mtls: number;
  bytes: number;
  p99: number | null;
  protocol: 'http' | 'tcp';
}

function nodeIds(s: PromSample): { src: GraphNode; svc: GraphNode; dst: GraphNode } {
  const srcName = label(s, 'source_workload');
  const srcNs = label(s, 'source_workload_namespace');
  const dstName = label(s, 'destination_workload');
  const dstNs = label(s, 'destination_workload_namespace');
  const fqdn = label(s, 'destination_service');
  const workload = (name: string, ns: string): GraphNode =>
    name === 'unknown'
      ? { id: 'unknown', kind: 'unknown', name: 'unknown', namespace: 'unknown' }
      : { id: `workload:${ns}/${name}`, kind: 'workload', name, namespace: ns };
  return {
    src: workload(srcName, srcNs),
    svc: {
      id: `service:${fqdn}`,
      kind: fqdn === 'unknown' ? 'unknown' : 'service',
      name: s.metric.destination_service_name ?? fqdn,
      namespace: s.metric.destination_service_namespace ?? 'unknown',
    },
    dst: workload(dstName, dstNs),
  };
}

/** The graph of the answers: nodes sorted by id, edges by id, numbers summed per edge. */
export function buildGraph(a: GraphAnswers): MeshGraph {
  const nodes = new Map<string, GraphNode>();
  const edges = new Map<string, Acc & { source: string; target: string }>();
  const edge = (
    from: GraphNode,
    to: GraphNode,
    protocol: 'http' | 'tcp',
  ): Acc & { source: string; target: string } => {
    nodes.set(from.id, from);
    nodes.set(to.id, to);
    const id = `${from.id}->${to.id}|${protocol}`;
    let e = edges.get(id);
    if (e === undefined) {
      e = {
        source: from.id,
        target: to.id,
        rps: 0,
        errors: 0,
        mtls: 0,
        bytes: 0,
        p99: null,
        protocol,
      };
      edges.set(id, e);
    }
    return e;
  };
  const addRequests = (s: PromSample): void => {
    const v = numberOf(s);
    if (v <= 0) return;
    const code = label(s, 'response_code');
    const failed = code.startsWith('5') || code === '0';
    const mtls = label(s, 'connection_security_policy') === 'mutual_tls';
    const { src, svc, dst } = nodeIds(s);
    for (const e of [edge(src, svc, 'http'), edge(svc, dst, 'http')]) {
      e.rps += v;
      if (failed) e.errors += v;
      if (mtls) e.mtls += v;
    }
  };
  for (const s of a.requests) addRequests(s);
  for (const s of a.requestsFromOutside) addRequests(s);
  for (const s of a.p99) {
    const v = numberOf(s);
    if (Number.isNaN(Number(s.value[1]))) continue;
    const { src, svc, dst } = nodeIds(s);
    // The caller's latency belongs to its edge into the service; the service's edge to one
    // workload takes the highest p99 of its callers (a bound, not a merged quantile).
    const into = edge(src, svc, 'http');
    into.p99 = Math.max(into.p99 ?? 0, v);
    const out = edge(svc, dst, 'http');
    out.p99 = Math.max(out.p99 ?? 0, v);
  }
  for (const s of a.tcp) {
    const v = numberOf(s);
    if (v <= 0) continue;
    const mtls = label(s, 'connection_security_policy') === 'mutual_tls';
    const { src, svc, dst } = nodeIds(s);
    for (const e of [edge(src, svc, 'tcp'), edge(svc, dst, 'tcp')]) {
      e.bytes += v;
      if (mtls) e.mtls += v;
    }
  }
  const round = (n: number, digits: number): number => Number(n.toFixed(digits));
  return {
    nodes: [...nodes.values()].sort((x, y) => x.id.localeCompare(y.id)),
    edges: [...edges.entries()]
      .map(([id, e]) => {
        const total = e.protocol === 'http' ? e.rps : e.bytes;
        return {
          id,
          source: e.source,
          target: e.target,
          protocol: e.protocol,
          rps: round(e.rps, 3),
          errorRate: e.rps > 0 ? round(e.errors / e.rps, 4) : 0,
          p99Ms: e.p99 === null ? null : round(e.p99, 2),
          bytesPerSecond: round(e.bytes, 1),
          mtlsShare: total > 0 ? round(e.mtls / total, 4) : 0,
        };
      })
      .sort((x, y) => x.id.localeCompare(y.id)),
  };
}

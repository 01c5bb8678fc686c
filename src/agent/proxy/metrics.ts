// Istio's standard metrics, kept by the proxy itself and rendered in Prometheus text on 15090
// `/stats/prometheus`. The request path does one Map lookup and a few additions per request:
// the labels that describe an edge (who talks to whom, how) are rendered once into an `Edge`,
// and each (edge, response code, gRPC status, flags) is one `Series` of counters and histograms
// with Envoy's default buckets. A series is known by its labels' text, so that an Edge made
// again (for a new configuration, or for each TCP connection) counts into the same series; each
// Edge keeps the series it has met, by the short rest of their key.

import { ISTIO_METRICS, type MetricOverride } from '../../api/mesh';

export const ENVOY_DEFAULT_BUCKETS: readonly number[] = [
  0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000,
  1800000, 3600000,
];

export type Reporter = 'source' | 'destination';

export interface PeerLabels {
  readonly workload: string;
  readonly namespace: string;
  readonly principal: string;
  readonly app: string;
  readonly version: string;
}

export interface EdgeLabels {
  readonly reporter: Reporter;
  readonly source: PeerLabels;
  readonly destination: PeerLabels;
  /** FQDN of the destination service, or `unknown`. */
  readonly service: string;
  readonly serviceName: string;
  readonly serviceNamespace: string;
  /** `http`, `grpc`, `tcp` (Istio reports HTTP/2 as `http`). */
  readonly protocol: 'http' | 'grpc' | 'tcp';
  readonly security: 'mutual_tls' | 'none';
}

export const UNKNOWN = 'unknown';
export const UNKNOWN_PEER: PeerLabels = Object.freeze({
  workload: UNKNOWN,
  namespace: UNKNOWN,
  principal: UNKNOWN,
  app: UNKNOWN,
  version: UNKNOWN,
});

const escapeLabel = (v: string): string =>
  v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');

/** An edge: its label text is made once. */
export class Edge {
  /** `reporter="...",source_workload="...",...,connection_security_policy="..."` */
  readonly text: string;
  readonly tcpText: string;
  /**
   * The request series of this edge met so far, by `${code}|${grpcStatus}|${flags}`: those of
   * the one IstioMetrics it is counted into (a sidecar's handlers make their edges for theirs).
   */
  readonly requestSeries = new Map<string, RequestSeries>();
  /** The series of the last request counted on this edge: most requests repeat it. */
  lastSeries: RequestSeries | null = null;
  /** The TCP series of this edge, once met. */
  tcpSeries: TcpSeries | null = null;

  constructor(readonly labels: EdgeLabels) {
    const l = labels;
    const pairs: [string, string][] = [
      ['reporter', l.reporter],
      ['source_workload', l.source.workload],
      ['source_workload_namespace', l.source.namespace],
      ['source_principal', l.source.principal],
      ['source_app', l.source.app],
      ['source_version', l.source.version],
      ['destination_workload', l.destination.workload],
      ['destination_workload_namespace', l.destination.namespace],
      ['destination_principal', l.destination.principal],
      ['destination_app', l.destination.app],
      ['destination_version', l.destination.version],
      ['destination_service', l.service],
      ['destination_service_name', l.serviceName],
      ['destination_service_namespace', l.serviceNamespace],
      ['connection_security_policy', l.security],
    ];
    this.text = pairs.map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',');
    this.tcpText = `${this.text},request_protocol="tcp"`;
  }
}

class Histogram {
  readonly counts = new Float64Array(ENVOY_DEFAULT_BUCKETS.length);
  sum = 0;

  observe(v: number): void {
    this.sum += v;
    const b = ENVOY_DEFAULT_BUCKETS;
    for (let i = 0; i < b.length; i++) {
      if (v <= (b[i] as number)) {
        this.counts[i] = (this.counts[i] as number) + 1;
        return;
      }
    }
  }
}

interface RequestSeries {
  readonly labels: string;
  /** What its labels say of the request (the rest is its edge's). */
  readonly code: number;
  readonly grpcStatus: string;
  readonly flags: string;
  count: number;
  readonly duration: Histogram;
  readonly requestBytes: Histogram;
  readonly responseBytes: Histogram;
}

interface TcpSeries {
  readonly labels: string;
  opened: number;
  closed: number;
  sent: number;
  received: number;
}

/** What Telemetry overrides make of one metric on one side: off, or labels removed. */
interface MetricView {
  readonly disabled: boolean;
  readonly remove: ReadonlySet<string>;
}

const AS_IS: MetricView = { disabled: false, remove: new Set() };

/** The overrides for `metric` seen by `reporter`, applied in order (the most specific last). */
export function metricView(
  overrides: readonly MetricOverride[],
  metric: string,
  reporter: Reporter,
): MetricView {
  let disabled = false;
  const remove = new Set<string>();
  for (const o of overrides) {
    if (o.metric !== 'ALL_METRICS' && ISTIO_METRICS[o.metric] !== metric) continue;
    const side = o.mode === 'CLIENT' ? 'source' : o.mode === 'SERVER' ? 'destination' : reporter;
    if (side !== reporter) continue;
    if (o.disabled !== undefined) disabled = o.disabled;
    for (const tag of o.removeTags ?? []) remove.add(tag);
  }
  return disabled || remove.size > 0 ? { disabled, remove } : AS_IS;
}

/** A series' labels without those of `remove` (the text as Edge and series write it). */
function withoutLabels(labels: string, remove: ReadonlySet<string>): string {
  const kept: string[] = [];
  for (const m of labels.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
    if (!remove.has(m[1] as string)) kept.push(m[0]);
  }
  return kept.join(',');
}

/**
 * One rendered series: a counter's value, or a histogram's buckets, sum and count. The buckets
 * are the series' own until a second series is summed into the row (then a copy).
 */
interface Row {
  value: number;
  sum: number;
  buckets: Float64Array | null;
  copied: boolean;
}

export class IstioMetrics {
  /** By their labels' text. */
  private readonly requests = new Map<string, RequestSeries>();
  private readonly tcp = new Map<string, TcpSeries>();
  /** Telemetry's metric overrides of this workload (applied when rendering: no per-request cost). */
  private overrides: readonly MetricOverride[] = [];

  /** A new configuration's Telemetry overrides. */
  configure(overrides: readonly MetricOverride[] | undefined): void {
    this.overrides = overrides ?? [];
  }

  /** One HTTP or gRPC request, at its end. */
  request(
    edge: Edge,
    code: number,
    grpcStatus: string,
    flags: string,
    durationMs: number,
    requestBytes: number,
    responseBytes: number,
  ): void {
    let s = edge.lastSeries;
    if (s === null || code !== s.code || grpcStatus !== s.grpcStatus || flags !== s.flags) {
      s = this.series(edge, code, grpcStatus, flags);
      edge.lastSeries = s;
    }
    s.count++;
    s.duration.observe(durationMs);
    s.requestBytes.observe(requestBytes);
    s.responseBytes.observe(responseBytes);
  }

  private series(edge: Edge, code: number, grpcStatus: string, flags: string): RequestSeries {
    const key = `${code}|${grpcStatus}|${flags}`;
    let s = edge.requestSeries.get(key);
    if (s === undefined) {
      const protocol = edge.labels.protocol === 'grpc' ? 'grpc' : 'http';
      const labels =
        `${edge.text},request_protocol="${protocol}",response_code="${code}",` +
        `grpc_response_status="${escapeLabel(grpcStatus)}",response_flags="${escapeLabel(flags)}"`;
      s = this.requests.get(labels);
      if (s === undefined) {
        s = {
          labels,
          code,
          grpcStatus,
          flags,
          count: 0,
          duration: new Histogram(),
          requestBytes: new Histogram(),
          responseBytes: new Histogram(),
        };
        this.requests.set(labels, s);
      }
      edge.requestSeries.set(key, s);
    }
    return s;
  }

  private tcpSeries(edge: Edge): TcpSeries {
    if (edge.tcpSeries !== null) return edge.tcpSeries;
    let s = this.tcp.get(edge.tcpText);
    if (s === undefined) {
      s = { labels: edge.tcpText, opened: 0, closed: 0, sent: 0, received: 0 };
      this.tcp.set(edge.tcpText, s);
    }
    edge.tcpSeries = s;
    return s;
  }

  tcpOpened(edge: Edge): void {
    this.tcpSeries(edge).opened++;
  }

  /** Bytes of an open TCP connection since the last report (reported at close and on a timer). */
  tcpBytes(edge: Edge, sent: number, received: number): void {
    const s = this.tcpSeries(edge);
    s.sent += sent;
    s.received += received;
  }

  tcpClosed(edge: Edge): void {
    this.tcpSeries(edge).closed++;
  }

  /**
   * Prometheus text exposition (version 0.0.4), under the Telemetry overrides: a metric off on a
   * side leaves that side's series out; a label removed sums the series it alone told apart.
   */
  render(): string {
    const out: string[] = [];
    const views = new Map<string, MetricView>();
    const viewOf = (metric: string, labels: string): MetricView => {
      if (this.overrides.length === 0) return AS_IS;
      const reporter: Reporter = labels.startsWith('reporter="source"') ? 'source' : 'destination';
      const key = `${metric}|${reporter}`;
      let view = views.get(key);
      if (view === undefined) views.set(key, (view = metricView(this.overrides, metric, reporter)));
      return view;
    };
    const family = <S extends { readonly labels: string }>(
      metric: string,
      type: 'counter' | 'histogram',
      series: Iterable<S>,
      value: (s: S) => number,
      histogram?: (s: S) => Histogram,
    ): void => {
      const rows = new Map<string, Row>();
      for (const s of series) {
        const view = viewOf(metric, s.labels);
        if (view.disabled) continue;
        const labels = view.remove.size === 0 ? s.labels : withoutLabels(s.labels, view.remove);
        const h = histogram?.(s);
        const row = rows.get(labels);
        if (row === undefined) {
          const buckets = h?.counts ?? null;
          rows.set(labels, { value: value(s), sum: h?.sum ?? 0, buckets, copied: false });
          continue;
        }
        row.value += value(s);
        if (h !== undefined && row.buckets !== null) {
          if (!row.copied) {
            row.buckets = Float64Array.from(row.buckets);
            row.copied = true;
          }
          row.sum += h.sum;
          for (let i = 0; i < h.counts.length; i++) {
            row.buckets[i] = (row.buckets[i] as number) + (h.counts[i] as number);
          }
        }
      }
      if (rows.size === 0) return;
      out.push(`# TYPE ${metric} ${type}`);
      for (const [labels, row] of rows) {
        if (row.buckets === null) {
          out.push(`${metric}{${labels}} ${row.value}`);
          continue;
        }
        let cumulative = 0;
        for (let i = 0; i < ENVOY_DEFAULT_BUCKETS.length; i++) {
          cumulative += row.buckets[i] as number;
          out.push(
            `${metric}_bucket{${labels},le="${ENVOY_DEFAULT_BUCKETS[i] as number}"} ${cumulative}`,
          );
        }
        out.push(`${metric}_bucket{${labels},le="+Inf"} ${row.value}`);
        out.push(`${metric}_sum{${labels}} ${row.sum}`);
        out.push(`${metric}_count{${labels}} ${row.value}`);
      }
    };
    const reqs = [...this.requests.values()];
    const m = ISTIO_METRICS;
    family(m.REQUEST_COUNT, 'counter', reqs, (s) => s.count);
    family(
      m.REQUEST_DURATION,
      'histogram',
      reqs,
      (s) => s.count,
      (s) => s.duration,
    );
    family(
      m.REQUEST_SIZE,
      'histogram',
      reqs,
      (s) => s.count,
      (s) => s.requestBytes,
    );
    family(
      m.RESPONSE_SIZE,
      'histogram',
      reqs,
      (s) => s.count,
      (s) => s.responseBytes,
    );
    const tcp = [...this.tcp.values()];
    family(m.TCP_SENT_BYTES, 'counter', tcp, (s) => s.sent);
    family(m.TCP_RECEIVED_BYTES, 'counter', tcp, (s) => s.received);
    family(m.TCP_OPENED_CONNECTIONS, 'counter', tcp, (s) => s.opened);
    family(m.TCP_CLOSED_CONNECTIONS, 'counter', tcp, (s) => s.closed);
    return out.length === 0 ? '' : `${out.join('\n')}\n`;
  }
}

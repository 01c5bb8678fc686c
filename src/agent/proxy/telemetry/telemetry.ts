// The proxy's tracing and access log, configured by the pushed mesh (`settings.tracing`,
// `settings.accessLog`, and the Pod's `traceSamplingPercent` / `accessLog` overrides): a change
// applies to the next request, without a restart. The handlers call `open` when a request is
// planned and `finished` when it is over; the decisions and records are the pure core's
// (core/trace-context.ts, core/request-facts.ts), the exporter and the log sink the edges here.

import type { MeshSettings, ProxyScope } from '../../../api/mesh';
import {
  accessLogLine,
  buildSpan,
  nodeInfo,
  otlpTraceRequest,
  type NodeInfo,
  type RequestFacts,
} from '../core/request-facts';
import {
  incomingTrace,
  openSpan,
  type IdSource,
  type SpanContext,
  type TraceHeaders,
} from '../core/trace-context';
import {
  EXPORTER_DEFAULTS,
  LineSink,
  OtlpExporter,
  RandomIds,
  httpPost,
  type ExportCounters,
  type Post,
} from './exporter';

/** The default sampling percentage before any configuration arrives (Istio's default is 1). */
export const DEFAULT_SAMPLING_PERCENT = 1;
export const OTLP_TRACES_PATH = '/v1/traces';

export interface TelemetryDeps {
  readonly ids?: IdSource;
  /** Uniform in [0, 1): the sampling decision. */
  readonly random?: () => number;
  /** Wall clock in milliseconds: the start of a span or of an access log line (default: Date.now). */
  readonly nowMs?: () => number;
  /** Where access log lines go; default: stdout (fd 1), never blocking. */
  readonly accessLog?: { write(line: string): void; readonly dropped: number };
  /** The POST of an OTLP export (tests: a fake collector). */
  readonly post?: Post;
  readonly exporter?: Partial<typeof EXPORTER_DEFAULTS>;
  readonly onExportError?: (reason: string) => void;
}

export interface TelemetryConfig {
  readonly samplingPercent: number;
  readonly otlpEndpoint: string | null;
  readonly accessLog: boolean;
  /** The one side logged (a Telemetry's CLIENT or SERVER mode); null: both. */
  readonly accessLogSide: 'outbound' | 'inbound' | null;
}

/** What the settings and the Pod's overrides give. */
export function telemetryConfig(settings: MeshSettings, proxy: ProxyScope): TelemetryConfig {
  return {
    samplingPercent: proxy.traceSamplingPercent ?? settings.tracing.samplingPercent,
    otlpEndpoint: settings.tracing.otlpEndpoint,
    accessLog: proxy.accessLog ?? settings.accessLog,
    accessLogSide: proxy.accessLogSide ?? null,
  };
}

/** `<base>/v1/traces` of an OTLP/HTTP base URL (a trailing slash or the full path tolerated). */
export function tracesUrl(base: string): string {
  const trimmed = base.replace(/\/+$/, '');
  return trimmed.endsWith(OTLP_TRACES_PATH) ? trimmed : `${trimmed}${OTLP_TRACES_PATH}`;
}

export class ProxyTelemetry {
  private samplingPercent = DEFAULT_SAMPLING_PERCENT;
  /** True when the access log is on: the handlers gather facts only then (or for a sampled span). */
  accessLogOn = false;
  private accessLogSide: 'outbound' | 'inbound' | null = null;
  private exporter: OtlpExporter | null = null;
  private node: NodeInfo = nodeInfo(
    { name: 'unknown', namespace: 'unknown', ip: null },
    { name: 'unknown', app: null, version: null },
    'cluster.local',
  );
  private readonly ids: IdSource;
  private readonly random: () => number;
  readonly nowMs: () => number;
  private readonly log: { write(line: string): void; readonly dropped: number };
  readonly counters: ExportCounters = {
    exported: 0,
    droppedQueueFull: 0,
    droppedExportFailed: 0,
    exportFailures: 0,
  };
  /** Spans sampled (exported or not). */
  sampled = 0;

  constructor(private readonly deps: TelemetryDeps = {}) {
    this.ids = deps.ids ?? new RandomIds();
    this.random = deps.random ?? Math.random;
    // The system's wall clock, read each time: the monotonic clock (performance.now) drifts from it
    // when the wall clock is stepped or slewed, which put start times seconds in the past.
    this.nowMs = deps.nowMs ?? Date.now;
    this.log = deps.accessLog ?? new LineSink(1);
  }

  /** A new configuration (each push): sampling, the collector, the access log, who we are. */
  configure(settings: MeshSettings, proxy: ProxyScope): void {
    const config = telemetryConfig(settings, proxy);
    this.samplingPercent = config.samplingPercent;
    this.accessLogOn = config.accessLog;
    this.accessLogSide = config.accessLogSide;
    this.node = nodeInfo(proxy.pod, proxy.workload, settings.trustDomain);
    const url = config.otlpEndpoint === null ? null : tracesUrl(config.otlpEndpoint);
    if (url !== this.exporter?.options.url) {
      const old = this.exporter;
      this.exporter =
        url === null
          ? null
          : new OtlpExporter(
              { url, ...EXPORTER_DEFAULTS, ...this.deps.exporter },
              (spans) => otlpTraceRequest(this.node, spans),
              this.counters,
              this.deps.post ?? httpPost,
              this.deps.onExportError,
            );
      void old?.close();
    }
  }

  config(): TelemetryConfig {
    return {
      samplingPercent: this.samplingPercent,
      otlpEndpoint: this.exporter?.options.url ?? null,
      accessLog: this.accessLogOn,
      accessLogSide: this.accessLogSide,
    };
  }

  /** This sidecar's span of a request that came with these headers. */
  open(headers: TraceHeaders): SpanContext {
    return openSpan(incomingTrace(headers), this.ids, this.samplingPercent, this.random);
  }

  /** True when the access log takes the requests of `direction`. */
  logs(direction: 'outbound' | 'inbound'): boolean {
    return this.accessLogOn && (this.accessLogSide === null || this.accessLogSide === direction);
  }

  /** True when `finished` wants the request's facts (a sampled span, or the access log). */
  wants(span: SpanContext | null, direction: 'outbound' | 'inbound'): boolean {
    return this.logs(direction) || (span !== null && span.sampled && this.exporter !== null);
  }

  /** A request or a TCP connection is over. */
  finished(span: SpanContext | null, facts: RequestFacts): void {
    if (span !== null && span.sampled) {
      this.sampled++;
      if (this.exporter !== null) this.exporter.add(buildSpan(span, facts, this.node));
    }
    if (this.logs(facts.direction)) this.log.write(accessLogLine(facts, span?.traceId ?? null));
  }

  /** Sends the spans still queued. */
  async flush(): Promise<void> {
    await this.exporter?.flush();
  }

  async close(): Promise<void> {
    await this.exporter?.close();
    this.exporter = null;
  }

  /** The telemetry's own counters, in Prometheus text (on 15090 beside Istio's metrics). */
  render(): string {
    const c = this.counters;
    return [
      '# HELP mooring_proxy_spans_sampled_total Spans this proxy sampled.',
      '# TYPE mooring_proxy_spans_sampled_total counter',
      `mooring_proxy_spans_sampled_total ${this.sampled}`,
      '# HELP mooring_proxy_spans_exported_total Spans the collector accepted.',
      '# TYPE mooring_proxy_spans_exported_total counter',
      `mooring_proxy_spans_exported_total ${c.exported}`,
      '# HELP mooring_proxy_spans_dropped_total Spans dropped: the queue was full, or the export failed (collector slow or down).',
      '# TYPE mooring_proxy_spans_dropped_total counter',
      `mooring_proxy_spans_dropped_total{reason="queue_full"} ${c.droppedQueueFull}`,
      `mooring_proxy_spans_dropped_total{reason="export_failed"} ${c.droppedExportFailed}`,
      '# HELP mooring_proxy_span_export_failures_total Exports (batches) that failed.',
      '# TYPE mooring_proxy_span_export_failures_total counter',
      `mooring_proxy_span_export_failures_total ${c.exportFailures}`,
      '# HELP mooring_proxy_access_log_dropped_total Access log lines dropped because stdout did not keep up.',
      '# TYPE mooring_proxy_access_log_dropped_total counter',
      `mooring_proxy_access_log_dropped_total ${this.log.dropped}`,
      '',
    ].join('\n');
  }
}

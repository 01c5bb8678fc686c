// A real Jaeger for the tracing tests: Jaeger v2 (an OpenTelemetry Collector) with in-memory
// storage, built by build-jaeger.sh into .cache/jaeger/bin. It receives OTLP (HTTP and gRPC) and
// answers its query API, every port on 127.0.0.1 and chosen free; its log is in tmpDir. With
// `netns`, it runs in that network namespace and listens on `host` there (the netns tests: the
// hub, where the agents of the Pods send their spans).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { freePorts, startTool, waitUntil, type Fetch } from './processes';

export const JAEGER_BIN = path.resolve(__dirname, '../../../.cache/jaeger/bin/jaeger');

export interface JaegerOptions {
  /** The jaeger binary; default .cache/jaeger/bin/jaeger. */
  readonly binary?: string;
  /** How long to wait for the query API; default 60 s. */
  readonly startTimeoutMs?: number;
  /** Leave the temporary directory (configuration, log) on stop(), for debugging. */
  readonly keepTmpDir?: boolean;
  /** Run in this network namespace (root); `fetch` of the answer reaches it there. */
  readonly netns?: string;
  /** The address every port listens on; default 127.0.0.1. */
  readonly host?: string;
  /** The ports; default: free ones of 127.0.0.1. */
  readonly ports?: JaegerPorts;
}

export interface JaegerPorts {
  readonly otlpHttp: number;
  readonly otlpGrpc: number;
  readonly query: number;
  readonly queryGrpc: number;
}

export interface Jaeger {
  /** OTLP/HTTP receiver, `http://HOST:PORT` (spans go to `/v1/traces`). */
  readonly otlpHttpUrl: string;
  /** OTLP/gRPC receiver, `127.0.0.1:PORT`. */
  readonly otlpGrpcAddress: string;
  /** Query API and UI, `http://127.0.0.1:PORT` (`/api/traces/<trace id>`, `/api/services`). */
  readonly queryUrl: string;
  readonly logPath: string;
  /** A fetch that reaches the ports (the global one, or one inside `netns`). */
  readonly fetch: Fetch;
  /** Stops Jaeger and removes its temporary directory. Safe to call more than once. */
  stop(): Promise<void>;
}

/** Jaeger's configuration: OTLP in, memory storage, the query API; nothing else listens. */
export function jaegerConfig(ports: JaegerPorts, host = '127.0.0.1'): string {
  return `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: info
extensions:
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: ${host}:${ports.query}
    grpc:
      endpoint: ${host}:${ports.queryGrpc}
receivers:
  otlp:
    protocols:
      http:
        endpoint: ${host}:${ports.otlpHttp}
      grpc:
        endpoint: ${host}:${ports.otlpGrpc}
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
`;
}

export function startJaeger(opts: JaegerOptions = {}): Promise<Jaeger> {
  const spec = {
    ...opts,
    title: 'Jaeger',
    binary: opts.binary ?? JAEGER_BIN,
    missing: 'build it first (`make jaeger` or `bash test/e2e/harness/build-jaeger.sh`)',
  };
  return startTool(spec, async ({ tmpDir, logPath, deadline, fetch, spawn, stop }) => {
    const [otlpHttp, otlpGrpc, query, queryGrpc] =
      opts.ports === undefined
        ? await freePorts(4)
        : [opts.ports.otlpHttp, opts.ports.otlpGrpc, opts.ports.query, opts.ports.queryGrpc];
    if (
      otlpHttp === undefined ||
      otlpGrpc === undefined ||
      query === undefined ||
      queryGrpc === undefined
    ) {
      throw new Error('could not reserve four ports');
    }
    const configPath = path.join(tmpDir, 'config.yaml');
    const host = opts.host ?? '127.0.0.1';
    fs.writeFileSync(configPath, jaegerConfig({ otlpHttp, otlpGrpc, query, queryGrpc }, host));
    const jaeger = spawn(['--config', configPath]);
    const queryUrl = `http://${host}:${query}`;
    const otlpHttpUrl = `http://${host}:${otlpHttp}`;
    await waitUntil('the Jaeger query API', jaeger, deadline, async () => {
      return (await fetch(`${queryUrl}/api/services`)).status === 200;
    });
    // The receiver starts with the pipeline: an empty export answers 200 once it listens.
    await waitUntil('the OTLP/HTTP receiver', jaeger, deadline, async () => {
      const answer = await fetch(`${otlpHttpUrl}/v1/traces`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"resourceSpans":[]}',
      });
      return answer.status === 200;
    });
    return {
      otlpHttpUrl,
      otlpGrpcAddress: `${host}:${otlpGrpc}`,
      queryUrl,
      logPath,
      fetch,
      stop,
    };
  });
}

// Spans and access log lines from a request's facts, the OTLP exporter's batching and bounds,
// the non-blocking line sink, and the telemetry's configuration from the mesh.

import {
  accessLogLine,
  buildSpan,
  hostPort,
  nodeInfo,
  otlpTraceRequest,
  pathOnly,
  unixNano,
  type OtlpSpan,
  type RequestFacts,
} from '../../../src/agent/proxy/core/request-facts';
import type { SpanContext } from '../../../src/agent/proxy/core/trace-context';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  httpPost,
  LineSink,
  OtlpExporter,
  RandomIds,
  type ExportCounters,
  type WriteFn,
} from '../../../src/agent/proxy/telemetry/exporter';
import {
  ProxyTelemetry,
  telemetryConfig,
  tracesUrl,
} from '../../../src/agent/proxy/telemetry/telemetry';
import { noTraceHeaders } from '../../../src/agent/proxy/core/trace-context';
import { proxyScope, SETTINGS, spiffe } from '../../fixtures/mesh';

const FACTS: RequestFacts = {
  direction: 'outbound',
  startMs: 1_700_000_000_123.456,
  durationMs: 2.5,
  protocol: 'HTTP/1.1',
  method: 'GET',
  path: '/reviews/1?access_token=s3cret#frag',
  authority: 'reviews:9080',
  status: 503,
  grpcStatus: '',
  flags: 'UF,URX',
  bytesReceived: 12,
  bytesSent: 91,
  requestId: 'rid-1',
  userAgent: 'curl/8',
  upstreamHost: '10.0.0.7:9080',
  upstreamCluster: 'outbound|9080||reviews.default.svc.cluster.local',
  downstreamRemote: '127.0.0.1:40000',
  sourcePrincipal: spiffe('web'),
  destinationPrincipal: spiffe('reviews'),
  service: 'reviews.default.svc.cluster.local',
  port: 9080,
  mtls: true,
};
const SPAN: SpanContext = {
  traceId: 'a'.repeat(32),
  spanId: 'b'.repeat(16),
  parentSpanId: 'c'.repeat(16),
  sampled: true,
  traceState: null,
};
const NODE = nodeInfo(
  { name: 'web-abc12', namespace: 'default', ip: '10.0.0.5' },
  { name: 'web', app: 'web', version: 'v1' },
  'cluster.local',
);

const attr = (s: OtlpSpan, key: string): unknown => {
  const v = s.attributes.find((a) => a.key === key)?.value;
  return v === undefined ? undefined : Object.values(v)[0];
};

describe('a span from the facts', () => {
  it('is a client span outbound with Istio tags, the peers, and an error status for a 5xx', () => {
    const s = buildSpan(SPAN, FACTS, NODE);
    expect(s).toMatchObject({
      traceId: SPAN.traceId,
      spanId: SPAN.spanId,
      parentSpanId: SPAN.parentSpanId,
      name: 'reviews.default.svc.cluster.local:9080/*',
      kind: 3,
      startTimeUnixNano: '1700000000123456000',
      endTimeUnixNano: '1700000000125956000',
      status: { code: 2, message: 'UF,URX' },
    });
    expect(attr(s, 'http.status_code')).toBe('503');
    expect(attr(s, 'response_flags')).toBe('UF,URX');
    expect(attr(s, 'upstream_cluster')).toBe(FACTS.upstreamCluster);
    expect(attr(s, 'upstream_address')).toBe('10.0.0.7:9080');
    expect(attr(s, 'istio.source_principal')).toBe(spiffe('web'));
    expect(attr(s, 'istio.destination_principal')).toBe(spiffe('reviews'));
    expect(attr(s, 'guid:x-request-id')).toBe('rid-1');
    expect(attr(s, 'istio.canonical_service')).toBe('web');
    expect(attr(s, 'node_id')).toBe('sidecar~10.0.0.5~web-abc12.default~default.svc.cluster.local');
    expect(attr(s, 'error')).toBe(true);
  });

  it('is a server span inbound, without error for a 200, at the root without a parent', () => {
    const s = buildSpan(
      { ...SPAN, parentSpanId: null },
      { ...FACTS, direction: 'inbound', status: 200, flags: '-' },
      NODE,
    );
    expect(s.kind).toBe(2);
    expect(s.status).toEqual({ code: 0 });
    expect(s).not.toHaveProperty('parentSpanId');
    expect(attr(s, 'error')).toBeUndefined();
  });

  it('goes out in an OTLP/JSON request with the service as Istio names it', () => {
    const body = JSON.parse(otlpTraceRequest(NODE, [buildSpan(SPAN, FACTS, NODE)])) as {
      resourceSpans: {
        resource: { attributes: { key: string; value: { stringValue: string } }[] };
        scopeSpans: { spans: unknown[] }[];
      }[];
    };
    const rs = body.resourceSpans[0];
    expect(rs?.resource.attributes).toContainEqual({
      key: 'service.name',
      value: { stringValue: 'web.default' },
    });
    expect(rs?.scopeSpans[0]?.spans).toHaveLength(1);
  });

  it('writes times as decimal nanoseconds', () => {
    expect(unixNano(1.5)).toBe('1500000');
    expect(unixNano(0)).toBe('0');
  });
});

describe('an access log line', () => {
  it('has Envoy fields, the path without its query string, the peers', () => {
    const line = accessLogLine(FACTS, SPAN.traceId);
    expect(line.endsWith('\n')).toBe(true);
    const o = JSON.parse(line) as Record<string, unknown>;
    expect(o).toEqual({
      start_time: '2023-11-14T22:13:20.123Z',
      direction: 'outbound',
      method: 'GET',
      path: '/reviews/1',
      protocol: 'HTTP/1.1',
      response_code: 503,
      grpc_status: null,
      response_flags: 'UF,URX',
      bytes_received: 12,
      bytes_sent: 91,
      duration: 3,
      upstream_host: '10.0.0.7:9080',
      upstream_cluster: FACTS.upstreamCluster,
      downstream_remote_address: '127.0.0.1:40000',
      authority: 'reviews:9080',
      user_agent: 'curl/8',
      request_id: 'rid-1',
      trace_id: SPAN.traceId,
      downstream_peer_uri_san: null,
      upstream_peer_uri_san: spiffe('reviews'),
      source_principal: spiffe('web'),
      destination_principal: spiffe('reviews'),
      destination_service: FACTS.service,
      connection_security_policy: 'mutual_tls',
    });
    expect(line).not.toContain('s3cret');
  });

  it.each([
    ['/a?b=c', '/a'],
    ['/a#x?y', '/a'],
    ['/', '/'],
  ])('path %s is logged as %s', (input, expected) => {
    expect(pathOnly(input)).toBe(expected);
  });

  it.each([
    ['10.77.0.21', '10.77.0.21:4000'],
    ['::ffff:10.77.0.21', '10.77.0.21:4000'],
    ['fd00::21', '[fd00::21]:4000'],
    ['::ffff:a4d:15', '[::ffff:a4d:15]:4000'],
  ])('address %s is written %s', (address, expected) => {
    expect(hostPort(address, 4000)).toBe(expected);
  });
});

describe('the OTLP exporter', () => {
  const counters = (): ExportCounters => ({
    exported: 0,
    droppedQueueFull: 0,
    droppedExportFailed: 0,
    exportFailures: 0,
  });
  const span = buildSpan(SPAN, FACTS, NODE);
  const options = {
    url: 'http://c/v1/traces',
    maxQueue: 4,
    maxBatch: 2,
    flushMs: 60_000,
    timeoutMs: 1000,
  };

  it('sends full batches at once, a partial one on flush, and counts what went', async () => {
    const bodies: string[] = [];
    const c = counters();
    const e = new OtlpExporter(
      options,
      (s) => JSON.stringify(s.length),
      c,
      (_u, body) => {
        bodies.push(body);
        return Promise.resolve(200);
      },
    );
    e.add(span);
    expect(bodies).toEqual([]);
    e.add(span); // a full batch goes at once
    e.add(span);
    await e.flush();
    expect(bodies).toEqual(['2', '1']);
    expect(c.exported).toBe(3);
    await e.close();
  });

  it('drops what does not fit while an export is slow, and never waits', async () => {
    const c = counters();
    let release: (status: number) => void = () => {};
    let slow = true;
    const e = new OtlpExporter(
      options,
      () => '',
      c,
      () => {
        if (!slow) return Promise.resolve(200);
        slow = false;
        return new Promise((r) => (release = r));
      },
    );
    for (let i = 0; i < 2; i++) e.add(span); // this batch is now in flight, waiting
    for (let i = 0; i < 6; i++) e.add(span); // 4 fit in the queue, 2 are dropped
    expect(c.droppedQueueFull).toBe(2);
    expect(e.queued()).toBe(4);
    release(200);
    await new Promise((r) => setImmediate(r));
    await e.close();
    expect(c.exported + c.droppedQueueFull + c.droppedExportFailed).toBe(8);
  });

  it('counts a refused or failed export as dropped spans', async () => {
    const c = counters();
    const errors: string[] = [];
    let status = 503;
    const e = new OtlpExporter(
      options,
      () => '',
      c,
      () => (status === 0 ? Promise.reject(new Error('ECONNREFUSED')) : Promise.resolve(status)),
      (why) => errors.push(why),
    );
    e.add(span);
    await e.flush();
    status = 0;
    e.add(span);
    await e.flush();
    expect(c).toMatchObject({ exported: 0, droppedExportFailed: 2, exportFailures: 2 });
    expect(errors).toEqual(['HTTP 503', 'ECONNREFUSED']);
    await e.close();
  });
});

describe("the exporter's POST", () => {
  it('sends the body as JSON on one kept-alive connection, and times out a collector that does not answer', async () => {
    const seen: { body: string; type: string | undefined; port: number }[] = [];
    let answer = true;
    const collector = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        seen.push({ body, type: req.headers['content-type'], port: req.socket.remotePort ?? 0 });
        if (answer) res.writeHead(202).end();
      });
    });
    await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(collector.address() as AddressInfo).port}/v1/traces`;
    try {
      expect(await httpPost(url, '{"a":1}', 5_000)).toBe(202);
      expect(await httpPost(url, '{"b":2}', 5_000)).toBe(202);
      expect(seen.map((x) => [x.body, x.type])).toEqual([
        ['{"a":1}', 'application/json'],
        ['{"b":2}', 'application/json'],
      ]);
      expect(seen[1]?.port).toBe(seen[0]?.port);
      answer = false;
      await expect(httpPost(url, '{}', 300)).rejects.toThrow('no answer within 300 ms');
    } finally {
      collector.closeAllConnections();
      collector.close();
    }
  });
});

describe('the line sink', () => {
  it('writes every line in order through partial writes and EAGAIN', async () => {
    const out: Buffer[] = [];
    let calls = 0;
    const write: WriteFn = (_fd, buf, offset, cb) => {
      calls++;
      if (calls === 1) {
        const err = Object.assign(new Error('again'), { code: 'EAGAIN' });
        setImmediate(() => cb(err, 0));
        return;
      }
      const n = Math.min(5, buf.length - offset); // at most 5 bytes per write
      out.push(buf.subarray(offset, offset + n));
      setImmediate(() => cb(null, n));
    };
    const sink = new LineSink(1, 1 << 20, write);
    sink.write('{"a":1}\n');
    sink.write('{"b":"é"}\n');
    await sink.flushed();
    sink.write('{"c":3}\n');
    await sink.flushed();
    expect(Buffer.concat(out).toString('utf8')).toBe('{"a":1}\n{"b":"é"}\n{"c":3}\n');
    expect(sink.dropped).toBe(0);
  });

  it('drops lines beyond its bound while the reader does not read', async () => {
    let release: () => void = () => {};
    const write: WriteFn = (_fd, buf, offset, cb) => {
      release = () => cb(null, buf.length - offset);
    };
    const sink = new LineSink(1, 20, write);
    for (let i = 0; i < 5; i++) sink.write('0123456789\n'); // 11 chars each: 1 fits
    expect(sink.dropped).toBe(4);
    await new Promise((r) => setImmediate(r));
    release();
    await sink.flushed();
    sink.write('0123456789\n');
    expect(sink.dropped).toBe(4);
  });
});

describe('the telemetry of a proxy', () => {
  it('takes the Pod overrides over the mesh settings', () => {
    expect(telemetryConfig(SETTINGS, proxyScope('web'))).toEqual({
      samplingPercent: 1,
      otlpEndpoint: null,
      accessLog: false,
      accessLogSide: null,
    });
    const pod = proxyScope('web', (p) => ({ ...p, traceSamplingPercent: 100, accessLog: true }));
    expect(telemetryConfig({ ...SETTINGS, accessLog: false }, pod)).toMatchObject({
      samplingPercent: 100,
      accessLog: true,
    });
  });

  it("logs only the side a Telemetry's access log mode names, and gathers nothing for the other", () => {
    const lines: string[] = [];
    const t = new ProxyTelemetry({ accessLog: { write: (l) => lines.push(l), dropped: 0 } });
    t.configure(
      SETTINGS,
      proxyScope('web', (p) => ({ ...p, accessLog: true, accessLogSide: 'inbound' })),
    );
    expect(t.wants(null, 'outbound')).toBe(false);
    expect(t.wants(null, 'inbound')).toBe(true);
    t.finished(null, { ...FACTS, direction: 'outbound' });
    t.finished(null, { ...FACTS, direction: 'inbound' });
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0] as string)).toMatchObject({ direction: 'inbound' });
    t.configure(
      SETTINGS,
      proxyScope('web', (p) => ({ ...p, accessLog: true })),
    );
    expect(t.wants(null, 'outbound') && t.wants(null, 'inbound')).toBe(true);
  });

  it.each([
    ['http://c:4318', 'http://c:4318/v1/traces'],
    ['http://c:4318/', 'http://c:4318/v1/traces'],
    ['http://c:4318/v1/traces', 'http://c:4318/v1/traces'],
    ['https://c/otlp', 'https://c/otlp/v1/traces'],
  ])('sends spans of base %s to %s', (base, url) => {
    expect(tracesUrl(base)).toBe(url);
  });

  it('exports sampled spans to the configured collector and renders its counters', async () => {
    const posts: { url: string; body: string }[] = [];
    const lines: string[] = [];
    const t = new ProxyTelemetry({
      random: () => 0,
      post: (url, body) => {
        posts.push({ url, body });
        return Promise.resolve(200);
      },
      accessLog: { write: (l) => lines.push(l), dropped: 0 },
    });
    t.configure(
      { ...SETTINGS, tracing: { otlpEndpoint: 'http://collector:4318', samplingPercent: 100 } },
      proxyScope('web'),
    );
    const span = t.open(noTraceHeaders());
    expect(t.wants(span, 'outbound')).toBe(true);
    t.finished(span, FACTS);
    await t.flush();
    expect(posts.map((p) => p.url)).toEqual(['http://collector:4318/v1/traces']);
    expect(posts[0]?.body).toContain(span.spanId);
    expect(lines).toEqual([]);
    expect(t.render()).toContain('mooring_proxy_spans_exported_total 1');
    // Off: nothing gathered, nothing sent.
    t.configure(
      { ...SETTINGS, tracing: { otlpEndpoint: null, samplingPercent: 0 } },
      proxyScope('web'),
    );
    expect(t.wants(t.open(noTraceHeaders()), 'outbound')).toBe(false);
    await t.close();
  });
});

describe('the clock of spans and access log lines', () => {
  afterEach(() => jest.restoreAllMocks());

  it('is the wall clock, not the monotonic clock, which drifts from it when the wall clock is set', () => {
    const set = Date.now() + 3_600_000;
    jest.spyOn(Date, 'now').mockReturnValue(set);
    expect(new ProxyTelemetry().nowMs()).toBe(set);
  });
});

describe('ids', () => {
  it('are hex of the right length and do not repeat', () => {
    const ids = new RandomIds();
    const seen = new Set<string>();
    for (let i = 0; i < 2000; i++) {
      const t = ids.traceId();
      const s = ids.spanId();
      expect(t).toMatch(/^[0-9a-f]{32}$/);
      expect(s).toMatch(/^[0-9a-f]{16}$/);
      seen.add(t).add(s);
    }
    expect(seen.size).toBe(4000);
  });
});

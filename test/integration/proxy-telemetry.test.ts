// Tracing and the access log through two real sidecars on loopback with mutual TLS: the trace
// headers the app receives, the spans a collector receives (a real HTTP server taking OTLP/JSON),
// sampling decisions honoured, and the access log lines parsed field by field.

import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import type { ProxyScope } from '../../src/api/mesh';
import { ProxyTelemetry } from '../../src/agent/proxy/telemetry/telemetry';
import { endpoint, meshedAs, meshState, port, proxyScope, service, spiffe } from '../fixtures/mesh';
import {
  destination,
  get,
  startEchoApp,
  startSidecar,
  withSettings,
  type EchoApp,
  type LoopbackSidecar,
} from '../fixtures/sidecars';

jest.setTimeout(30_000);

interface Span {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: { key: string; value: Record<string, unknown> }[];
}
interface Export {
  service: string;
  spans: Span[];
}

const CLUSTER_IP = '10.96.0.10';
const TCP_IP = '10.96.0.11';
const H2_IP = '10.96.0.12';

let collector: http.Server;
let collectorUrl: string;
const received: Export[] = [];
let app: EchoApp;
let h2App: http2.Http2Server;
let h2Port: number;
let tcpApp: net.Server;
let tcpPort: number;
let a: LoopbackSidecar;
let b: LoopbackSidecar;
const aLog: string[] = [];
const bLog: string[] = [];

const tag = (s: Span, key: string): unknown => {
  const v = s.attributes.find((x) => x.key === key)?.value;
  return v === undefined ? undefined : Object.values(v)[0];
};
const allSpans = (): (Span & { service: string })[] =>
  received.flatMap((e) => e.spans.map((s) => ({ ...s, service: e.service })));

function meshes(
  settings: { samplingPercent: number; accessLog: boolean },
  scope: { client?: Partial<ProxyScope>; server?: Partial<ProxyScope> } = {},
): void {
  const s = {
    tracing: { otlpEndpoint: collectorUrl, samplingPercent: settings.samplingPercent },
    accessLog: settings.accessLog,
  };
  a.sidecar.setMesh(
    withSettings(
      meshState(
        proxyScope('client', (p) => ({ ...p, ...scope.client })),
        service(
          'server',
          CLUSTER_IP,
          [port(80, 'http')],
          [endpoint('127.0.0.1', { 80: b.inbound }, meshedAs('server'))],
        ),
        service(
          'tcp-echo',
          TCP_IP,
          [port(5000, 'tcp')],
          [endpoint('127.0.0.1', { 5000: b.inbound }, meshedAs('server'))],
        ),
        service(
          'h2-echo',
          H2_IP,
          [port(8080, 'http2')],
          [endpoint('127.0.0.1', { 8080: b.inbound }, meshedAs('server'))],
        ),
      ),
      s,
    ),
  );
  b.sidecar.setMesh(
    withSettings(meshState(proxyScope('server', (p) => ({ ...p, ...scope.server }))), s),
  );
}

async function spansOf(traceId: string, count: number): Promise<Span[]> {
  for (let i = 0; i < 200; i++) {
    await Promise.all([a.sidecar.telemetry.flush(), b.sidecar.telemetry.flush()]);
    const found = allSpans().filter((s) => s.traceId === traceId);
    if (found.length >= count) return found;
    await new Promise((r) => setTimeout(r, 25));
  }
  return allSpans().filter((s) => s.traceId === traceId);
}

beforeAll(async () => {
  collector = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString()) as {
        resourceSpans: {
          resource: { attributes: { key: string; value: { stringValue: string } }[] };
          scopeSpans: { spans: Span[] }[];
        }[];
      };
      for (const rs of body.resourceSpans) {
        const name = rs.resource.attributes.find((x) => x.key === 'service.name');
        received.push({
          service: name?.value.stringValue ?? '',
          spans: rs.scopeSpans.flatMap((s) => s.spans),
        });
      }
      expect(req.url).toBe('/v1/traces');
      expect(req.headers['content-type']).toBe('application/json');
      res.end('{}');
    });
  });
  await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
  collectorUrl = `http://127.0.0.1:${(collector.address() as AddressInfo).port}`;
  app = await startEchoApp();
  h2App = http2.createServer((req, res) => {
    res.setHeader('x-seen-traceparent', String(req.headers.traceparent));
    res.end('h2 ok');
  });
  await new Promise<void>((r) => h2App.listen(0, '127.0.0.1', r));
  h2Port = (h2App.address() as AddressInfo).port;
  tcpApp = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('data', (d: Buffer) => s.write(d));
    s.on('end', () => s.end());
  });
  await new Promise<void>((r) => tcpApp.listen(0, '127.0.0.1', r));
  tcpPort = (tcpApp.address() as AddressInfo).port;
  const sink = (lines: string[]) => ({ write: (l: string) => lines.push(l), dropped: 0 });
  a = await startSidecar('client', new ProxyTelemetry({ accessLog: sink(aLog) }));
  b = await startSidecar('server', new ProxyTelemetry({ accessLog: sink(bLog) }));
});

afterAll(async () => {
  await Promise.all([a.close(), b.close(), app.close()]);
  h2App.close();
  tcpApp.close();
  collector.close();
});

beforeEach(() => {
  received.length = 0;
  app.seen.length = 0;
  aLog.length = 0;
  bLog.length = 0;
  a.outboundTarget = destination(CLUSTER_IP, 80);
  b.inboundTarget = destination('127.0.0.1', app.port);
});

describe('tracing through two sidecars', () => {
  it('starts a trace at the first sidecar: one client and one server span, the app gets its parent', async () => {
    meshes({ samplingPercent: 100, accessLog: false });
    const res = await get(a.outbound, '/reviews/1?x=1');
    expect(res.status).toBe(200);
    const h = app.seen[0] as http.IncomingHttpHeaders;
    const tp = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(String(h.traceparent));
    expect(tp).not.toBeNull();
    const [, traceId, appParent] = tp as RegExpExecArray;
    expect(h['x-b3-traceid']).toBe(traceId);
    expect(h['x-b3-spanid']).toBe(appParent);
    expect(h['x-b3-sampled']).toBe('1');

    const spans = await spansOf(traceId as string, 2);
    expect(spans).toHaveLength(2);
    const client = spans.find((s) => s.kind === 3) as Span & { service: string };
    const server = spans.find((s) => s.kind === 2) as Span & { service: string };
    expect(client.parentSpanId).toBeUndefined(); // the root: no trace came from the app
    expect(server.parentSpanId).toBe(client.spanId);
    expect(server.spanId).toBe(appParent); // the app's outgoing calls become its children
    expect(h['x-b3-parentspanid']).toBe(client.spanId);
    expect(client.service).toBe('client.default');
    expect(server.service).toBe('server.default');
    expect(client.name).toBe('server.default.svc.cluster.local:80/*');
    for (const s of [client, server]) {
      expect(tag(s, 'http.status_code')).toBe('200');
      expect(tag(s, 'http.method')).toBe('GET');
      expect(tag(s, 'istio.source_principal')).toBe(spiffe('client'));
      expect(tag(s, 'istio.destination_principal')).toBe(spiffe('server'));
      expect(tag(s, 'guid:x-request-id')).toBe(h['x-request-id']);
      expect(tag(s, 'response_flags')).toBe('-');
    }
    expect(tag(client, 'upstream_cluster')).toBe('outbound|80||server.default.svc.cluster.local');
    expect(tag(client, 'upstream_address')).toBe(`127.0.0.1:${b.inbound}`);
    expect(tag(server, 'upstream_cluster')).toBe(`inbound|${app.port}||`);
  });

  it('joins the trace the app sent and honours its "not sampled" at 100%', async () => {
    meshes({ samplingPercent: 100, accessLog: false });
    const traceId = 'ab'.repeat(16);
    await get(a.outbound, '/', {
      traceparent: `00-${traceId}-${'cd'.repeat(8)}-00`,
      tracestate: 'v=1',
    });
    const h = app.seen[0] as http.IncomingHttpHeaders;
    expect(String(h.traceparent)).toMatch(new RegExp(`^00-${traceId}-[0-9a-f]{16}-00$`));
    expect(h.tracestate).toBe('v=1');
    expect(h['x-b3-sampled']).toBe('0');
    await a.sidecar.telemetry.flush();
    await b.sidecar.telemetry.flush();
    expect(allSpans()).toEqual([]);
  });

  it('honours a sampled B3 request at 0%, its span a child of the app span', async () => {
    meshes({ samplingPercent: 0, accessLog: false });
    const traceId = '12'.repeat(16);
    await get(a.outbound, '/', {
      'x-b3-traceid': traceId,
      'x-b3-spanid': '34'.repeat(8),
      'x-b3-sampled': '1',
    });
    const spans = await spansOf(traceId, 2);
    expect(spans.map((s) => s.kind).sort()).toEqual([2, 3]);
    expect(spans.find((s) => s.kind === 3)?.parentSpanId).toBe('34'.repeat(8));
  });

  it('samples nothing new at 0% but still propagates a trace', async () => {
    meshes({ samplingPercent: 0, accessLog: false });
    for (let i = 0; i < 20; i++) await get(a.outbound, '/');
    expect(app.seen.map((h) => String(h.traceparent))).toEqual(
      Array(20).fill(expect.stringMatching(/^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/)),
    );
    await a.sidecar.telemetry.flush();
    expect(allSpans()).toEqual([]);
  });

  it('traces HTTP/2 through the sidecars too', async () => {
    meshes({ samplingPercent: 100, accessLog: false });
    a.outboundTarget = destination(H2_IP, 8080);
    b.inboundTarget = destination('127.0.0.1', h2Port);
    const session = http2.connect(`http://127.0.0.1:${a.outbound}`);
    const seen = await new Promise<string>((resolve, reject) => {
      const req = session.request({ ':path': '/h2', ':authority': 'h2-echo' });
      req.on('response', (headers) => resolve(String(headers['x-seen-traceparent'])));
      req.on('error', reject);
      req.resume();
      req.end();
    });
    session.close();
    const traceId = seen.split('-')[1] as string;
    const spans = await spansOf(traceId, 2);
    expect(spans.map((s) => s.kind).sort()).toEqual([2, 3]);
    const client = spans.find((s) => s.kind === 3) as Span;
    expect(tag(client, 'http.protocol')).toBe('HTTP/2');
    expect(seen.split('-')[2]).toBe(spans.find((s) => s.kind === 2)?.spanId);
  });
});

describe('the access log', () => {
  it('writes one JSON line per request on each side, without credentials', async () => {
    meshes({ samplingPercent: 0, accessLog: true });
    const res = await get(a.outbound, '/status/503?token=s3cret', {
      authorization: 'Bearer s3cret',
      cookie: 'session=s3cret',
      'user-agent': 'test-agent/1',
      'x-request-id': 'rid-42',
    });
    expect(res.status).toBe(503);
    await new Promise((r) => setTimeout(r, 50));
    expect(aLog).toHaveLength(1);
    expect(bLog).toHaveLength(1);
    const out = JSON.parse(aLog[0] as string) as Record<string, unknown>;
    const inb = JSON.parse(bLog[0] as string) as Record<string, unknown>;
    for (const line of [...aLog, ...bLog]) expect(line).not.toContain('s3cret');
    expect(out).toMatchObject({
      direction: 'outbound',
      method: 'GET',
      path: '/status/503',
      protocol: 'HTTP/1.1',
      response_code: 503,
      response_flags: '-',
      bytes_received: 0,
      user_agent: 'test-agent/1',
      request_id: 'rid-42',
      authority: 'server',
      upstream_host: `127.0.0.1:${b.inbound}`,
      upstream_cluster: 'outbound|80||server.default.svc.cluster.local',
      upstream_peer_uri_san: spiffe('server'),
      connection_security_policy: 'mutual_tls',
    });
    expect(out.bytes_sent).toBe('hello from /status/503?token=s3cret'.length);
    expect(new Date(out.start_time as string).getTime()).toBeGreaterThan(Date.now() - 10_000);
    expect(out.duration).toEqual(expect.any(Number));
    expect(out.trace_id).toMatch(/^[0-9a-f]{32}$/);
    expect(inb).toMatchObject({
      direction: 'inbound',
      path: '/status/503',
      response_code: 503,
      request_id: 'rid-42',
      upstream_host: `127.0.0.1:${app.port}`,
      downstream_peer_uri_san: spiffe('client'),
      source_principal: spiffe('client'),
      trace_id: out.trace_id,
    });
  });

  it('writes a line when a TCP connection closes, with its bytes', async () => {
    meshes({ samplingPercent: 0, accessLog: true });
    a.outboundTarget = destination(TCP_IP, 5000);
    b.inboundTarget = destination('127.0.0.1', tcpPort);
    const socket = net.connect({ port: a.outbound, host: '127.0.0.1', allowHalfOpen: true });
    const echoed = await new Promise<string>((resolve) => {
      let got = '';
      socket.on('data', (d: Buffer) => (got += d.toString()));
      socket.on('end', () => {
        socket.end();
        resolve(got);
      });
      socket.end('hello tcp');
    });
    expect(echoed).toBe('hello tcp');
    for (let i = 0; i < 100 && (aLog.length === 0 || bLog.length === 0); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const out = JSON.parse(aLog[0] as string) as Record<string, unknown>;
    expect(out).toMatchObject({
      direction: 'outbound',
      protocol: 'TCP',
      method: null,
      path: null,
      response_code: 0,
      bytes_received: 9,
      bytes_sent: 9,
      upstream_cluster: 'outbound|5000||tcp-echo.default.svc.cluster.local',
      upstream_peer_uri_san: spiffe('server'),
    });
    expect(JSON.parse(bLog[0] as string)).toMatchObject({
      direction: 'inbound',
      protocol: 'TCP',
      bytes_received: 9,
      bytes_sent: 9,
      source_principal: spiffe('client'),
    });
  });

  it("logs only the side a Telemetry's mode names (SERVER: inbound, CLIENT: outbound)", async () => {
    meshes(
      { samplingPercent: 0, accessLog: true },
      { client: { accessLogSide: 'inbound' }, server: { accessLogSide: 'inbound' } },
    );
    await get(a.outbound, '/one');
    await new Promise((r) => setTimeout(r, 50));
    expect(aLog).toEqual([]);
    expect(bLog.map((l) => (JSON.parse(l) as { path: string }).path)).toEqual(['/one']);
    meshes(
      { samplingPercent: 0, accessLog: true },
      { client: { accessLogSide: 'outbound' }, server: { accessLogSide: 'outbound' } },
    );
    await get(a.outbound, '/two');
    await new Promise((r) => setTimeout(r, 50));
    expect(aLog.map((l) => (JSON.parse(l) as { path: string }).path)).toEqual(['/two']);
    expect(bLog).toHaveLength(1);
  });

  it("reports Istio's metrics as a Telemetry's overrides say: a side off, a label removed", async () => {
    meshes(
      { samplingPercent: 0, accessLog: false },
      {
        client: { metricOverrides: [{ metric: 'REQUEST_COUNT', mode: 'CLIENT', disabled: true }] },
        server: {
          metricOverrides: [
            { metric: 'ALL_METRICS', mode: 'SERVER', removeTags: ['source_principal'] },
          ],
        },
      },
    );
    await get(a.outbound, '/counted');
    await new Promise((r) => setTimeout(r, 50));
    const client = a.metrics.render();
    const server = b.metrics.render();
    expect(client).not.toContain('istio_requests_total{');
    expect(client).toMatch(/istio_request_duration_milliseconds_count\{reporter="source"/);
    expect(server).toMatch(/istio_requests_total\{reporter="destination"/);
    expect(server).not.toContain('source_principal=');
  });

  it('writes nothing when off', async () => {
    meshes({ samplingPercent: 0, accessLog: false });
    await get(a.outbound, '/');
    await new Promise((r) => setTimeout(r, 20));
    expect(aLog).toEqual([]);
    expect(bLog).toEqual([]);
  });
});

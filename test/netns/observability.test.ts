// Observability against the real tools, from real sidecars in network namespaces (root: `make
// netns`): the agents of the MeshRig (UID 1337, the rules of `mooring iptables`) take their
// tracing and access log settings from the server's configuration file, send spans to a real
// Jaeger and are scraped by a real Prometheus, both in the hub (10.77.0.1, where only the Pods
// reach them); the mesh graph of the rig's `mooring serve --prometheus-url` is drawn by headless
// Chromium, run in the hub as well. Nothing leaves the machine.
//
//   web 10.77.0.21 ──> reviews (Service 10.96.20.1:9080, pod 10.77.0.22)
//        └──────────> ratings (Service 10.96.20.2:9080, pod 10.77.0.23, access log off by
//                      its annotation) <── reviews

import { chmodSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { DASHBOARDS, dashboard, queries, substitute } from '../chart/dashboards';
import { startJaeger, type Jaeger } from '../e2e/harness/jaeger';
import { delay } from '../e2e/harness/processes';
import { startPrometheus, type Prometheus } from '../e2e/harness/prometheus';
import {
  ECHO,
  HUB_IP,
  MeshRig,
  podObject,
  serviceObject,
  sliceObject,
  type HttpAnswer,
  type Pod,
  type PortSpec,
} from './mesh-rig';
import { checkPreconditions, removeLeftovers, ROOT } from './support';

jest.setTimeout(180_000);

const ARTIFACTS = process.env.MOORING_TEST_ARTIFACTS ?? join(ROOT, '.cache', 'artifacts');
const REVIEWS_IP = '10.96.20.1';
const RATINGS_IP = '10.96.20.2';
const JAEGER_PORTS = { otlpHttp: 4318, otlpGrpc: 4317, query: 16686, queryGrpc: 16685 };
const PROMETHEUS_PORT = 9091;
const PORTS: PortSpec[] = [
  { name: 'http', port: 9080, targetPort: 8080 },
  { name: 'tcp-echo', port: 9000, targetPort: 9000 },
];
const SPIFFE = (sa: string): string => `spiffe://cluster.local/ns/default/sa/${sa}`;
const FQDN = (svc: string): string => `${svc}.default.svc.cluster.local`;

let rig: MeshRig;
let web: Pod;
let reviews: Pod;
let ratings: Pod;
let jaeger: Jaeger;

/** Requests sent through the sidecars in this file, by Service, and the 503s among reviews'. */
const sentTo = { reviews: 0, ratings: 0, reviews503: 0 };

async function request(
  from: Pod,
  to: 'reviews' | 'ratings',
  path: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<HttpAnswer> {
  const url = `http://${to === 'reviews' ? REVIEWS_IP : RATINGS_IP}:9080${path}`;
  const answer = await rig.http(from.spec.name, url, opts);
  sentTo[to]++;
  return answer;
}

interface Repeated {
  sent: number;
  byStatus: Record<string, number>;
}

/** `count` requests made by a Pod's app itself (the echo app's POST /repeat), one after another. */
async function repeat(
  from: Pod,
  to: 'reviews' | 'ratings',
  path: string,
  count: number,
  intervalMs: number,
): Promise<Repeated> {
  const url = `http://${to === 'reviews' ? REVIEWS_IP : RATINGS_IP}:9080${path}`;
  const body = JSON.stringify({ url, count, intervalMs });
  const r = await rig.exec(
    from.ns,
    ['curl', '-sS', '-XPOST', '--data-binary', body, 'http://127.0.0.1:8081/repeat'],
    [],
    120_000,
  );
  if (r.code !== 0) throw new Error(`repeat from ${from.spec.name} failed: ${r.stderr}`);
  const out = JSON.parse(r.stdout) as Repeated;
  sentTo[to] += out.sent;
  if (to === 'reviews') sentTo.reviews503 += out.byStatus['503'] ?? 0;
  return out;
}

/** The access log lines (JSON) a Pod's agent has printed whole on its stdout so far. */
function accessLog(pod: Pod): Record<string, unknown>[] {
  const lines = pod.logs.agentStdout.split('\n');
  lines.pop(); // '' after the last newline, or a line still being written
  return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
}

const counter = (text: string, name: string): number =>
  Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);

function meshObjects(): object[] {
  return [
    serviceObject('reviews', REVIEWS_IP, PORTS, { app: 'reviews' }),
    sliceObject('reviews', PORTS, [reviews]),
    serviceObject('ratings', RATINGS_IP, PORTS, { app: 'ratings' }),
    sliceObject('ratings', PORTS, [ratings]),
    ...[web, reviews, ratings].map(podObject),
  ];
}

beforeAll(async () => {
  await checkPreconditions(
    ['ip', 'iptables', 'setpriv', 'curl'],
    [
      ['src/agent/agent.ts', 'dist/agent/agent.js'],
      ['src/agent/proxy/telemetry/telemetry.ts', 'dist/agent/proxy/telemetry/telemetry.js'],
      ['src/ui/graph-page.ts', 'dist/ui/graph-page.js'],
    ],
  );
  if (!existsSync(ECHO))
    throw new Error(`${ECHO} is missing: run \`make netns\` (it compiles the echo app)`);
  await removeLeftovers();
  mkdirSync(ARTIFACTS, { recursive: true });
  // The agents (UID 1337) and the apps (UID 1000) read the repository's files.
  chmodSync(ROOT, 0o755);
  rig = new MeshRig('obs');
  await rig.start(
    {
      'token-web': { namespace: 'default', serviceAccount: 'web' },
      'token-reviews': { namespace: 'default', serviceAccount: 'reviews' },
      'token-ratings': { namespace: 'default', serviceAccount: 'ratings' },
    },
    {
      // The mesh-wide settings every proxy gets through the push (PRODUCT.md: mesh.tracing.*,
      // mesh.accessLog); the graph reads the hub's Prometheus.
      config: {
        mesh: {
          tracing: {
            otlpEndpoint: `http://${HUB_IP}:${JAEGER_PORTS.otlpHttp}`,
            samplingPercent: 100,
          },
          accessLog: true,
        },
        ui: { prometheusUrl: `http://127.0.0.1:${PROMETHEUS_PORT}` },
      },
    },
  );
  jaeger = await startJaeger({ netns: rig.hub, host: HUB_IP, ports: JAEGER_PORTS });
  web = await rig.addPod({ name: 'web', ip: '10.77.0.21', meshed: true });
  reviews = await rig.addPod({ name: 'reviews', ip: '10.77.0.22', meshed: true });
  ratings = await rig.addPod({
    name: 'ratings',
    ip: '10.77.0.23',
    meshed: true,
    annotations: { 'proxy.mooring.dev/access-log': 'false' },
  });
  rig.writeMesh('mesh.yaml', meshObjects());
  for (const name of ['web', 'reviews', 'ratings']) await rig.waitReady(name);
  // The first configuration is in: every proxy knows both Services.
  for (const name of ['web', 'reviews']) {
    await rig.waitFor(`${name} knows the Services`, async () => {
      const dump = (await rig.configDump(name)) as { mesh: { services: { key: string }[] } };
      return dump.mesh.services.length >= 2;
    });
  }
}, 240_000);

afterAll(async () => {
  await jaeger?.stop();
  await rig?.stop();
});

describe('traces in Jaeger', () => {
  interface JaegerSpan {
    spanID: string;
    operationName: string;
    processID: string;
    references: { refType: string; spanID: string }[];
    tags: { key: string; value: unknown }[];
  }
  interface JaegerTrace {
    spans: JaegerSpan[];
    processes: Record<string, { serviceName: string }>;
  }
  const serviceOf = (t: JaegerTrace, s: JaegerSpan): string =>
    t.processes[s.processID]?.serviceName ?? '';
  const tag = (s: JaegerSpan, key: string): unknown => s.tags.find((x) => x.key === key)?.value;

  /** The trace from Jaeger's query API once it has `spans` spans. */
  async function jaegerTrace(traceId: string, spans: number): Promise<JaegerTrace> {
    let trace: JaegerTrace | null = null;
    await rig.waitFor(`${spans} spans of ${traceId} in Jaeger`, async () => {
      const res = await jaeger.fetch(`${jaeger.queryUrl}/api/traces/${traceId}`);
      if (res.status !== 200) return false;
      trace = ((await res.json()) as { data: JaegerTrace[] }).data[0] ?? null;
      return trace !== null && trace.spans.length >= spans;
    });
    return trace as unknown as JaegerTrace;
  }

  it('one request through two sidecars is one trace with the client span and the server span', async () => {
    const answer = await request(web, 'reviews', '/reviews/7');
    expect(answer.status).toBe(200);
    const seen = (JSON.parse(answer.body ?? '{}') as { headers: Record<string, string> }).headers;
    // What the first sidecar made, as the app behind the second one received it.
    const [, traceId, spanId, flags] = String(seen.traceparent).split('-');
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(flags).toBe('01');
    expect(seen['x-b3-traceid']).toBe(traceId);
    expect(seen['x-b3-spanid']).toBe(spanId);
    expect(seen['x-b3-sampled']).toBe('1');
    expect(seen['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);

    const t = await jaegerTrace(traceId as string, 2);
    expect(t.spans).toHaveLength(2);
    const client = t.spans.find((s) => tag(s, 'span.kind') === 'client') as JaegerSpan;
    const server = t.spans.find((s) => tag(s, 'span.kind') === 'server') as JaegerSpan;
    expect(serviceOf(t, client)).toBe('web.default');
    expect(serviceOf(t, server)).toBe('reviews.default');
    expect(client.operationName).toBe(`${FQDN('reviews')}:9080/*`);
    expect(client.references).toEqual([]);
    // The server span is the child of the client span; the app behind it got the server span's
    // id as its parent (its own calls, if it propagates the headers, continue from there).
    expect(server.spanID).toBe(spanId);
    expect(server.references).toEqual([
      expect.objectContaining({ refType: 'CHILD_OF', spanID: client.spanID }),
    ]);
    expect(tag(client, 'http.status_code')).toBe(200);
    expect(tag(server, 'http.status_code')).toBe(200);
    expect(tag(client, 'upstream_cluster')).toBe(`outbound|9080||${FQDN('reviews')}`);
    expect(tag(client, 'upstream_address')).toBe(`${reviews.spec.ip}:8080`);
    expect(tag(client, 'istio.destination_principal')).toBe(SPIFFE('reviews'));
    expect(tag(server, 'istio.source_principal')).toBe(SPIFFE('web'));
    expect(tag(server, 'connection_security_policy')).toBe('mutual_tls');
    expect(tag(client, 'guid:x-request-id')).toBe(seen['x-request-id']);
    expect(tag(server, 'response_flags')).toBe('-');
  });

  it('an app that copies the trace headers joins its own call to the trace: four spans, three Pods', async () => {
    // web -> reviews (its app calls ratings, copying the headers it got) -> ratings
    const answer = await request(web, 'reviews', '/call', {
      method: 'POST',
      body: JSON.stringify({ url: `http://${RATINGS_IP}:9080/stars`, propagate: true }),
    });
    sentTo.ratings++;
    expect(answer.status).toBe(200);
    const call = JSON.parse(answer.body ?? '{}') as { status: number; body: string };
    expect(call.status).toBe(200);
    const atRatings = (JSON.parse(call.body) as { headers: Record<string, string> }).headers;
    const [, traceId, parentOfApp] = String(atRatings.traceparent).split('-');

    const trace = await jaegerTrace(traceId as string, 4);
    const byName = (service: string, kind: string): JaegerSpan => {
      const s = trace.spans.find(
        (x) => serviceOf(trace, x) === service && tag(x, 'span.kind') === kind,
      );
      if (s === undefined) throw new Error(`no ${kind} span of ${service} in ${traceId}`);
      return s;
    };
    const webClient = byName('web.default', 'client');
    const reviewsServer = byName('reviews.default', 'server');
    const reviewsClient = byName('reviews.default', 'client');
    const ratingsServer = byName('ratings.default', 'server');
    expect(trace.spans).toHaveLength(4);
    const parentOf = (x: JaegerSpan): string | undefined =>
      x.references.find((r) => r.refType === 'CHILD_OF')?.spanID;
    expect(parentOf(webClient)).toBeUndefined();
    expect(parentOf(reviewsServer)).toBe(webClient.spanID);
    expect(parentOf(reviewsClient)).toBe(reviewsServer.spanID);
    expect(parentOf(ratingsServer)).toBe(reviewsClient.spanID);
    expect(parentOfApp).toBe(ratingsServer.spanID);
    expect(tag(reviewsClient, 'upstream_cluster')).toBe(`outbound|9080||${FQDN('ratings')}`);
    expect(tag(ratingsServer, 'istio.source_principal')).toBe(SPIFFE('reviews'));
    // One request id across the hops, as the app copied it.
    expect(new Set(trace.spans.map((x) => tag(x, 'guid:x-request-id')))).toEqual(
      new Set([atRatings['x-request-id']]),
    );
  });

  it('with Jaeger stopped, requests are unaffected and the drop counter rises', async () => {
    const DROPPED = 'mooring_proxy_spans_dropped_total\\{reason="export_failed"\\}';
    const SAMPLED = 'mooring_proxy_spans_sampled_total';
    const before = counter(await rig.stats('web'), DROPPED);
    const sampledBefore = counter(await rig.stats('web'), SAMPLED);
    expect(before).toBe(0);
    expect(sampledBefore).toBe(2);
    await jaeger.stop();
    const out = await repeat(web, 'reviews', '/after-jaeger', 30, 0);
    expect(out.byStatus).toEqual({ 200: 30 });
    // Each of the 30 client spans is dropped once its export fails (a batch every second).
    await rig.waitFor(
      'the drop counter at 30',
      async () => counter(await rig.stats('web'), DROPPED) >= 30,
      30_000,
    );
    expect(counter(await rig.stats('web'), SAMPLED)).toBe(sampledBefore + 30);
  });
});

describe('the access log', () => {
  const SECRETS = ['Bearer tok-3f1a9c', 'session=ck-77b2e0', 'pk-91d4aa', 'qs-5c6e21'];

  it('writes one JSON line per request on each side with Envoy fields, and never a credential', async () => {
    const requestId = '6f1f0a52-3d4c-4b36-9f84-2f3c6f0e4b11';
    const body = 'x'.repeat(123);
    const started = Date.now();
    const answer = await request(web, 'reviews', `/login?access_token=${SECRETS[3]}&n=1`, {
      method: 'POST',
      body,
      headers: {
        authorization: SECRETS[0] as string,
        cookie: SECRETS[1] as string,
        'proxy-authorization': `Basic ${SECRETS[2]}`,
        'x-api-key': SECRETS[2] as string,
        'user-agent': 'obs-test/1',
        'x-request-id': requestId,
      },
    });
    expect(answer.status).toBe(200);
    const responseBytes = Buffer.byteLength(answer.body ?? '');
    const find = async (pod: Pod): Promise<Record<string, unknown>> => {
      let line: Record<string, unknown> | undefined;
      await rig.waitFor(`${pod.spec.name}'s access log line`, () => {
        line = accessLog(pod).find((l) => l.request_id === requestId);
        return Promise.resolve(line !== undefined);
      });
      return line as Record<string, unknown>;
    };
    const out = await find(web);
    const into = await find(reviews);
    const traceId = String(
      (JSON.parse(answer.body ?? '{}') as { headers: Record<string, string> }).headers.traceparent,
    ).split('-')[1];

    const FIELDS = [
      'authority',
      'bytes_received',
      'bytes_sent',
      'connection_security_policy',
      'destination_principal',
      'destination_service',
      'direction',
      'downstream_peer_uri_san',
      'downstream_remote_address',
      'duration',
      'grpc_status',
      'method',
      'path',
      'protocol',
      'request_id',
      'response_code',
      'response_flags',
      'source_principal',
      'start_time',
      'trace_id',
      'upstream_cluster',
      'upstream_host',
      'upstream_peer_uri_san',
      'user_agent',
    ];
    for (const line of [out, into]) {
      expect(Object.keys(line).sort()).toEqual(FIELDS);
      const start = Date.parse(String(line.start_time));
      expect(start).toBeGreaterThanOrEqual(started - 1_000);
      expect(start).toBeLessThanOrEqual(Date.now());
      expect(line.start_time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(Number.isInteger(line.duration) && (line.duration as number) >= 0).toBe(true);
      expect(line).toMatchObject({
        method: 'POST',
        path: '/login',
        protocol: 'HTTP/1.1',
        response_code: 200,
        grpc_status: null,
        response_flags: '-',
        bytes_received: 123,
        bytes_sent: responseBytes,
        authority: `${REVIEWS_IP}:9080`,
        user_agent: 'obs-test/1',
        request_id: requestId,
        trace_id: traceId,
        source_principal: SPIFFE('web'),
        destination_principal: SPIFFE('reviews'),
        destination_service: FQDN('reviews'),
        connection_security_policy: 'mutual_tls',
      });
    }
    expect(out).toMatchObject({
      direction: 'outbound',
      upstream_host: `${reviews.spec.ip}:8080`,
      upstream_cluster: `outbound|9080||${FQDN('reviews')}`,
      upstream_peer_uri_san: SPIFFE('reviews'),
      downstream_peer_uri_san: null,
    });
    expect(out.downstream_remote_address).toMatch(/^10\.77\.0\.21:\d+$/);
    expect(into).toMatchObject({
      direction: 'inbound',
      upstream_cluster: 'inbound|8080||',
      downstream_peer_uri_san: SPIFFE('web'),
      upstream_peer_uri_san: null,
    });
    expect(into.upstream_host).toMatch(/:8080$/);
    expect(into.downstream_remote_address).toMatch(/^10\.77\.0\.21:\d+$/);
    // The app got the credentials; no log of the agents has any of them.
    const seen = (JSON.parse(answer.body ?? '{}') as { headers: Record<string, string> }).headers;
    expect(seen.authorization).toBe(SECRETS[0]);
    for (const pod of [web, reviews]) {
      for (const secret of SECRETS) expect(pod.logs.agent).not.toContain(secret);
    }
  });

  it('writes one line per TCP connection, with the bytes each way', async () => {
    const TCP = `
const net = require('net');
const s = net.connect(9000, process.argv[1], () => s.end('hello mesh\\n'));
let got = '';
s.on('data', (d) => (got += d));
s.on('end', () => console.log(JSON.stringify({ got })));
s.on('error', (e) => console.log(JSON.stringify({ error: e.code })));`;
    const before = accessLog(web).filter((l) => l.protocol === 'TCP').length;
    const echoed = JSON.parse(await rig.node('web', TCP, [REVIEWS_IP])) as { got?: string };
    expect(echoed.got).toBe('hello mesh\n');
    let lines: Record<string, unknown>[] = [];
    await rig.waitFor('the TCP line', () => {
      lines = accessLog(web).filter((l) => l.protocol === 'TCP');
      return Promise.resolve(lines.length > before);
    });
    expect(lines).toHaveLength(before + 1);
    expect(lines.at(-1)).toMatchObject({
      direction: 'outbound',
      protocol: 'TCP',
      method: null,
      path: null,
      response_code: 0,
      bytes_received: 11,
      bytes_sent: 11,
      upstream_host: `${reviews.spec.ip}:9000`,
      upstream_cluster: `outbound|9000||${FQDN('reviews')}`,
      destination_service: FQDN('reviews'),
      connection_security_policy: 'mutual_tls',
      upstream_peer_uri_san: SPIFFE('reviews'),
    });
  });

  it("is off in the Pod whose annotation says so, against the mesh's default", async () => {
    const out = await repeat(web, 'ratings', '/rated', 3, 0);
    expect(out.byStatus).toEqual({ 200: 3 });
    await rig.waitFor('web logged its calls to ratings', () =>
      Promise.resolve(accessLog(web).filter((l) => l.path === '/rated').length === 3),
    );
    expect(ratings.logs.agentStdout).toBe('');
  });
});

describe('metrics in Prometheus, and the mesh graph', () => {
  let prometheus: Prometheus;
  let browser: Browser | null = null;

  beforeAll(async () => {
    // Scraped where a Pod's prometheus.io/* annotations point after injection: the agent's merged
    // endpoint (15020), which carries the proxy's metrics.
    prometheus = await startPrometheus(
      [
        {
          job: 'sidecars',
          metricsPath: '/stats/prometheus',
          targets: [web, reviews, ratings].map((p) => `${p.spec.ip}:15020`),
        },
      ],
      { netns: rig.hub, port: PROMETHEUS_PORT },
    );
    // reviews' app answers 503 on /healthz from now on: a quarter of web's calls to it fail.
    const off = await rig.exec(reviews.ns, [
      'curl',
      '-sf',
      '-XPOST',
      '--data-binary',
      '{"http":false}',
      'http://127.0.0.1:8081/admin/health',
    ]);
    expect(off.code).toBe(0);
    // Every series the traffic below grows but one (reviews' 503s) exists already, from the tests
    // above: once Prometheus has sampled them, rate() sees all of the traffic, none of it hidden
    // in a first sample.
    await prometheus.waitForScrapes(2);
    // Traffic over about 8 seconds (8 scrapes), so that rate() sees it grow.
    const [ok, failed, webRatings, reviewsRatings] = await Promise.all([
      repeat(web, 'reviews', '/ok', 60, 130),
      repeat(web, 'reviews', '/healthz', 20, 400),
      repeat(web, 'ratings', '/', 40, 200),
      repeat(reviews, 'ratings', '/', 80, 100),
    ]);
    expect(ok?.byStatus).toEqual({ 200: 60 });
    expect(failed?.byStatus).toEqual({ 503: 20 });
    expect(webRatings?.byStatus).toEqual({ 200: 40 });
    expect(reviewsRatings?.byStatus).toEqual({ 200: 80 });
    await prometheus.waitForScrapes(10);
    await delay(2_500); // two more scrapes after the last request
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await prometheus?.stop();
  });

  it('answers the request count and rate per destination service with the traffic sent', async () => {
    const totals = await prometheus.query(
      'sum by (destination_service) (istio_requests_total{reporter="source"})',
    );
    const byService = Object.fromEntries(
      totals.map((s) => [s.metric.destination_service, Number(s.value[1])]),
    );
    expect(byService).toEqual({
      [FQDN('reviews')]: sentTo.reviews,
      [FQDN('ratings')]: sentTo.ratings,
    });
    const errors = await prometheus.query(
      'sum by (destination_service) (istio_requests_total{reporter="destination",response_code="503"})',
    );
    expect(errors.map((s) => [s.metric.destination_service, Number(s.value[1])])).toEqual([
      [FQDN('reviews'), sentTo.reviews503],
    ]);
    expect(sentTo.reviews503).toBe(20);
    const rates = await prometheus.query(
      'sum by (destination_service) (rate(istio_requests_total{reporter="source"}[1m]))',
    );
    const rate = Object.fromEntries(
      rates.map((s) => [s.metric.destination_service, Number(s.value[1])]),
    );
    expect(rate[FQDN('reviews')]).toBeGreaterThan(0);
    expect(rate[FQDN('ratings')]).toBeGreaterThan(0);
  });

  it.each(DASHBOARDS)(
    'runs every query of the %s dashboard, and its main panels show the traffic',
    async (name) => {
      const vars = { namespace: 'default', workload: 'reviews', service: FQDN('reviews') };
      const answered: Record<string, number> = {};
      for (const [panel, expr] of queries(dashboard(name))) {
        const result = await prometheus.query(substitute(expr, vars));
        answered[panel] = Math.max(answered[panel] ?? 0, result.length);
      }
      // Every request panel has data (the TCP panels too: the access log test opened one).
      const empty = Object.entries(answered)
        .filter(([panel, n]) => n === 0 && !panel.includes('4xx'))
        .map(([panel]) => panel);
      expect(empty).toEqual([]);
    },
  );

  it("draws the graph in Chromium from the rig's `mooring serve`, with its numbers", async () => {
    // Chromium runs in the hub, where the server's admin port (127.0.0.1:9090) is.
    const wrapper = join(rig.dir, 'chromium-in-hub');
    const chromiumBin = process.env.MOORING_CHROMIUM ?? '/usr/bin/chromium';
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${rig.hub} ${chromiumBin} "$@"\n`, {
      mode: 0o755,
    });
    browser = await chromium.launch({
      executablePath: wrapper,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    await page.goto('http://127.0.0.1:9090/ui/graph?refresh=1&window=1m');
    await page.waitForFunction(
      () => {
        const g = (
          globalThis as unknown as {
            mooringGraph?: { data: { edges: unknown[] } | null; refreshes: number };
          }
        ).mooringGraph;
        return g !== undefined && g.data !== null && g.data.edges.length >= 5 && g.refreshes >= 2;
      },
      undefined,
      { timeout: 60_000 },
    );
    const drawn = await page.evaluate(() => {
      const cy = (
        globalThis as unknown as {
          mooringGraph: {
            cy: {
              nodes(): { map<T>(f: (n: { id(): string }) => T): T[] };
              edges(): { map<T>(f: (e: { id(): string; data(k: string): unknown }) => T): T[] };
            };
          };
        }
      ).mooringGraph.cy;
      return {
        nodes: cy
          .nodes()
          .map((n) => n.id())
          .sort(),
        edges: cy.edges().map((e) => ({
          id: e.id(),
          label: String(e.data('label')),
          rps: Number(e.data('rps')),
          errorRate: Number(e.data('errorRate')),
          p99Ms: e.data('p99Ms') as number | null,
          mtlsShare: Number(e.data('mtlsShare')),
        })),
      };
    });
    await page.screenshot({ path: join(ARTIFACTS, 'mesh-graph.png') });
    expect(pageErrors).toEqual([]);
    expect(drawn.nodes).toEqual([
      `service:${FQDN('ratings')}`,
      `service:${FQDN('reviews')}`,
      'workload:default/ratings',
      'workload:default/reviews',
      'workload:default/web',
    ]);
    const edge = (id: string) => {
      const e = drawn.edges.find((x) => x.id === id);
      if (e === undefined)
        throw new Error(`no edge ${id} among ${drawn.edges.map((x) => x.id).join(', ')}`);
      return e;
    };
    const webReviews = edge(`workload:default/web->service:${FQDN('reviews')}|http`);
    const webRatings = edge(`workload:default/web->service:${FQDN('ratings')}|http`);
    const reviewsRatings = edge(`workload:default/reviews->service:${FQDN('ratings')}|http`);
    const intoRatings = edge(`service:${FQDN('ratings')}->workload:default/ratings|http`);
    edge(`service:${FQDN('reviews')}->workload:default/reviews|http`);
    // The TCP connection of the access log test is older than the window: its edge is idle, and
    // not drawn.
    expect(drawn.edges).toHaveLength(5);
    // A quarter of web's calls to reviews in the window answered 503, and none of the others.
    expect(webReviews.errorRate).toBeGreaterThan(0.1);
    expect(webReviews.errorRate).toBeLessThan(0.4);
    expect(webRatings.errorRate).toBe(0);
    // reviews called ratings twice as often as web did; ratings' own edge carries both.
    expect(reviewsRatings.rps / webRatings.rps).toBeGreaterThan(1.5);
    expect(reviewsRatings.rps / webRatings.rps).toBeLessThan(2.5);
    expect(intoRatings.rps).toBeCloseTo(reviewsRatings.rps + webRatings.rps, 2);
    for (const e of drawn.edges) {
      expect(e.rps).toBeGreaterThan(0);
      expect(e.mtlsShare).toBe(1);
      expect(e.p99Ms).not.toBeNull();
      expect(e.label).toMatch(/^mTLS · \d+\.\d\d rps · \d+\.\d% 5xx · p99 \d+\.\d ms$/);
    }

    await page.click('#show-table');
    // The page's DOM, typed by what is read of it (this project compiles without the DOM lib).
    interface Row {
      querySelectorAll(selector: string): Iterable<{ textContent: string | null }>;
    }
    const rows = await page.$$eval('#edges tbody tr', (trs) =>
      (trs as unknown as Row[]).map((tr) =>
        [...tr.querySelectorAll('td')].map((td) => td.textContent ?? ''),
      ),
    );
    await page.screenshot({ path: join(ARTIFACTS, 'mesh-graph-table.png') });
    expect(rows).toHaveLength(5);
    const webReviewsRow = rows.find(
      (r) => r[0] === 'workload default/web' && r[1] === 'service default/reviews',
    );
    expect(webReviewsRow?.[2]).toBe('http');
    expect(Number(webReviewsRow?.[3])).toBeCloseTo(webReviews.rps, 1);
    expect(webReviewsRow?.[4]).toBe(`${(webReviews.errorRate * 100).toFixed(1)}%`);
    expect(webReviewsRow?.[7]).toBe('yes');
  });
});

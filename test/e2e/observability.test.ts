// Observability against the real tools, through real sidecars with mutual TLS between them on
// loopback (the original destination given by the test, as in test/integration/
// proxy-loopback.test.ts): spans in a real Jaeger (and what happens when it is gone), Istio's
// metrics scraped by a real Prometheus and answered by PromQL, and the mesh graph of a real
// `mooring serve --prometheus-url` drawn in headless Chromium.
//
//   web ──> reviews (Service 10.96.0.20:9080) ──> ratings (Service 10.96.0.21:9080)
//    └─────────────────────────────────────────────┘

import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import type http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { closeServer, createProxyStatsServer, listenOn } from '../../src/agent/proxy/admin';
import { ProxyTelemetry } from '../../src/agent/proxy/telemetry/telemetry';
import type { MeshSettings } from '../../src/api/mesh';
import {
  endpoint,
  meshedAs,
  meshState,
  port,
  proxyScope,
  service,
  SETTINGS,
} from '../fixtures/mesh';
import {
  destination,
  get,
  startEchoApp,
  startSidecar,
  type EchoApp,
  type LoopbackSidecar,
} from '../fixtures/sidecars';
import { DASHBOARDS, dashboard, queries, substitute } from '../chart/dashboards';
import { startJaeger, type Jaeger } from './harness/jaeger';
import { freePorts, delay } from './harness/processes';
import { startPrometheus, type Prometheus } from './harness/prometheus';

jest.setTimeout(180_000);

const ROOT = path.resolve(__dirname, '..', '..');
const ARTIFACTS = process.env.MOORING_TEST_ARTIFACTS ?? path.join(ROOT, '.cache', 'artifacts');
const REVIEWS_IP = '10.96.0.20';
const RATINGS_IP = '10.96.0.21';
const silentSink = { write: () => {}, dropped: 0 };

interface Workload {
  readonly name: string;
  readonly sidecar: LoopbackSidecar;
  readonly telemetry: ProxyTelemetry;
  readonly stats: http.Server;
  readonly statsPort: number;
  readonly app: EchoApp | null;
}

let workloads: Record<'web' | 'reviews' | 'ratings', Workload>;
let jaeger: Jaeger;

async function startWorkload(name: string, withApp: boolean): Promise<Workload> {
  const telemetry = new ProxyTelemetry({ accessLog: silentSink });
  const sidecar = await startSidecar(name, telemetry);
  const app = withApp ? await startEchoApp() : null;
  if (app !== null) sidecar.inboundTarget = destination('127.0.0.1', app.port);
  const stats = createProxyStatsServer(() => sidecar.metrics.render() + telemetry.render());
  const statsPort = (await listenOn(stats, '127.0.0.1', 0)).port;
  return { name, sidecar, telemetry, stats, statsPort, app };
}

function configure(settings: Partial<MeshSettings>): void {
  const all = Object.values(workloads);
  const reviews = service(
    'reviews',
    REVIEWS_IP,
    [port(9080, 'http')],
    [endpoint('127.0.0.1', { 9080: workloads.reviews.sidecar.inbound }, meshedAs('reviews'))],
  );
  const ratings = service(
    'ratings',
    RATINGS_IP,
    [port(9080, 'http')],
    [endpoint('127.0.0.1', { 9080: workloads.ratings.sidecar.inbound }, meshedAs('ratings'))],
  );
  for (const w of all) {
    w.sidecar.sidecar.setMesh({
      ...meshState(proxyScope(w.name), reviews, ratings),
      settings: { ...SETTINGS, ...settings },
    });
  }
}

/** Requests sent to each Service in this file, and how many were answered 503. */
const sentTo = { reviews: 0, ratings: 0, reviews503: 0 };

/** A request from `from`'s app through its sidecar to `to`'s Service. */
async function call(from: Workload, to: 'reviews' | 'ratings', urlPath = '/'): Promise<number> {
  from.sidecar.outboundTarget = destination(to === 'reviews' ? REVIEWS_IP : RATINGS_IP, 9080);
  const status = (await get(from.sidecar.outbound, urlPath, { host: to })).status;
  sentTo[to]++;
  if (to === 'reviews' && status === 503) sentTo.reviews503++;
  return status;
}

const dropped = (text: string): number =>
  Number(/^mooring_proxy_spans_dropped_total\{reason="export_failed"\} (\d+)$/m.exec(text)?.[1]);

beforeAll(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  jaeger = await startJaeger();
  workloads = {
    web: await startWorkload('web', false),
    reviews: await startWorkload('reviews', true),
    ratings: await startWorkload('ratings', true),
  };
});

afterAll(async () => {
  for (const w of Object.values(workloads ?? {})) {
    await w.sidecar.close();
    await w.app?.close();
    await closeServer(w.stats);
  }
  await jaeger?.stop();
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

  it('one request through two sidecars is one trace with the client span and the server span', async () => {
    configure({ tracing: { otlpEndpoint: jaeger.otlpHttpUrl, samplingPercent: 100 } });
    const reviewsApp = workloads.reviews.app as EchoApp;
    reviewsApp.seen.length = 0;
    expect(await call(workloads.web, 'reviews', '/reviews/7')).toBe(200);
    const traceId = String(reviewsApp.seen[0]?.traceparent).split('-')[1] as string;
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    await Promise.all(Object.values(workloads).map((w) => w.telemetry.flush()));

    let trace: JaegerTrace | null = null;
    for (let i = 0; i < 100 && (trace === null || trace.spans.length < 2); i++) {
      const res = await fetch(`${jaeger.queryUrl}/api/traces/${traceId}`);
      if (res.status === 200)
        trace = ((await res.json()) as { data: JaegerTrace[] }).data[0] ?? null;
      if (trace === null || trace.spans.length < 2) await delay(100);
    }
    expect(trace?.spans).toHaveLength(2);
    const t = trace as JaegerTrace;
    const serviceOf = (s: JaegerSpan): string => t.processes[s.processID]?.serviceName ?? '';
    const tag = (s: JaegerSpan, key: string): unknown => s.tags.find((x) => x.key === key)?.value;
    const client = t.spans.find((s) => tag(s, 'span.kind') === 'client') as JaegerSpan;
    const server = t.spans.find((s) => tag(s, 'span.kind') === 'server') as JaegerSpan;
    expect(serviceOf(client)).toBe('web.default');
    expect(serviceOf(server)).toBe('reviews.default');
    expect(client.operationName).toBe('reviews.default.svc.cluster.local:9080/*');
    expect(client.references).toEqual([]);
    expect(server.references).toEqual([
      expect.objectContaining({ refType: 'CHILD_OF', spanID: client.spanID }),
    ]);
    expect(tag(client, 'http.status_code')).toBe(200);
    expect(tag(server, 'istio.source_principal')).toBe('spiffe://cluster.local/ns/default/sa/web');
    expect(tag(client, 'upstream_cluster')).toBe(
      'outbound|9080||reviews.default.svc.cluster.local',
    );
  });

  it('with Jaeger stopped, requests are unaffected and the drop counter rises', async () => {
    const statsOf = async (): Promise<string> =>
      (await fetch(`http://127.0.0.1:${workloads.web.statsPort}/stats/prometheus`)).text();
    const before = dropped(await statsOf());
    await jaeger.stop();
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push(await call(workloads.web, 'reviews', `/after/${i}`));
    expect(statuses).toEqual(Array(30).fill(200));
    await Promise.all(Object.values(workloads).map((w) => w.telemetry.flush()));
    const after = dropped(await statsOf());
    expect(after).toBeGreaterThanOrEqual(before + 30);
  });
});

describe('metrics in Prometheus, and the mesh graph', () => {
  let prometheus: Prometheus;
  let serve: ChildProcess | null = null;
  let browser: Browser | null = null;
  const sent = { webReviews: 0, webReviews5xx: 0, webRatings: 0, reviewsRatings: 0 };

  beforeAll(async () => {
    configure({ tracing: { otlpEndpoint: null, samplingPercent: 0 } });
    prometheus = await startPrometheus([
      {
        job: 'sidecars',
        metricsPath: '/stats/prometheus',
        targets: Object.values(workloads).map((w) => `127.0.0.1:${w.statsPort}`),
      },
    ]);
    // Traffic over about 8 seconds (8 scrapes), so that rate() sees it grow.
    for (let tick = 0; tick < 80; tick++) {
      const fail = tick % 4 === 3;
      expect(await call(workloads.web, 'reviews', fail ? '/status/503' : '/ok')).toBe(
        fail ? 503 : 200,
      );
      sent.webReviews++;
      if (fail) sent.webReviews5xx++;
      if (tick % 2 === 0) {
        expect(await call(workloads.web, 'ratings')).toBe(200);
        sent.webRatings++;
      }
      expect(await call(workloads.reviews, 'ratings')).toBe(200);
      sent.reviewsRatings++;
      await delay(100);
    }
    await prometheus.waitForScrapes(10);
    await delay(2_500); // two more scrapes after the last request
  });

  afterAll(async () => {
    await browser?.close();
    if (serve !== null && serve.exitCode === null) {
      serve.kill('SIGTERM');
      await new Promise((r) => serve?.once('exit', r));
    }
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
      'reviews.default.svc.cluster.local': sentTo.reviews,
      'ratings.default.svc.cluster.local': sentTo.ratings,
    });
    expect(sentTo.ratings).toBe(sent.webRatings + sent.reviewsRatings);
    const errors = await prometheus.query(
      'sum by (destination_service) (istio_requests_total{reporter="destination",response_code="503"})',
    );
    expect(errors.map((s) => [s.metric.destination_service, Number(s.value[1])])).toEqual([
      ['reviews.default.svc.cluster.local', sentTo.reviews503],
    ]);
    const rates = await prometheus.query(
      'sum by (destination_service) (rate(istio_requests_total{reporter="source"}[1m]))',
    );
    const rate = Object.fromEntries(
      rates.map((s) => [s.metric.destination_service, Number(s.value[1])]),
    );
    expect(rate['reviews.default.svc.cluster.local']).toBeGreaterThan(0);
    expect(rate['ratings.default.svc.cluster.local']).toBeGreaterThan(
      rate['reviews.default.svc.cluster.local'] as number,
    );
  });

  it.each(DASHBOARDS)(
    'runs every query of the %s dashboard, and its main panels show the traffic',
    async (name) => {
      const vars = {
        namespace: 'default',
        workload: 'reviews',
        service: 'reviews.default.svc.cluster.local',
      };
      const answered: Record<string, number> = {};
      for (const [panel, expr] of queries(dashboard(name))) {
        const result = await prometheus.query(substitute(expr, vars));
        answered[panel] = Math.max(answered[panel] ?? 0, result.length);
      }
      // Every request panel has data (TCP panels have none: this traffic is HTTP).
      const empty = Object.entries(answered)
        .filter(([panel, n]) => n === 0 && !panel.startsWith('TCP') && !panel.includes('4xx'))
        .map(([panel]) => panel);
      expect(empty).toEqual([]);
    },
  );

  it('draws the graph in Chromium from `mooring serve --prometheus-url`, with its numbers', async () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-graph-'));
    fs.chmodSync(dataDir, 0o700);
    const [httpsPort, adminPort] = await freePorts(2);
    serve = spawn(
      process.execPath,
      [
        path.join(ROOT, 'bin', 'mooring.js'),
        'serve',
        '--data-dir',
        dataDir,
        '--listen',
        `127.0.0.1:${httpsPort}`,
        '--admin-listen',
        `127.0.0.1:${adminPort}`,
        '--prometheus-url',
        prometheus.url,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    serve.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    const admin = `http://127.0.0.1:${adminPort}`;
    for (let i = 0; i < 300; i++) {
      const ok = await fetch(`${admin}/healthz`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      if (serve.exitCode !== null) throw new Error(`mooring serve exited: ${stderr}`);
      await delay(100);
    }

    browser = await chromium.launch({
      executablePath: process.env.MOORING_CHROMIUM ?? '/usr/bin/chromium',
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
    await page.goto(`${admin}/ui/graph?refresh=1&window=1m`);
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
    await page.screenshot({ path: path.join(ARTIFACTS, 'mesh-graph.png') });
    expect(pageErrors).toEqual([]);
    expect(drawn.nodes).toEqual([
      'service:ratings.default.svc.cluster.local',
      'service:reviews.default.svc.cluster.local',
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
    const webReviews = edge('workload:default/web->service:reviews.default.svc.cluster.local|http');
    const webRatings = edge('workload:default/web->service:ratings.default.svc.cluster.local|http');
    const reviewsRatings = edge(
      'workload:default/reviews->service:ratings.default.svc.cluster.local|http',
    );
    const intoRatings = edge(
      'service:ratings.default.svc.cluster.local->workload:default/ratings|http',
    );
    edge('service:reviews.default.svc.cluster.local->workload:default/reviews|http');
    expect(drawn.edges).toHaveLength(5);
    // A quarter of web's calls to reviews answered 503, and none of the others.
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
    await page.screenshot({ path: path.join(ARTIFACTS, 'mesh-graph-table.png') });
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

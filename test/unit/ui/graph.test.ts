// The mesh graph from Prometheus answers (tables of samples), and its HTTP routes on the admin
// app with a Prometheus that answers, fails or is not configured.

import pino from 'pino';
import { Registry } from 'prom-client';
import { buildAdminApp } from '../../../src/http';
import { buildGraph, graphQueries, type PromSample } from '../../../src/ui/graph';

const edge = (labels: Record<string, string>, value: number): PromSample => ({
  metric: {
    source_workload: 'web',
    source_workload_namespace: 'shop',
    destination_workload: 'reviews-v1',
    destination_workload_namespace: 'shop',
    destination_service: 'reviews.shop.svc.cluster.local',
    destination_service_name: 'reviews',
    destination_service_namespace: 'shop',
    connection_security_policy: 'mutual_tls',
    response_code: '200',
    ...labels,
  },
  value: [1700000000, String(value)],
});

const EMPTY = { requests: [], requestsFromOutside: [], p99: [], tcp: [] };

describe('the graph of the answers', () => {
  it('makes workload -> service -> workload edges with rate, 5xx share, p99 and mTLS', () => {
    const g = buildGraph({
      ...EMPTY,
      requests: [edge({}, 3), edge({ response_code: '503' }, 1)],
      p99: [edge({}, 42.123)],
    });
    expect(g.nodes.map((n) => n.id)).toEqual([
      'service:reviews.shop.svc.cluster.local',
      'workload:shop/reviews-v1',
      'workload:shop/web',
    ]);
    expect(g.edges).toEqual([
      {
        id: 'service:reviews.shop.svc.cluster.local->workload:shop/reviews-v1|http',
        source: 'service:reviews.shop.svc.cluster.local',
        target: 'workload:shop/reviews-v1',
        protocol: 'http',
        rps: 4,
        errorRate: 0.25,
        p99Ms: 42.12,
        bytesPerSecond: 0,
        mtlsShare: 1,
      },
      {
        id: 'workload:shop/web->service:reviews.shop.svc.cluster.local|http',
        source: 'workload:shop/web',
        target: 'service:reviews.shop.svc.cluster.local',
        protocol: 'http',
        rps: 4,
        errorRate: 0.25,
        p99Ms: 42.12,
        bytesPerSecond: 0,
        mtlsShare: 1,
      },
    ]);
  });

  it('splits a service between its workloads and adds callers from outside the mesh', () => {
    const g = buildGraph({
      ...EMPTY,
      requests: [edge({}, 2), edge({ destination_workload: 'reviews-v2' }, 6)],
      requestsFromOutside: [
        edge({ source_workload: 'unknown', connection_security_policy: 'none' }, 1),
      ],
    });
    const byId = new Map(g.edges.map((e) => [e.id, e]));
    expect(byId.get('workload:shop/web->service:reviews.shop.svc.cluster.local|http')?.rps).toBe(8);
    expect(
      byId.get('service:reviews.shop.svc.cluster.local->workload:shop/reviews-v2|http')?.rps,
    ).toBe(6);
    const outside = byId.get('unknown->service:reviews.shop.svc.cluster.local|http');
    expect(outside).toMatchObject({ rps: 1, mtlsShare: 0 });
    // The service's edge to v1 now carries plain text too: partly mutual TLS.
    expect(
      byId.get('service:reviews.shop.svc.cluster.local->workload:shop/reviews-v1|http')?.mtlsShare,
    ).toBeCloseTo(2 / 3, 3);
    expect(g.nodes.find((n) => n.id === 'unknown')?.kind).toBe('unknown');
  });

  it('shows TCP edges by bytes, and skips a p99 Prometheus could not compute', () => {
    const g = buildGraph({
      ...EMPTY,
      tcp: [edge({ destination_service: 'db.shop.svc.cluster.local' }, 2048)],
      p99: [edge({}, NaN)],
    });
    const tcp = g.edges.find((e) => e.protocol === 'tcp');
    expect(tcp).toMatchObject({ bytesPerSecond: 2048, rps: 0, p99Ms: null, mtlsShare: 1 });
    expect(g.edges.filter((e) => e.protocol === 'http')).toEqual([]);
  });

  it('leaves out an edge idle in the window, whose mutual TLS it cannot tell', () => {
    const g = buildGraph({
      ...EMPTY,
      requests: [edge({}, 2), edge({ destination_service: 'old.shop.svc.cluster.local' }, 0)],
      tcp: [edge({ destination_service: 'db.shop.svc.cluster.local' }, 0)],
      p99: [edge({ destination_service: 'old.shop.svc.cluster.local' }, NaN)],
    });
    expect(g.edges.map((e) => e.id)).toEqual([
      'service:reviews.shop.svc.cluster.local->workload:shop/reviews-v1|http',
      'workload:shop/web->service:reviews.shop.svc.cluster.local|http',
    ]);
    expect(g.nodes.map((n) => n.id)).not.toContain('service:db.shop.svc.cluster.local');
    expect(g.nodes.map((n) => n.id)).not.toContain('service:old.shop.svc.cluster.local');
  });

  it('asks the standard metrics for the chosen window', () => {
    const q = graphQueries('5m');
    expect(q.requests).toContain('rate(istio_requests_total{reporter="source"}[5m])');
    expect(q.p99).toMatch(/^histogram_quantile\(0\.99, sum by \(le, /);
    expect(q.tcp).toContain('istio_tcp_sent_bytes_total');
  });
});

describe('the graph routes of the admin app', () => {
  const build = (query: ((q: string) => Promise<readonly PromSample[]>) | null) =>
    buildAdminApp({
      logger: pino({ level: 'silent' }),
      registry: new Registry(),
      readiness: () => ({ ready: true, checks: {} }),
      graph: {
        query,
        cytoscape: '/* cytoscape */',
        now: () => new Date('2026-12-04T12:00:00Z'),
      },
    });

  it('serves the page with a strict policy, its script and cytoscape from itself', async () => {
    const app = build(null);
    const page = await app.inject('/ui/graph');
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toContain('text/html');
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.body).toContain('<script src="/ui/graph/cytoscape.min.js"></script>');
    expect(page.body).not.toMatch(/https?:\/\//);
    expect((await app.inject('/ui/graph/cytoscape.min.js')).body).toBe('/* cytoscape */');
    expect((await app.inject('/ui/graph/app.js')).body).toContain('/ui/graph/data');
    await app.close();
  });

  it('answers the data from the queries, and says which it asked', async () => {
    const asked: string[] = [];
    const app = build((q) => {
      asked.push(q);
      return Promise.resolve(
        q.includes('istio_requests_total{reporter="source"}') ? [edge({}, 5)] : [],
      );
    });
    const res = await app.inject('/ui/graph/data?window=5m');
    expect(res.statusCode).toBe(200);
    const body = res.json<{
      window: string;
      generatedAt: string;
      queries: Record<string, string>;
      edges: { rps: number }[];
    }>();
    expect(body.window).toBe('5m');
    expect(body.generatedAt).toBe('2026-12-04T12:00:00.000Z');
    expect(asked.sort()).toEqual(Object.values(graphQueries('5m')).sort());
    expect(Object.values(body.queries).sort()).toEqual(asked);
    expect(body.edges.map((e) => e.rps)).toEqual([5, 5]);
    await app.close();
  });

  it('refuses an unknown window, and says what is missing or broken', async () => {
    const none = build(null);
    const noProm = await none.inject('/ui/graph/data');
    expect(noProm.statusCode).toBe(503);
    expect(noProm.json()).toMatchObject({ code: 'UI_ERR_NO_PROMETHEUS' });
    const bad = await none.inject('/ui/graph/data?window=2d');
    expect(bad.statusCode).toBe(400);
    expect(bad.json<{ message: string }>().message).toContain('window must be one of');
    await none.close();
    const broken = build(() =>
      Promise.reject(
        Object.assign(new Error('connect ECONNREFUSED http://u:secret@p'), {
          publicDetail: 'it could not be reached (ECONNREFUSED)',
        }),
      ),
    );
    const res = await broken.inject('/ui/graph/data');
    expect(res.statusCode).toBe(502);
    expect(res.json()).toEqual({
      code: 'UI_ERR_PROMETHEUS',
      message:
        'Prometheus did not answer the graph queries: it could not be reached (ECONNREFUSED)',
    });
    expect(res.body).not.toContain('secret');
    await broken.close();
  });
});

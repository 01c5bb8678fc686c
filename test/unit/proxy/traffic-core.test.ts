// The proxy's pure traffic cores on tables: Gateway API path prefixes and port matches, rewrites,
// route failures, outlier ejection timelines on a fake clock, the retry budget, header changes.
import type { HttpRouteTable, OutlierDetectionPolicy, RequestMatch } from '../../../src/api/mesh';
import type { UpstreamEndpoint } from '../../../src/agent/proxy/core/endpoints';
import { MeshIndex } from '../../../src/agent/proxy/core/mesh-index';
import { recordOutcome } from '../../../src/agent/proxy/core/outlier';
import { RetryBudget } from '../../../src/agent/proxy/core/retry-budget';
import {
  matchPathPrefix,
  matchRequest,
  rewritePath,
  routeRequest,
  type RequestView,
} from '../../../src/agent/proxy/core/route';
import { requestHeaderChanges } from '../../../src/agent/proxy/http-handlers';
import { endpoint, meshState, port, proxyScope, service } from '../../fixtures/mesh';

const view = (path: string, headers: Record<string, string> = {}): RequestView => ({
  method: 'GET',
  path,
  header: (n) => headers[n] ?? null,
});

describe('path prefixes, ports and rewrites', () => {
  it.each<[string, string, boolean]>([
    ['/foo', '/foo', true],
    ['/foo', '/foo/', true],
    ['/foo', '/foo/bar?x=1', true],
    ['/foo', '/foobar', false],
    ['/foo/', '/foo', true],
    ['/foo/', '/foo/bar', true],
    ['/', '/anything', true],
    ['/foo', '/fo', false],
  ])('PathPrefix %s on %s: %s (whole segments, as the Gateway API says)', (prefix, path, ok) => {
    expect(matchPathPrefix(prefix, path)).toBe(ok);
  });

  it.each<[string, Parameters<typeof rewritePath>[1], Parameters<typeof rewritePath>[2], string]>([
    ['/old/x?q=1', { pathPrefix: '/old' }, { prefix: '/new' }, '/new/x?q=1'],
    ['/old', { pathPrefix: '/old' }, { prefix: '/new' }, '/new'],
    ['/old/x', { pathPrefix: '/old' }, { prefix: '/' }, '/x'],
    ['/old', { pathPrefix: '/old' }, { prefix: '/' }, '/'],
    ['/api/v1/x', { uri: { prefix: '/api/' } }, { prefix: '/' }, '/v1/x'],
    ['/exact?z', { uri: { exact: '/exact' } }, { prefix: '/other' }, '/other?z'],
    ['/a/b', null, { prefix: '/v2/' }, '/v2/a/b'],
    ['/r/42?k', { uri: { regex: '/r/[0-9]+' } }, { prefix: '/r' }, '/r?k'],
    ['/any/path?q', { pathPrefix: '/any' }, { fullPath: '/fixed' }, '/fixed?q'],
  ])('rewrites %s matched by %j with %j into %s', (path, match, rewrite, out) => {
    expect(rewritePath(path, match, rewrite)).toBe(out);
  });

  it("takes a match's port into account: the rule applies on that service port only", () => {
    const table: HttpRouteTable = {
      source: { kind: 'HTTPRoute', namespace: 'default', name: 'r' },
      rules: [
        {
          matches: [{ pathPrefix: '/', port: 9080 }],
          destinations: [{ service: 'default/web', weight: 1 }],
        },
      ],
    };
    const web = service('web', '10.96.0.1', [port(9080), port(9081)], [], (s) => ({
      ...s,
      routes: table,
    }));
    expect(routeRequest(web, 9080, view('/'), Math.random, () => null)).toMatchObject({
      port: 9080,
    });
    expect(routeRequest(web, 9081, view('/'), Math.random, () => null)).toBeNull();
  });
});

describe('route failures', () => {
  // The mesh gives Gateway API rules their status (HTTPRoute 500, GRPCRoute 503).
  const table = (
    kind: 'VirtualService' | 'HTTPRoute' | 'GRPCRoute',
    dest: string,
    weight = 1,
  ): HttpRouteTable => ({
    source: { kind, namespace: 'default', name: 'r' },
    rules: [
      {
        matches: [],
        destinations: weight < 0 ? [] : [{ service: dest, weight }],
        ...(kind === 'VirtualService' ? {} : { noBackendStatus: kind === 'HTTPRoute' ? 500 : 503 }),
      },
    ],
  });
  const web = (t: HttpRouteTable) =>
    service('web', '10.96.0.1', [port(80)], [], (s) => ({ ...s, routes: t }));

  it.each<[string, HttpRouteTable, number]>([
    [
      'a rule without backend (an HTTPRoute whose weights add up to 0)',
      table('HTTPRoute', 'x', -1),
      500,
    ],
    ['an HTTPRoute backend the mesh does not know', table('HTTPRoute', 'default/nope'), 500],
    [
      'a GRPCRoute backend the mesh does not know (UNAVAILABLE)',
      table('GRPCRoute', 'default/nope'),
      503,
    ],
    ['a GRPCRoute rule whose weights add up to 0', table('GRPCRoute', 'x', -1), 503],
    [
      "a VirtualService host the mesh does not know (Envoy's missing cluster)",
      table('VirtualService', 'default/nope'),
      503,
    ],
  ])('%s: %d', (_, t, status) => {
    expect(routeRequest(web(t), 80, view('/'), Math.random, () => null)).toMatchObject({
      kind: 'failure',
      status,
    });
  });
});

describe('outlier detection on a fake clock', () => {
  const policy: OutlierDetectionPolicy = {
    consecutive5xxErrors: 2,
    consecutiveGatewayErrors: 0,
    intervalMs: 1000,
    baseEjectionTimeMs: 180_000,
    maxEjectionPercent: 100,
  };
  const records = (n: number): UpstreamEndpoint[] => {
    const eps = Array.from({ length: n }, (_, i) => endpoint(`10.0.0.${i + 1}`, { 80: 8080 }));
    const svc = service('web', '10.96.0.1', [port(80)], eps);
    return [...new MeshIndex(meshState(proxyScope('client'), svc)).endpointSet(svc, 80).endpoints];
  };
  const fail = { kind: 'response', status: 503 } as const;
  const ok = { kind: 'response', status: 200 } as const;

  it('ejects after 2 consecutive 5xx for 3 minutes, then 6 the second time; a success in between resets the count', () => {
    const [a, b] = records(2) as [UpstreamEndpoint, UpstreamEndpoint];
    expect(recordOutcome(a, [a, b], policy, fail, 0).ejected).toBe(false);
    expect(recordOutcome(a, [a, b], policy, ok, 10).ejected).toBe(false);
    expect(recordOutcome(a, [a, b], policy, fail, 20).ejected).toBe(false);
    expect(recordOutcome(a, [a, b], policy, fail, 30)).toEqual({ ejected: true, until: 180_030 });
    // Back after its time; failing again at once: twice the base time.
    recordOutcome(a, [a, b], policy, fail, 180_100);
    expect(recordOutcome(a, [a, b], policy, fail, 180_200)).toEqual({
      ejected: true,
      until: 180_200 + 2 * 180_000,
    });
  });

  it('counts connection failures as 5xx, and gateway errors on their own threshold', () => {
    const [a, b] = records(2) as [UpstreamEndpoint, UpstreamEndpoint];
    recordOutcome(a, [a, b], policy, { kind: 'failure' }, 0);
    expect(recordOutcome(a, [a, b], policy, { kind: 'failure' }, 1).ejected).toBe(true);
    const gw = { ...policy, consecutive5xxErrors: 0, consecutiveGatewayErrors: 2 };
    recordOutcome(b, [a, b], gw, { kind: 'response', status: 500 }, 0);
    expect(recordOutcome(b, [a, b], gw, { kind: 'response', status: 500 }, 1).ejected).toBe(false);
    recordOutcome(b, [a, b], gw, { kind: 'response', status: 502 }, 2);
    expect(recordOutcome(b, [a, b], gw, { kind: 'response', status: 504 }, 3).ejected).toBe(true);
  });

  it('never ejects more than maxEjectionPercent of the endpoints (at least one when it allows any)', () => {
    const eps = records(4);
    const tenPercent = { ...policy, maxEjectionPercent: 10 };
    const ejected = eps.map((e) => {
      recordOutcome(e, eps, tenPercent, fail, 0);
      return recordOutcome(e, eps, tenPercent, fail, 1).ejected;
    });
    expect(ejected).toEqual([true, false, false, false]);
    const half = records(4);
    const fifty = { ...policy, maxEjectionPercent: 50 };
    expect(
      half.map((e) => {
        recordOutcome(e, half, fifty, fail, 0);
        return recordOutcome(e, half, fifty, fail, 1).ejected;
      }),
    ).toEqual([true, true, false, false]);
  });

  it('lowers the ejection multiplier after a healthy interval past the ejection', () => {
    const [a, b] = records(2) as [UpstreamEndpoint, UpstreamEndpoint];
    const short = { ...policy, baseEjectionTimeMs: 1000 };
    recordOutcome(a, [a, b], short, fail, 0);
    recordOutcome(a, [a, b], short, fail, 0);
    expect(a.ejections).toBe(1);
    recordOutcome(a, [a, b], short, ok, 2500);
    expect(a.ejections).toBe(0);
    recordOutcome(a, [a, b], short, fail, 2600);
    expect(recordOutcome(a, [a, b], short, fail, 2700)).toEqual({ ejected: true, until: 3700 });
  });
});

describe('the retry budget (Linkerd: 20% of requests plus 10 a second, over 10 s)', () => {
  it('allows the floor with no traffic, then 20% of the requests above it', () => {
    const budget = new RetryBudget();
    let allowed = 0;
    for (let i = 0; i < 500; i++) if (budget.tryRetry(0)) allowed++;
    expect(allowed).toBe(100);
    for (let i = 0; i < 1000; i++) budget.request(500);
    let more = 0;
    for (let i = 0; i < 500; i++) if (budget.tryRetry(600)) more++;
    expect(more).toBe(200);
  });

  it('forgets what left the window', () => {
    const budget = new RetryBudget();
    for (let i = 0; i < 100; i++) budget.tryRetry(0);
    expect(budget.tryRetry(5000)).toBe(false);
    expect(budget.tryRetry(10_500)).toBe(true);
  });
});

describe('request header changes', () => {
  it('set replaces, add appends, remove drops, an authority rewrite replaces Host', () => {
    const changes = requestHeaderChanges(
      { set: [{ name: 'x-a', value: '1' }], add: [{ name: 'x-b', value: '2' }], remove: ['x-c'] },
      'new.host',
    );
    expect(changes?.add).toEqual(['x-a', '1', 'x-b', '2', 'host', 'new.host']);
    expect([...(changes?.remove ?? [])]).toEqual(
      expect.arrayContaining(['x-a', 'x-c', 'host', 'x-envoy-attempt-count']),
    );
    expect(changes?.remove.has('x-b')).toBe(false);
    expect(requestHeaderChanges(undefined, undefined)).toBeNull();
  });
});

describe('the index of a large route table', () => {
  /** The first match by a plain scan: what the index must always agree with. */
  function linear(table: HttpRouteTable, req: RequestView, port: number): string | null {
    for (const rule of table.rules) {
      if (rule.matches.length === 0) return rule.name ?? null;
      for (const m of rule.matches) if (matchRequest(m, req, port)) return rule.name ?? null;
    }
    return null;
  }

  it('finds the same first match as a scan, over 200 random tables of 40 rules and 50 requests each', () => {
    let seed = 12345;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const pick = <T>(list: readonly T[]): T => list[Math.floor(random() * list.length)] as T;
    const paths = ['/', '/a', '/a/', '/a/b', '/ab', '/a/b/c', '/b', '/b/1', '/api/v1/x', '/api'];
    const matchOf = (): RequestMatch => {
      const p = pick(paths);
      const kind = Math.floor(random() * 6);
      const m: RequestMatch =
        kind === 0
          ? { uri: { prefix: p } }
          : kind === 1
            ? { uri: { exact: p } }
            : kind === 2
              ? { pathPrefix: p }
              : kind === 3
                ? { uri: { regex: `${p}.*` } }
                : kind === 4
                  ? { headers: [{ name: 'x-h', value: { exact: pick(['1', '2']) } }] }
                  : {};
      return random() < 0.2 ? { ...m, port: pick([80, 81]) } : m;
    };
    let compared = 0;
    for (let t = 0; t < 200; t++) {
      const table: HttpRouteTable = {
        source: { kind: 'HTTPRoute', namespace: 'default', name: 't' },
        rules: Array.from({ length: 40 }, (_, r) => ({
          name: `r${r}`,
          matches:
            random() < 0.05 ? [] : Array.from({ length: 1 + Math.floor(random() * 2) }, matchOf),
          destinations: [{ service: 'default/web', weight: 1 }],
        })),
      };
      const web = service('web', '10.96.0.1', [port(80)], [], (s) => ({ ...s, routes: table }));
      for (let q = 0; q < 50; q++) {
        const req = view(
          `${pick(paths)}${pick(['', '/x', '?q=1'])}`,
          random() < 0.5 ? { 'x-h': pick(['1', '2']) } : {},
        );
        const p = pick([80, 81]);
        const d = routeRequest(web, p, req, Math.random, () => null);
        const got = d === null ? null : (d.rule?.name ?? null);
        expect(got).toBe(linear(table, req, p));
        compared++;
      }
    }
    expect(compared).toBe(10_000);
  });
});

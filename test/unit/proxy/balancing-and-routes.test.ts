import type { HttpRouteTable, MeshService } from '../../../src/api/mesh';
import { hashKey } from '../../../src/agent/proxy/http-handlers';
import {
  hash32,
  pickByHash,
  pickEndpoint,
  type EndpointSet,
  type UpstreamEndpoint,
} from '../../../src/agent/proxy/core/endpoints';
import { MeshIndex } from '../../../src/agent/proxy/core/mesh-index';
import {
  corsFor,
  DEFAULT_RETRIES,
  matchRequest,
  redirectLocation,
  rewritePath,
  routesForThisProxy,
  sniMatches,
  tcpRoute,
  routeRequest,
  type RequestView,
} from '../../../src/agent/proxy/core/route';
import {
  endpoint,
  meshedAs,
  meshState,
  notReady,
  port,
  proxyScope,
  seeded,
  service,
} from '../../fixtures/mesh';

function endpointsOf(...specs: ReturnType<typeof endpoint>[]): {
  set: EndpointSet;
  records: UpstreamEndpoint[];
} {
  const svc = service('web', '10.96.0.1', [port(80)], specs);
  const index = new MeshIndex(meshState(proxyScope('client'), svc));
  const set = index.endpointSet(svc, 80);
  return { set, records: [...set.endpoints] };
}

describe('pickEndpoint', () => {
  const three = () =>
    endpointsOf(
      endpoint('10.0.0.1', { 80: 8080 }),
      endpoint('10.0.0.2', { 80: 8080 }),
      endpoint('10.0.0.3', { 80: 8080 }),
    );

  it('least request: of two random candidates, the one with fewer requests in flight', () => {
    const { set, records } = three();
    (records[0] as UpstreamEndpoint).active = 5;
    (records[1] as UpstreamEndpoint).active = 5;
    const random = seeded(1);
    const counts = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const e = pickEndpoint(set, 'LEAST_REQUEST', random, 0) as UpstreamEndpoint;
      counts.set(e.address, (counts.get(e.address) ?? 0) + 1);
    }
    // 10.0.0.3 wins every draw it is part of: 2 of the 3 pairs.
    expect((counts.get('10.0.0.3') ?? 0) / 3000).toBeCloseTo(2 / 3, 1);
  });

  it('round robin takes every endpoint in turn', () => {
    const { set } = three();
    const seen = Array.from(
      { length: 6 },
      () => pickEndpoint(set, 'ROUND_ROBIN', Math.random, 0)?.address,
    );
    expect(seen).toEqual(['10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.1', '10.0.0.2', '10.0.0.3']);
  });

  it('skips ejected, terminating and already tried endpoints while others are left', () => {
    const { set, records } = endpointsOf(
      endpoint('10.0.0.1', { 80: 8080 }),
      endpoint('10.0.0.2', { 80: 8080 }, notReady),
      endpoint('10.0.0.3', { 80: 8080 }),
      endpoint('10.0.0.4', { 80: 8080 }),
    );
    (records[0] as UpstreamEndpoint).ejectedUntil = 1000;
    const tried = new Set([records[2] as UpstreamEndpoint]);
    for (let i = 0; i < 50; i++) {
      expect(pickEndpoint(set, 'RANDOM', Math.random, 500, tried)?.address).toBe('10.0.0.4');
    }
    // The ejection ends at 1000.
    const after = new Set<string>();
    for (let i = 0; i < 200; i++)
      after.add(pickEndpoint(set, 'RANDOM', Math.random, 1000, tried)?.address ?? '');
    expect([...after].sort()).toEqual(['10.0.0.1', '10.0.0.4']);
  });

  it('never empties a service: with every endpoint ejected, it picks among them (panic)', () => {
    const { set, records } = three();
    for (const r of records) r.ejectedUntil = 10_000;
    expect(pickEndpoint(set, 'LEAST_REQUEST', Math.random, 0)).not.toBeNull();
  });

  it('an empty set gives null', () => {
    expect(pickEndpoint({ endpoints: [], next: 0 }, 'LEAST_REQUEST', Math.random, 0)).toBeNull();
  });
});

describe('MeshIndex', () => {
  it('maps ClusterIPs and Pod IPs to their service, the ClusterIP first', () => {
    const svc = service(
      'web',
      '10.96.0.1',
      [port(80), port(9090, 'grpc')],
      [endpoint('10.0.0.1', { 80: 8080, 9090: 9090 }, meshedAs('web'))],
    );
    const index = new MeshIndex(meshState(proxyScope('client'), svc));
    expect(index.lookup('10.96.0.1', 80)).toMatchObject({ kind: 'service', port: { port: 80 } });
    expect(index.lookup('10.96.0.1', 9090)).toMatchObject({
      kind: 'service',
      port: { protocol: 'grpc' },
    });
    expect(index.lookup('10.0.0.1', 8080)).toMatchObject({
      kind: 'endpoint',
      endpoint: { address: '10.0.0.1', port: 8080 },
    });
    expect(index.lookup('10.96.0.1', 81)).toBeNull();
    expect(index.lookup('10.0.0.9', 8080)).toBeNull();
  });

  /** A configuration whose service web (10.96.0.1:80) has endpoints at `addresses` (port 80). */
  const webIndex = (addresses: readonly string[], previous: MeshIndex | null = null) =>
    new MeshIndex(
      meshState(
        proxyScope('c'),
        service(
          'web',
          '10.96.0.1',
          [port(80)],
          addresses.map((a) => endpoint(a, { 80: 80 })),
        ),
      ),
      previous,
    );
  const webOf = (index: MeshIndex) => index.state.services.get('default/web')!;

  it('keeps the live state of unchanged endpoints across a new configuration', () => {
    const first = webIndex(['10.0.0.1', '10.0.0.2']);
    const kept = first.endpointSet(webOf(first), 80).endpoints[0] as UpstreamEndpoint;
    kept.active = 3;
    kept.ejections = 2;
    const second = webIndex(['10.0.0.1', '10.0.0.3'], first);
    const again = second.endpointSet(webOf(second), 80).endpoints;
    expect(again.map((e) => e.address)).toEqual(['10.0.0.1', '10.0.0.3']);
    expect(again[0]).toBe(kept);
    expect(again[0]?.active).toBe(3);
    expect(again[1]?.active).toBe(0);
  });

  it('balances over its own endpoints when handed the service of an older configuration (a connection accepted before the update), and caches nothing stale', () => {
    const first = webIndex(['10.0.0.1', '10.0.0.2']);
    const stale = webOf(first);
    const second = webIndex(['10.0.0.1', '10.0.0.2', '10.0.0.3'], first);
    const addresses = (s: MeshService) => second.endpointSet(s, 80).endpoints.map((e) => e.address);
    const all = ['10.0.0.1', '10.0.0.2', '10.0.0.3'];
    expect(addresses(stale)).toEqual(all);
    expect(addresses(webOf(second))).toEqual(all);
    // A service the new configuration no longer has: nothing to balance over.
    const third = new MeshIndex(meshState(proxyScope('c')), second);
    expect(third.endpointSet(stale, 80).endpoints).toEqual([]);
  });

  it('hands out one set per service port and subset, whichever object of the service asks', () => {
    const first = webIndex(['10.0.0.1', '10.0.0.2']);
    const second = webIndex(['10.0.0.1', '10.0.0.3'], first);
    const set = second.endpointSet(webOf(second), 80);
    // The balancer's state (its next index, each endpoint's load) lives on the set: every
    // request to the service port must share it.
    expect(second.endpointSet(webOf(second), 80)).toBe(set);
    expect(second.endpointSet(webOf(first), 80)).toBe(set);
    expect(second.endpointSet(webOf(first), 80)).toBe(set);
    expect(second.endpointSet(webOf(second), 80, 'v1')).not.toBe(set);
    expect(second.endpointSet(webOf(second), 81)).not.toBe(set);
    expect([...second.endpointSets()].map(([key]) => key).sort()).toEqual([
      'default/web|80|',
      'default/web|80|v1',
      'default/web|81|',
    ]);
  });

  it('an endpoint on a plain-text port of a meshed Pod is dialled without TLS', () => {
    const e = {
      ...endpoint('10.0.0.1', { 80: 80, 81: 81 }, meshedAs('web')),
      plaintextPorts: [81],
    };
    const svc = service('web', '10.96.0.1', [port(80), port(81)], [e]);
    const index = new MeshIndex(meshState(proxyScope('c'), svc));
    expect(index.endpointSet(svc, 80).endpoints[0]?.identity).toBe(
      'spiffe://cluster.local/ns/default/sa/web',
    );
    expect(index.endpointSet(svc, 81).endpoints[0]?.identity).toBeNull();
  });
});

describe('routeRequest', () => {
  const view = (
    path: string,
    headers: Record<string, string> = {},
    method = 'GET',
  ): RequestView => ({
    method,
    path,
    header: (n) => headers[n] ?? null,
  });
  const reviews = service('reviews', '10.96.0.5', [port(9080)], []);
  const v3 = service('reviews-v3', '10.96.0.6', [port(9080)], []);
  const services = new Map([
    [reviews.key, reviews],
    [v3.key, v3],
  ]);
  const lookup = (k: string) => services.get(k) ?? null;
  const table: HttpRouteTable = {
    source: { kind: 'VirtualService', namespace: 'default', name: 'reviews' },
    rules: [
      {
        name: 'dark-launch',
        matches: [{ headers: [{ name: 'custom-header-dark-launch', value: { exact: 'v3' } }] }],
        destinations: [{ service: v3.key, weight: 100 }],
      },
      {
        name: 'api',
        matches: [
          { uri: { prefix: '/api/' }, method: { exact: 'POST' } },
          { uri: { regex: '/v[0-9]+/.*' } },
        ],
        destinations: [{ service: reviews.key, subset: 'v2', weight: 1 }],
        timeoutMs: 500,
      },
      {
        name: 'canary',
        matches: [],
        destinations: [
          { service: reviews.key, subset: 'v1', weight: 95 },
          { service: reviews.key, subset: 'v2', weight: 5 },
        ],
        retries: {
          attempts: 3,
          perTryTimeoutMs: 2000,
          retryOn: ['connect-failure', 'refused-stream'],
        },
      },
    ],
  };
  const routed = { ...reviews, routes: table };

  it('without a table: the service itself with Istio default retries and no timeout', () => {
    const d = routeRequest(reviews, 9080, view('/'), Math.random, lookup);
    expect(d).toMatchObject({
      service: reviews,
      port: 9080,
      subset: undefined,
      timeoutMs: null,
      retries: DEFAULT_RETRIES,
    });
  });

  it('the first rule that matches wins', () => {
    expect(
      routeRequest(
        routed,
        9080,
        view('/api/x', { 'custom-header-dark-launch': 'v3' }, 'POST'),
        Math.random,
        lookup,
      ),
    ).toMatchObject({ service: v3 });
    expect(
      routeRequest(routed, 9080, view('/api/x', {}, 'POST'), Math.random, lookup),
    ).toMatchObject({ subset: 'v2', timeoutMs: 500 });
    expect(
      routeRequest(routed, 9080, view('/api/x', {}, 'GET'), Math.random, lookup)?.rule?.name,
    ).toBe('canary');
    expect(
      routeRequest(routed, 9080, view('/v2/ratings?q=1'), Math.random, lookup)?.rule?.name,
    ).toBe('api');
    expect(routeRequest(routed, 9080, view('/v2x/ratings'), Math.random, lookup)?.rule?.name).toBe(
      'canary',
    );
  });

  it('splits by weight: 95/5 over 20,000 seeded draws within 1%', () => {
    const random = seeded(42);
    let v2 = 0;
    for (let i = 0; i < 20_000; i++) {
      const d = routeRequest(routed, 9080, view('/'), random, lookup);
      if (d !== null && d.kind === undefined && d.subset === 'v2') v2++;
    }
    expect(Math.abs(v2 / 20_000 - 0.05)).toBeLessThan(0.01);
  });

  it('no matching rule is no route (null)', () => {
    const only = { ...reviews, routes: { ...table, rules: [table.rules[0]!] } };
    expect(routeRequest(only, 9080, view('/'), Math.random, lookup)).toBeNull();
  });
});

describe("a redirect's Location, as Envoy writes it", () => {
  const req = (path: string, host: string): RequestView => ({
    method: 'GET',
    path,
    header: (n) => (n === 'host' ? host : null),
  });
  type Redirect = Parameters<typeof redirectLocation>[0];
  const redirect = (r: Partial<Redirect>): Redirect => ({
    kind: 'redirect',
    status: 301,
    port: 'request',
    ...r,
  });

  it.each<[string, Partial<Redirect>, string, string, string]>([
    [
      'a new path, the query kept',
      { path: { fullPath: '/new' } },
      '/old?q=1',
      'web:8080',
      'http://web:8080/new?q=1',
    ],
    ['the request as it came', {}, '/a?b=c', 'web', 'http://web/a?b=c'],
    [
      'a new host: its own port only',
      { host: 'other.example' },
      '/a',
      'web:8080',
      'http://other.example/a',
    ],
    [
      'a new host and a port',
      { host: 'other.example', port: 8443, scheme: 'https' },
      '/a',
      'web',
      'https://other.example:8443/a',
    ],
    [
      "https and the scheme's port (none written)",
      { scheme: 'https', port: 'scheme' },
      '/a',
      'web:8080',
      'https://web/a',
    ],
    [
      'an explicit 443 with https (none written)',
      { scheme: 'https', port: 443 },
      '/a',
      'web',
      'https://web/a',
    ],
    [
      'the Service port 80 with http (none written)',
      { port: 'service' },
      '/a',
      'web',
      'http://web/a',
    ],
    ['the Service port 9080', { port: 'service' }, '/a', 'web', 'http://web:9080/a'],
    ['an IPv6 host', { host: 'fd00::1', port: 8080 }, '/a', 'web', 'http://[fd00::1]:8080/a'],
    ['the request host in brackets', {}, '/a', '[fd00::2]:81', 'http://[fd00::2]:81/a'],
  ])('%s', (_name, r, path, host, location) => {
    const servicePort = location.endsWith(':9080/a') ? 9080 : 80;
    expect(redirectLocation(redirect(r), req(path, host), null, servicePort)).toBe(location);
  });

  it('replaces the matched prefix segment by segment, as a rewrite does', () => {
    expect(
      redirectLocation(
        redirect({ path: { prefix: '/v2' } }),
        req('/v1/items?x=1', 'web'),
        { pathPrefix: '/v1' },
        80,
      ),
    ).toBe('http://web/v2/items?x=1');
  });

  it('is what routeRequest hands back for a rule with a reply, whatever its destinations', () => {
    const svc = service('web', '10.96.0.9', [port(80)], []);
    const routed: MeshService = {
      ...svc,
      routes: {
        source: { kind: 'VirtualService', namespace: 'default', name: 'web' },
        rules: [
          {
            matches: [{ uri: { prefix: '/old' } }],
            destinations: [],
            reply: { kind: 'redirect', status: 308, port: 'request', path: { fullPath: '/new' } },
          },
          { matches: [], destinations: [{ service: svc.key, weight: 1 }] },
        ],
      },
    };
    const d = routeRequest(routed, 80, req('/old', 'web'), Math.random, () => routed);
    expect(d).toMatchObject({ kind: 'reply', reply: { status: 308 } });
    expect(routeRequest(routed, 80, req('/x', 'web'), Math.random, () => routed)?.kind).toBe(
      undefined,
    );
  });
});

describe('consistent hashing (DestinationRule consistentHash)', () => {
  const many = (n: number) =>
    endpointsOf(...Array.from({ length: n }, (_, i) => endpoint(`10.0.1.${i + 1}`, { 80: 8080 })));
  const keys = Array.from({ length: 3000 }, (_, i) => `user-${i}`);
  const owner = (set: EndpointSet, key: string, exclude: Set<UpstreamEndpoint> | null = null) =>
    pickByHash(set, hash32(key), Math.random, 0, exclude)?.address;

  it('sends one key to one endpoint, and spreads many keys over all of them', () => {
    const { set } = many(3);
    for (let i = 0; i < 20; i++) expect(owner(set, 'alice')).toBe(owner(set, 'alice'));
    const counts = new Map<string, number>();
    for (const k of keys)
      counts.set(owner(set, k) ?? '', (counts.get(owner(set, k) ?? '') ?? 0) + 1);
    expect(counts.size).toBe(3);
    for (const n of counts.values()) expect(n / keys.length).toBeGreaterThan(0.2);
  });

  it('moves only the keys of an endpoint that goes, and keeps every other key where it was', () => {
    const before = many(4).set;
    const after = endpointsOf(
      ...Array.from({ length: 3 }, (_, i) => endpoint(`10.0.1.${i + 1}`, { 80: 8080 })),
    ).set;
    let moved = 0;
    for (const k of keys) {
      const was = owner(before, k);
      const now = owner(after, k);
      if (was === '10.0.1.4') moved++;
      else expect(now).toBe(was);
    }
    expect(moved).toBeGreaterThan(0);
  });

  it('walks on past an ejected or already tried endpoint to the next on the ring', () => {
    const { set, records } = many(3);
    const first = pickByHash(set, hash32('bob'), Math.random, 0) as UpstreamEndpoint;
    first.ejectedUntil = 10_000;
    const next = pickByHash(set, hash32('bob'), Math.random, 0);
    expect(next).not.toBe(first);
    expect(
      pickByHash(set, hash32('bob'), Math.random, 0, new Set([next as UpstreamEndpoint])),
    ).toBe(records.find((e) => e !== first && e !== next));
    expect(pickByHash({ endpoints: [], next: 0 }, 1, Math.random, 0)).toBeNull();
  });

  it('hashes on a header, a query parameter, a cookie or the source address; a missing one is nothing to hash', () => {
    const view = (path: string, headers: Record<string, string>): RequestView => ({
      method: 'GET',
      path,
      header: (n) => headers[n] ?? null,
    });
    const r = seeded(7);
    expect(hashKey({ header: 'x-user' }, view('/', { 'x-user': 'ann' }), '10.0.0.9', r)).toEqual({
      value: 'ann',
    });
    expect(hashKey({ header: 'x-user' }, view('/', {}), '10.0.0.9', r)).toEqual({ value: null });
    expect(hashKey({ queryParameter: 'u' }, view('/a?x=1&u=bo', {}), '', r)).toEqual({
      value: 'bo',
    });
    expect(hashKey({ sourceIp: true }, view('/', {}), '10.0.0.9', r)).toEqual({
      value: '10.0.0.9',
    });
    const cookie = { cookie: { name: 'sticky', path: '/app', ttlMs: 60_000 } };
    expect(hashKey(cookie, view('/', { cookie: 'a=1; sticky="v1"' }), '', r)).toEqual({
      value: 'v1',
    });
    expect(hashKey({ cookie: { name: 'sticky' } }, view('/', {}), '', r)).toEqual({ value: null });
  });

  it('makes the cookie a request lacks when a TTL is set, and sets it on the answer (0: a session cookie)', () => {
    const view: RequestView = { method: 'GET', path: '/', header: () => null };
    const made = hashKey(
      { cookie: { name: 'sticky', path: '/app', ttlMs: 60_000 } },
      view,
      '',
      seeded(1),
    );
    expect(made.value).toMatch(/^[0-9a-f]{16}$/);
    expect(made.setCookie).toEqual([
      'set-cookie',
      `sticky="${made.value ?? ''}"; Max-Age=60; Path=/app; HttpOnly`,
    ]);
    const session = hashKey({ cookie: { name: 's', ttlMs: 0 } }, view, '', seeded(1));
    expect(session.setCookie?.[1]).toBe(`s="${session.value ?? ''}"; Path=/; HttpOnly`);
  });
});

describe("a VirtualService's tls routes, by the TLS server name", () => {
  it('match a name exactly, under a wildcard, or any with *; case aside', () => {
    expect(sniMatches(['a.example'], 'A.Example')).toBe(true);
    expect(sniMatches(['*.example'], 'x.y.example')).toBe(true);
    expect(sniMatches(['*.example'], 'example')).toBe(false);
    expect(sniMatches(['*.example'], 'xexample')).toBe(false);
    expect(sniMatches(['*'], 'anything')).toBe(true);
    expect(sniMatches(['a.example'], 'b.example')).toBe(false);
  });

  it('send a TLS connection by its server name, on its port; any other to the tcp routes', () => {
    const svc: MeshService = {
      ...service('db', '10.96.0.9', [port(443, 'tcp')], []),
      tlsRoutes: {
        source: { kind: 'VirtualService', namespace: 'default', name: 'db' },
        rules: [
          {
            matches: [{ port: 443, sniHosts: ['a.example'] }],
            destinations: [{ service: 'default/a', weight: 1 }],
          },
        ],
      },
      tcpRoutes: {
        source: { kind: 'VirtualService', namespace: 'default', name: 'db' },
        rules: [{ matches: [], destinations: [{ service: 'default/plain', weight: 1 }] }],
      },
    };
    const random = (): number => 0.5;
    const to = (p: number, serverName: string | null): string | undefined =>
      tcpRoute(svc, p, random, { serverName })?.service;
    expect(to(443, 'a.example')).toBe('default/a');
    expect(to(8443, 'a.example')).toBe('default/plain');
    expect(to(443, 'b.example')).toBe('default/plain');
    expect(to(443, null)).toBe('default/plain');
  });
});

describe("a VirtualService's tcp and tls matches on subnets", () => {
  const svc: MeshService = {
    ...service('db', '10.96.0.9', [port(5432, 'tcp')], []),
    tcpRoutes: {
      source: { kind: 'VirtualService', namespace: 'default', name: 'db' },
      rules: [
        {
          matches: [{ destinationSubnets: ['10.96.0.0/24', 'fd00:96::/64'] }],
          destinations: [{ service: 'default/by-destination', weight: 1 }],
        },
        {
          matches: [{ sourceSubnet: '10.77.1.0/24' }],
          destinations: [{ service: 'default/by-source', weight: 1 }],
        },
        { matches: [], destinations: [{ service: 'default/rest', weight: 1 }] },
      ],
    },
  };
  const to = (destination: string, source: string): string | undefined =>
    tcpRoute(svc, 5432, () => 0.5, { destination, source })?.service;

  it('match the original destination in one of the subnets, IPv4 or IPv6', () => {
    expect(to('10.96.0.9', '10.77.0.5')).toBe('default/by-destination');
    expect(to('fd00:96::9', 'fd00:77::5')).toBe('default/by-destination');
    expect(to('10.96.1.9', '10.77.0.5')).toBe('default/rest');
  });

  it('match the source in its subnet, an IPv4-mapped IPv6 source as its IPv4 address', () => {
    expect(to('10.96.1.9', '10.77.1.20')).toBe('default/by-source');
    expect(to('10.96.1.9', '::ffff:10.77.1.20')).toBe('default/by-source');
    expect(to('10.96.1.9', '10.77.2.20')).toBe('default/rest');
  });

  it('match nothing when the address is unknown', () => {
    expect(tcpRoute(svc, 5432, () => 0.5, {})?.service).toBe('default/rest');
  });
});

describe("a route's CORS policy, as Envoy's CORS filter", () => {
  const cors = {
    allowOrigins: [{ exact: 'https://shop.example' }, { regex: 'https://.*\\.dev\\.example' }],
    allowMethods: ['GET', 'POST'],
    allowHeaders: ['x-token'],
    exposeHeaders: ['x-trace'],
    maxAgeSeconds: 86400,
    allowCredentials: true,
  };
  const req = (method: string, headers: Record<string, string>): RequestView => ({
    method,
    path: '/',
    header: (n) => headers[n] ?? null,
  });

  it('does nothing without an Origin, or with one it does not allow (the app decides)', () => {
    expect(corsFor(cors, req('GET', {}))).toBeNull();
    expect(
      corsFor(
        cors,
        req('OPTIONS', { origin: 'https://evil.example', 'access-control-request-method': 'GET' }),
      ),
    ).toBeNull();
  });

  it('adds the allowed origin, credentials and exposed headers to an answer', () => {
    expect(corsFor(cors, req('GET', { origin: 'https://a.dev.example' }))).toEqual({
      kind: 'answer',
      headers: [
        'access-control-allow-origin',
        'https://a.dev.example',
        'access-control-allow-credentials',
        'true',
        'access-control-expose-headers',
        'x-trace',
      ],
    });
  });

  it('answers a preflight itself with the methods, headers and max age', () => {
    const preflight = req('OPTIONS', {
      origin: 'https://shop.example',
      'access-control-request-method': 'POST',
    });
    expect(corsFor(cors, preflight)).toEqual({
      kind: 'preflight',
      headers: [
        'access-control-allow-origin',
        'https://shop.example',
        'access-control-allow-credentials',
        'true',
        'access-control-allow-methods',
        'GET,POST',
        'access-control-allow-headers',
        'x-token',
        'access-control-max-age',
        '86400',
      ],
    });
    // An OPTIONS without Access-Control-Request-Method is no preflight.
    expect(corsFor(cors, req('OPTIONS', { origin: 'https://shop.example' }))?.kind).toBe('answer');
  });

  it('answers a preflight from an origin not allowed itself, without CORS headers, with unmatchedPreflights IGNORE', () => {
    const ignoring = { ...cors, ignoreUnmatchedPreflights: true as const };
    const evil = { origin: 'https://evil.example', 'access-control-request-method': 'GET' };
    expect(corsFor(ignoring, req('OPTIONS', evil))).toEqual({ kind: 'preflight', headers: [] });
    // Only preflights: any other request from that origin is the app's, as without the policy.
    expect(corsFor(ignoring, req('GET', { origin: 'https://evil.example' }))).toBeNull();
    expect(
      corsFor(ignoring, req('OPTIONS', { 'access-control-request-method': 'GET' })),
    ).toBeNull();
  });

  it('echoes what the preflight asks for in place of `*` when credentials are allowed, and exposes no `*`', () => {
    const any = { ...cors, allowMethods: ['*'], allowHeaders: ['*'], exposeHeaders: ['*'] };
    const origin = 'https://shop.example';
    expect(
      corsFor(
        any,
        req('OPTIONS', {
          origin,
          'access-control-request-method': 'PATCH',
          'access-control-request-headers': 'x-a',
        }),
      )?.headers,
    ).toEqual([
      'access-control-allow-origin',
      origin,
      'access-control-allow-credentials',
      'true',
      'access-control-allow-methods',
      'PATCH',
      'access-control-allow-headers',
      'x-a',
      'access-control-max-age',
      '86400',
    ]);
    // No headers asked for: none allowed; the answer exposes nothing rather than `*`.
    expect(
      corsFor(any, req('OPTIONS', { origin, 'access-control-request-method': 'GET' }))?.headers,
    ).not.toContain('access-control-allow-headers');
    expect(corsFor(any, req('GET', { origin }))?.headers).not.toContain(
      'access-control-expose-headers',
    );
    // Without credentials `*` means any, and goes as it is.
    const open = { ...any, allowCredentials: false };
    expect(
      corsFor(open, req('OPTIONS', { origin, 'access-control-request-method': 'PATCH' }))?.headers,
    ).toEqual(expect.arrayContaining(['access-control-allow-methods', '*']));
  });
});

describe("a match's source (sourceLabels, sourceNamespace), as each proxy resolves it", () => {
  const reviews = service('reviews', '10.96.0.5', [port(9080)], []);
  const routed: MeshService = {
    ...reviews,
    routes: {
      source: { kind: 'VirtualService', namespace: 'default', name: 'reviews' },
      rules: [
        {
          name: 'v2-callers',
          matches: [
            { sourceLabels: { app: 'productpage', version: 'v2' }, uri: { prefix: '/a' } },
            { sourceNamespace: 'canary' },
          ],
          destinations: [{ service: reviews.key, subset: 'v2', weight: 1 }],
        },
        { name: 'rest', matches: [], destinations: [{ service: reviews.key, weight: 1 }] },
      ],
    },
  };
  const proxy = (labels: Record<string, string>, namespace = 'default') =>
    meshState(
      proxyScope('productpage', (p) => ({ ...p, labels, pod: { ...p.pod, namespace } })),
      routed,
    );
  const rulesOf = (state: ReturnType<typeof meshState>) =>
    routesForThisProxy(state)
      .services.get(reviews.key)
      ?.routes?.rules.map((r) => ({
        name: r.name,
        matches: r.matches,
      }));

  it('keeps, without its source, a match the proxy meets, and drops the others', () => {
    expect(rulesOf(proxy({ app: 'productpage', version: 'v2', team: 'x' }))).toEqual([
      { name: 'v2-callers', matches: [{ uri: { prefix: '/a' } }] },
      { name: 'rest', matches: [] },
    ]);
    expect(rulesOf(proxy({ app: 'productpage', version: 'v1' }, 'canary'))).toEqual([
      { name: 'v2-callers', matches: [{}] },
      { name: 'rest', matches: [] },
    ]);
  });

  it('drops a rule none of whose matches the proxy meets (rather than let it match every request)', () => {
    expect(rulesOf(proxy({ app: 'productpage', version: 'v1' }))).toEqual([
      { name: 'rest', matches: [] },
    ]);
  });

  it('leaves a configuration that names no source as it is', () => {
    const plain = meshState(proxyScope('web'), reviews);
    expect(routesForThisProxy(plain)).toBe(plain);
  });
});

describe('authority and scheme matches, and a regex rewrite of the path', () => {
  const req = (path: string, host: string): RequestView => ({
    method: 'GET',
    path,
    header: (n) => (n === 'host' ? host : null),
  });

  it('matches the Host as sent, and the scheme http of what comes through a sidecar', () => {
    expect(matchRequest({ authority: { prefix: 'reviews' } }, req('/', 'reviews:9080'))).toBe(true);
    expect(matchRequest({ authority: { exact: 'reviews' } }, req('/', 'reviews:9080'))).toBe(false);
    expect(matchRequest({ scheme: { exact: 'http' } }, req('/', 'a'))).toBe(true);
    expect(matchRequest({ scheme: { exact: 'https' } }, req('/', 'a'))).toBe(false);
  });

  it("replaces every match in the path with the rewrite's groups, keeping the query (Istio's example)", () => {
    const rewrite = { regex: { match: '^/service/([^/]+)(/.*)$', rewrite: '\\2/instance/\\1' } };
    expect(rewritePath('/service/foo/v1/api?x=1', null, rewrite)).toBe('/v1/api/instance/foo?x=1');
    expect(rewritePath('/a-b-c', null, { regex: { match: '-', rewrite: '$' } })).toBe('/a$b$c');
  });
});

describe("a VirtualService's tcp routes", () => {
  const db = service('db', '10.96.0.7', [port(5432, 'tcp'), port(6432, 'tcp')], []);
  const routed: MeshService = {
    ...db,
    tcpRoutes: {
      source: { kind: 'VirtualService', namespace: 'default', name: 'db' },
      rules: [
        {
          matches: [{ port: 5432 }],
          destinations: [
            { service: 'default/db', subset: 'v1', weight: 75 },
            { service: 'default/db-next', weight: 25 },
          ],
        },
        {
          matches: [{ sourceNamespace: 'batch' }],
          destinations: [{ service: 'default/db', subset: 'v2', weight: 1 }],
        },
      ],
    },
  };

  it('sends a connection by the first rule its port meets, by weight', () => {
    const random = seeded(3);
    let next = 0;
    for (let i = 0; i < 4000; i++) {
      if (tcpRoute(routed, 5432, random)?.service === 'default/db-next') next++;
    }
    expect(Math.abs(next / 4000 - 0.25)).toBeLessThan(0.03);
    // 6432 meets no port match; the caller rule is not resolved yet (no proxy took it): none.
    expect(
      tcpRoute(
        {
          ...routed,
          tcpRoutes: { ...routed.tcpRoutes!, rules: routed.tcpRoutes!.rules.slice(0, 1) },
        },
        6432,
        random,
      ),
    ).toBeNull();
    expect(tcpRoute(db, 5432, random)).toBeNull();
  });

  it("resolves a caller's conditions in each proxy, as for HTTP", () => {
    const inBatch = routesForThisProxy(
      meshState(
        proxyScope('job', (p) => ({ ...p, pod: { ...p.pod, namespace: 'batch' } })),
        routed,
      ),
    );
    expect(tcpRoute(inBatch.services.get('default/db')!, 6432, Math.random)).toEqual({
      service: 'default/db',
      subset: 'v2',
      weight: 1,
    });
    const elsewhere = routesForThisProxy(meshState(proxyScope('web'), routed));
    expect(elsewhere.services.get('default/db')?.tcpRoutes?.rules).toHaveLength(1);
  });
});

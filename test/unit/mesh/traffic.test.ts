import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { HttpRouteTable, MeshService, RequestMatch } from '../../../src/api/mesh';
import {
  routeStatusParents,
  MESH_CONTROLLER_NAME,
  readMeshFile,
  validateMeshObject,
} from '../../../src/mesh';
import { parseManifests } from '../../../src/injector/manifests';
import { answerMeshValidation } from '../../../src/admission/validate-mesh';
import { formatProxyConfig } from '../../../src/cli/proxy-config';
import { compareGatewayMatches, mergeMatch } from '../../../src/mesh/traffic';
import { parseDuration } from '../../../src/mesh/traffic-validate';
import {
  createdAt,
  endpointSlice,
  inNamespace,
  modelOf,
  pod,
  service,
  SETTINGS,
  WEB_PROXY,
  withClusterIP,
  withEndpoint,
  withIP,
  withLabels,
  withPort,
  withSlicePort,
  type Raw,
} from '../../fixtures/mesh-objects';

const EXAMPLES = path.join(__dirname, '../../../examples/traffic');
/** The documents of an example file, as written. */
const example = (file: string): Raw[] =>
  parseManifests(readFileSync(path.join(EXAMPLES, file), 'utf8')) as Raw[];
const ofKind = (raws: Raw[], kind: string): Raw[] => raws.filter((r) => r.kind === kind);

/** Service reviews (9080 http) with Pods reviews-1/2/3 labelled version v1/v2/v3. */
function reviewsMesh(...extra: Raw[]): Raw[] {
  const slice = endpointSlice(
    'reviews',
    withSlicePort(9080, 'http'),
    withEndpoint('10.0.0.1', { pod: 'reviews-1' }),
    withEndpoint('10.0.0.2', { pod: 'reviews-2' }),
    withEndpoint('10.0.0.3', { pod: 'reviews-3' }),
  );
  return [
    service('reviews', withPort(9080, 'http'), withClusterIP('10.96.0.20')),
    slice,
    pod('reviews-1', withLabels({ version: 'v1' }), withIP('10.0.0.1')),
    pod('reviews-2', withLabels({ version: 'v2' }), withIP('10.0.0.2')),
    pod('reviews-3', withLabels({ version: 'v3' }), withIP('10.0.0.3')),
    ...extra,
  ];
}

const built = (raws: Raw[], key = 'default/reviews'): MeshService => {
  const s = modelOf(raws).service(key)?.service;
  if (s === undefined) throw new Error(`no service ${key}`);
  return s;
};

function problemsOf(raw: Raw): { field: string; message: string }[] {
  const v = validateMeshObject(raw);
  if (v.status !== 'invalid') throw new Error(`expected invalid, got ${JSON.stringify(v)}`);
  return [...v.problems];
}

function warningsOf(raw: Raw): { field: string; message: string }[] {
  const v = validateMeshObject(raw);
  if (v.status !== 'valid') throw new Error(`expected valid, got ${JSON.stringify(v)}`);
  return [...v.warnings];
}

const vs = (http: unknown[], extra: Raw = {}, name = 'reviews'): Raw => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'VirtualService',
  metadata: { name, namespace: 'default' },
  spec: { hosts: ['reviews'], http, ...extra },
});
const dr = (spec: Raw, name = 'reviews'): Raw => ({
  apiVersion: 'networking.istio.io/v1beta1',
  kind: 'DestinationRule',
  metadata: { name, namespace: 'default' },
  spec: { host: 'reviews', ...spec },
});
const httpRoute = (name: string, rules: unknown[], parentRefs?: unknown[]): Raw => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'HTTPRoute',
  metadata: { name, namespace: 'default' },
  spec: {
    parentRefs: parentRefs ?? [{ group: '', kind: 'Service', name: 'reviews', port: 9080 }],
    rules,
  },
});
const to = (host: string, extra: Raw = {}): Raw => ({ destination: { host }, ...extra });

describe('the seed examples, as written in examples/traffic', () => {
  it('canary-95-5.yaml: 95% to subset v1, 5% to v2; each endpoint lists the subsets its Pod labels put it in', () => {
    const s = built(reviewsMesh(...example('canary-95-5.yaml')));
    expect(s.routes).toEqual({
      source: { kind: 'VirtualService', namespace: 'default', name: 'reviews' },
      rules: [
        {
          matches: [],
          destinations: [
            { service: 'default/reviews', subset: 'v1', weight: 95 },
            { service: 'default/reviews', subset: 'v2', weight: 5 },
          ],
        },
      ],
    });
    expect(s.policy).toEqual({
      source: { namespace: 'default', name: 'reviews' },
      subsets: [{ name: 'v1' }, { name: 'v2' }, { name: 'v3' }],
    });
    expect(s.endpoints.map((e) => [e.address, e.subsets])).toEqual([
      ['10.0.0.1', ['v1']],
      ['10.0.0.2', ['v2']],
      ['10.0.0.3', ['v3']],
    ]);
  });

  it("delegate.yaml: /api/v2 to v2 and the rest of /api to v1 with 3 s, by the team's rules; the rest to v1", () => {
    const raws = reviewsMesh(
      ...ofKind(example('canary-95-5.yaml'), 'DestinationRule'),
      ...example('delegate.yaml'),
    );
    expect(
      built(raws).routes?.rules.map((r) => [r.matches, r.destinations, r.timeoutMs ?? null]),
    ).toEqual([
      [
        [{ uri: { prefix: '/api/v2' } }],
        [{ service: 'default/reviews', subset: 'v2', weight: 100 }],
        null,
      ],
      [
        [{ uri: { prefix: '/api' } }],
        [{ service: 'default/reviews', subset: 'v1', weight: 100 }],
        3000,
      ],
      [[], [{ service: 'default/reviews', subset: 'v1', weight: 100 }], null],
    ]);
  });

  it('dark-launch.yaml: the header custom-header-dark-launch: v3 goes to v3, the rest to v1', () => {
    const raws = [
      ...example('dark-launch.yaml'),
      ...ofKind(example('canary-95-5.yaml'), 'DestinationRule'),
    ];
    const routes = built(reviewsMesh(...raws)).routes as HttpRouteTable;
    expect(routes.rules).toEqual([
      {
        name: 'reviews-v3',
        matches: [{ headers: [{ name: 'custom-header-dark-launch', value: { exact: 'v3' } }] }],
        destinations: [{ service: 'default/reviews', subset: 'v3', weight: 100 }],
      },
      {
        name: 'reviews-v1',
        matches: [],
        destinations: [{ service: 'default/reviews', subset: 'v1', weight: 100 }],
      },
    ]);
  });

  it('mirror.yaml: every request to v1, and a copy of each to v2', () => {
    const raws = [
      ...example('mirror.yaml'),
      ...ofKind(example('canary-95-5.yaml'), 'DestinationRule'),
    ];
    expect(built(reviewsMesh(...raws)).routes?.rules).toEqual([
      {
        matches: [],
        destinations: [{ service: 'default/reviews', subset: 'v1', weight: 100 }],
        mirrors: [{ service: 'default/reviews', subset: 'v2', percent: 100 }],
      },
    ]);
  });

  it('retries-timeout.yaml: 3 retries of 2 s each on connect-failure and refused-stream, 10 s in all', () => {
    const raws = [service('ratings', withPort(9080, 'http')), ...example('retries-timeout.yaml')];
    expect(built(raws, 'default/ratings').routes?.rules).toEqual([
      {
        matches: [],
        destinations: [{ service: 'default/ratings', weight: 100 }],
        timeoutMs: 10_000,
        retries: {
          attempts: 3,
          perTryTimeoutMs: 2000,
          retryOn: ['connect-failure', 'refused-stream'],
        },
      },
    ]);
  });

  it('outlier-detection.yaml: 2 consecutive 5xx, checked each second, 3 minutes of ejection, up to 100%', () => {
    const raws = [service('details', withPort(9080, 'http')), ...example('outlier-detection.yaml')];
    expect(built(raws, 'default/details').policy?.trafficPolicy).toEqual({
      outlierDetection: {
        consecutive5xxErrors: 2,
        consecutiveGatewayErrors: 0,
        intervalMs: 1000,
        baseEjectionTimeMs: 180_000,
        maxEjectionPercent: 100,
      },
    });
  });

  it('httproute-canary.yaml: the header match first, then the 90/10 split with its timeout and header', () => {
    const raws = [
      ...reviewsMesh(),
      service('reviews-v1', withPort(9080, 'http')),
      service('reviews-v2', withPort(9080, 'http')),
      ...example('httproute-canary.yaml'),
    ];
    expect(built(raws).routes).toEqual({
      source: { kind: 'HTTPRoute', namespace: 'default', name: 'reviews' },
      // The route attaches to port 9080 only: another port of the Service goes by default.
      ports: [9080],
      rules: [
        {
          matches: [
            {
              pathPrefix: '/',
              port: 9080,
              headers: [{ name: 'x-canary', value: { exact: 'true' } }],
            },
          ],
          destinations: [{ service: 'default/reviews-v2', port: 9080, weight: 1 }],
          noBackendStatus: 500,
        },
        {
          matches: [{ pathPrefix: '/', port: 9080 }],
          destinations: [
            { service: 'default/reviews-v1', port: 9080, weight: 90 },
            { service: 'default/reviews-v2', port: 9080, weight: 10 },
          ],
          noBackendStatus: 500,
          timeoutMs: 5000,
          requestHeaders: { add: [{ name: 'x-routed-by', value: 'mooring' }] },
        },
      ],
    });
  });
});

describe('VirtualService: hosts, matches, weights, retries, faults, with Istio defaults', () => {
  it.each([
    ['a short name, in the VirtualService namespace', 'reviews', 'default/reviews'],
    ['name.namespace', 'reviews.shop', 'shop/reviews'],
    ['the FQDN', 'reviews.shop.svc.cluster.local', 'shop/reviews'],
    ['name.namespace.svc', 'reviews.shop.svc', 'shop/reviews'],
  ])('resolves a host given as %s', (_, host, key) => {
    const raws = [
      service('reviews', withPort(9080, 'http'), inNamespace('shop')),
      service('reviews', withPort(9080, 'http')),
      vs([{ route: [to(host)] }], { hosts: [host] }),
    ];
    const model = modelOf(raws);
    expect(model.service(key)?.service.routes?.rules[0]?.destinations).toEqual([
      { service: key, weight: 100 },
    ]);
    const other = key === 'default/reviews' ? 'shop/reviews' : 'default/reviews';
    expect(model.service(other)?.service.routes).toBeUndefined();
  });

  it('warns about a host that can be neither a Service nor a ServiceEntry host, and routes the others', () => {
    const v = validateMeshObject(
      vs([{ route: [to('reviews')] }], { hosts: ['reviews', 'www.example.com', '*'] }),
    );
    if (v.status !== 'valid') throw new Error('expected valid');
    expect(v.warnings).toEqual([
      {
        field: 'spec.hosts[2]',
        message: '"*" is neither a Kubernetes Service nor a ServiceEntry\'s host: ignored',
      },
    ]);
    // An external name is a ServiceEntry's host, by its own key.
    expect((v.object as { readonly hosts: readonly string[] }).hosts).toEqual([
      'default/reviews',
      'www.example.com',
    ]);
  });

  it('reads uri, method, headers, withoutHeaders, queryParams and port into the match', () => {
    const raws = reviewsMesh(
      vs([
        {
          match: [
            {
              uri: { prefix: '/api' },
              method: { exact: 'GET' },
              headers: { 'x-user': { regex: 'a.*' }, 'x-any': {} },
              withoutHeaders: { 'x-debug': { exact: '1' } },
              queryParams: { v: { exact: '2' } },
              port: 9080,
            },
          ],
          route: [to('reviews')],
        },
      ]),
    );
    expect(built(raws).routes?.rules[0]?.matches).toEqual([
      {
        uri: { prefix: '/api' },
        method: { exact: 'GET' },
        port: 9080,
        headers: [
          { name: 'x-user', value: { regex: 'a.*' } },
          { name: 'x-any' },
          { name: 'x-debug', value: { exact: '1' }, invert: true },
        ],
        queryParams: [{ name: 'v', value: { exact: '2' } }],
      },
    ]);
  });

  it('gives a lone destination every request, and a destination without weight among several none', () => {
    const raws = reviewsMesh(
      vs([
        { match: [{ uri: { exact: '/a' } }], route: [to('reviews', { weight: 10 })] },
        {
          route: [
            to('reviews', { weight: 100 }),
            { destination: { host: 'reviews', subset: 'v2' } },
          ],
        },
      ]),
    );
    const rules = built(raws).routes?.rules ?? [];
    expect(rules[0]?.destinations).toEqual([{ service: 'default/reviews', weight: 10 }]);
    expect(rules[1]?.destinations).toEqual([
      { service: 'default/reviews', weight: 100 },
      { service: 'default/reviews', subset: 'v2', weight: 0 },
    ]);
  });

  it('keeps a destination subset no DestinationRule defines: no endpoint is in it (the proxy answers 503)', () => {
    const s = built(
      reviewsMesh(
        vs([{ route: [to('reviews', { destination: { host: 'reviews', subset: 'v9' } })] }]),
      ),
    );
    expect(s.routes?.rules[0]?.destinations).toEqual([
      { service: 'default/reviews', subset: 'v9', weight: 100 },
    ]);
    expect(s.endpoints.every((e) => e.subsets === undefined)).toBe(true);
  });

  it('fills retries as Istio: attempts 2 and the default conditions; numeric retryOn entries are status codes', () => {
    const raws = reviewsMesh(
      vs([
        { match: [{ uri: { exact: '/a' } }], route: [to('reviews')], retries: {} },
        { match: [{ uri: { exact: '/b' } }], route: [to('reviews')], retries: { attempts: 0 } },
        {
          route: [to('reviews')],
          retries: { attempts: 4, retryOn: '5xx, 409,gateway-error' },
        },
      ]),
    );
    expect(built(raws).routes?.rules.map((r) => r.retries)).toEqual([
      {
        attempts: 2,
        retryOn: [
          'connect-failure',
          'refused-stream',
          'unavailable',
          'cancelled',
          'retriable-status-codes',
        ],
      },
      {
        attempts: 0,
        retryOn: [
          'connect-failure',
          'refused-stream',
          'unavailable',
          'cancelled',
          'retriable-status-codes',
        ],
      },
      {
        attempts: 4,
        retryOn: ['5xx', 'retriable-status-codes', 'gateway-error'],
        retriableStatusCodes: [409],
      },
    ]);
  });

  it('caps a per-try timeout at the route timeout, with a warning; a timeout of 0 is none', () => {
    const raw = vs([
      { route: [to('reviews')], timeout: '1s', retries: { attempts: 1, perTryTimeout: '5s' } },
      { route: [to('reviews')], timeout: '0s' },
    ]);
    expect(warningsOf(raw)).toEqual([
      {
        field: 'spec.http[0].retries.perTryTimeout',
        message: "is longer than the route's timeout: each try ends with the request",
      },
    ]);
    const rules = built(reviewsMesh(raw)).routes?.rules ?? [];
    expect(rules[0]?.retries?.perTryTimeoutMs).toBe(1000);
    expect(rules[1]?.timeoutMs).toBeUndefined();
  });

  it('reads an abort with a gRPC status, and the HTTP status gRPC maps it to for other clients', () => {
    const raws = reviewsMesh(
      vs([
        {
          route: [to('reviews')],
          fault: { abort: { grpcStatus: 'UNAVAILABLE', percentage: { value: 50 } } },
        },
      ]),
    );
    expect(built(raws).routes?.rules[0]?.fault).toEqual({
      abort: { httpStatus: 503, percent: 50, grpcStatus: 14 },
    });
  });

  it('reads a fault: a delay and an abort, each for a percentage (100 when absent)', () => {
    const raws = reviewsMesh(
      vs([
        {
          route: [to('reviews')],
          fault: {
            delay: { fixedDelay: '1.5s', percentage: { value: 12.5 } },
            abort: { httpStatus: 503 },
          },
        },
      ]),
    );
    expect(built(raws).routes?.rules[0]?.fault).toEqual({
      delay: { fixedDelayMs: 1500, percent: 12.5 },
      abort: { httpStatus: 503, percent: 100 },
    });
  });

  it('reads request header operations and a rewrite', () => {
    const raws = reviewsMesh(
      vs([
        {
          route: [to('reviews')],
          headers: {
            request: { set: { 'x-a': '1' }, add: { 'x-b': '2' }, remove: ['x-c'] },
            response: { set: { 'Cache-Control': 'no-store' }, remove: ['server'] },
          },
          rewrite: { uri: '/v2', authority: 'reviews.internal' },
        },
      ]),
    );
    const rule = built(raws).routes?.rules[0];
    expect(rule?.requestHeaders).toEqual({
      set: [{ name: 'x-a', value: '1' }],
      add: [{ name: 'x-b', value: '2' }],
      remove: ['x-c'],
    });
    expect(rule?.responseHeaders).toEqual({
      set: [{ name: 'cache-control', value: 'no-store' }],
      remove: ['server'],
    });
    expect(rule?.rewrite).toEqual({ prefix: '/v2', authority: 'reviews.internal' });
  });

  it("reads a redirect and a direct response, Istio's defaults filled (301, the request's port)", () => {
    const raws = reviewsMesh(
      vs([
        {
          match: [{ uri: { prefix: '/old' } }],
          redirect: {
            uri: '/new',
            authority: 'shop.example',
            scheme: 'HTTPS',
            derivePort: 'FROM_PROTOCOL_DEFAULT',
          },
        },
        { match: [{ uri: { exact: '/moved' } }], redirect: { uri: '/here', redirectCode: 308 } },
        {
          match: [{ uri: { exact: '/gone' } }],
          directResponse: { status: 410, body: { string: 'gone' } },
        },
        {
          match: [{ uri: { exact: '/pixel' } }],
          // URL-safe base64 without padding, as protobuf's JSON also takes.
          directResponse: { status: 200, body: { bytes: '_wCA' } },
        },
        { route: [to('reviews')] },
      ]),
    );
    const rules = built(raws).routes?.rules ?? [];
    expect(rules.map((r) => r.reply)).toEqual([
      {
        kind: 'redirect',
        status: 301,
        scheme: 'https',
        host: 'shop.example',
        port: 'scheme',
        path: { fullPath: '/new' },
      },
      { kind: 'redirect', status: 308, port: 'request', path: { fullPath: '/here' } },
      { kind: 'direct', status: 410, body: 'gone' },
      { kind: 'direct', status: 200, body: '/wCA', encoding: 'base64' },
      undefined,
    ]);
    expect(rules.slice(0, 4).map((r) => r.destinations)).toEqual([[], [], [], []]);
  });

  it('reads tcp routes by port and caller, and leaves HTTP to the default when it has no http', () => {
    const raws = reviewsMesh(
      vs([], {
        tcp: [
          {
            match: [{ port: 9080, sourceLabels: { app: 'ratings' } }],
            route: [
              { destination: { host: 'reviews', subset: 'v1' }, weight: 80 },
              {
                destination: { host: 'reviews', subset: 'v2', port: { number: 9081 } },
                weight: 20,
              },
            ],
          },
        ],
      }),
    );
    const s = built(raws);
    expect(s.routes).toBeUndefined();
    expect(s.tcpRoutes).toEqual({
      source: { kind: 'VirtualService', namespace: 'default', name: 'reviews' },
      rules: [
        {
          matches: [{ port: 9080, sourceLabels: { app: 'ratings' } }],
          destinations: [
            { service: 'default/reviews', subset: 'v1', weight: 80 },
            { service: 'default/reviews', subset: 'v2', port: 9081, weight: 20 },
          ],
        },
      ],
    });
    expect(
      problemsOf(vs([], { tcp: [{ match: [{ destinationSubnets: ['10.0.0.0/8'] }], route: [] }] })),
    ).toEqual([{ field: 'spec.tcp[0].route', message: 'needs at least one destination' }]);
  });

  it('reads authority and scheme matches and a uriRegexRewrite', () => {
    const raws = reviewsMesh(
      vs([
        {
          match: [{ authority: { prefix: 'reviews.' }, scheme: { exact: 'http' } }],
          rewrite: {
            uriRegexRewrite: { match: '^/service/([^/]+)(/.*)$', rewrite: '\\2/instance/\\1' },
          },
          route: [to('reviews')],
        },
      ]),
    );
    const rule = built(raws).routes?.rules[0];
    expect(rule?.matches).toEqual([
      { authority: { prefix: 'reviews.' }, scheme: { exact: 'http' } },
    ]);
    expect(rule?.rewrite).toEqual({
      regex: { match: '^/service/([^/]+)(/.*)$', rewrite: '\\2/instance/\\1' },
    });
  });

  it("keeps a match's sourceLabels and sourceNamespace for each proxy to resolve", () => {
    const raws = reviewsMesh(
      vs([
        {
          match: [{ sourceLabels: { app: 'productpage', version: 'v2' }, sourceNamespace: 'shop' }],
          route: [to('reviews')],
        },
      ]),
    );
    expect(built(raws).routes?.rules[0]?.matches).toEqual([
      { sourceLabels: { app: 'productpage', version: 'v2' }, sourceNamespace: 'shop' },
    ]);
  });

  it('reads a corsPolicy, the old allowOrigin list too', () => {
    const raws = reviewsMesh(
      vs([
        {
          route: [to('reviews')],
          corsPolicy: {
            allowOrigins: [{ exact: 'https://a.example' }, { regex: 'https://.*\\.b\\.example' }],
            allowOrigin: ['https://c.example', '*'],
            allowMethods: ['GET', 'POST'],
            allowHeaders: ['x-token'],
            exposeHeaders: ['x-trace'],
            maxAge: '24h',
            allowCredentials: true,
            unmatchedPreflights: 'IGNORE',
          },
        },
      ]),
    );
    expect(built(raws).routes?.rules[0]?.cors).toEqual({
      allowOrigins: [
        { exact: 'https://a.example' },
        { regex: 'https://.*\\.b\\.example' },
        { exact: 'https://c.example' },
        { prefix: '' },
      ],
      allowMethods: ['GET', 'POST'],
      allowHeaders: ['x-token'],
      exposeHeaders: ['x-trace'],
      maxAgeSeconds: 86400,
      allowCredentials: true,
      ignoreUnmatchedPreflights: true,
    });
  });

  it('reads mirror with mirrorPercentage (and the older mirrorPercent), and mirrors, each 100% by default', () => {
    const raws = reviewsMesh(
      vs([
        {
          match: [{ uri: { prefix: '/a' } }],
          route: [to('reviews')],
          mirror: { host: 'reviews', subset: 'v2' },
          mirrorPercentage: { value: 12.5 },
        },
        {
          match: [{ uri: { prefix: '/b' } }],
          route: [to('reviews')],
          mirror: { host: 'ratings.shop' },
          mirrorPercent: 30,
        },
        {
          route: [to('reviews')],
          mirrors: [
            { destination: { host: 'reviews', port: { number: 9080 } } },
            { destination: { host: 'ratings' }, percentage: { value: 0 } },
          ],
        },
      ]),
    );
    expect(built(raws).routes?.rules.map((r) => r.mirrors)).toEqual([
      [{ service: 'default/reviews', subset: 'v2', percent: 12.5 }],
      [{ service: 'shop/ratings', percent: 30 }],
      [
        { service: 'default/reviews', port: 9080, percent: 100 },
        { service: 'default/ratings', percent: 0 },
      ],
    ]);
  });

  it('reads tls routes by server name (sniHosts), with their port and caller, beside tcp routes', () => {
    const raws = reviewsMesh(
      vs([], {
        tls: [
          {
            match: [{ port: 443, sniHosts: ['Reviews.Example', '*.shop.example'] }],
            route: [{ destination: { host: 'reviews', subset: 'v2' } }],
          },
          { match: [{ sniHosts: ['*'], sourceLabels: { app: 'web' } }], route: [to('reviews')] },
        ],
        tcp: [{ route: [to('reviews')] }],
      }),
    );
    const s = built(raws);
    expect(s.tlsRoutes?.rules).toEqual([
      {
        matches: [{ port: 443, sniHosts: ['reviews.example', '*.shop.example'] }],
        destinations: [{ service: 'default/reviews', subset: 'v2', weight: 100 }],
      },
      {
        matches: [{ sniHosts: ['*'], sourceLabels: { app: 'web' } }],
        destinations: [{ service: 'default/reviews', weight: 100 }],
      },
    ]);
    expect(s.tcpRoutes?.rules).toHaveLength(1);
  });

  it('warns that a mirrorPercentage without mirror does nothing', () => {
    expect(warningsOf(vs([{ route: [to('reviews')], mirrorPercentage: { value: 5 } }]))).toEqual([
      {
        field: 'spec.http[0].mirrorPercentage',
        message: 'has no effect without mirror: ignored',
      },
    ]);
  });

  it('leaves a VirtualService bound to gateways only out of the mesh', () => {
    const raws = reviewsMesh(vs([{ route: [to('reviews')] }], { gateways: ['ingress'] }));
    expect(built(raws).routes).toBeUndefined();
  });
});

describe('conflicting objects: which one wins', () => {
  it('of two VirtualServices for one host, the older one gives the routes; the other is listed as shadowed', () => {
    const older = createdAt('2026-01-01T00:00:00Z')(
      vs(
        [{ route: [to('reviews', { destination: { host: 'reviews', subset: 'v1' } })] }],
        {},
        'b-old',
      ),
    );
    const younger = createdAt('2026-06-01T00:00:00Z')(
      vs([{ route: [to('reviews')] }], {}, 'a-young'),
    );
    const routes = built(reviewsMesh(younger, older)).routes;
    expect(routes?.source).toEqual({ kind: 'VirtualService', namespace: 'default', name: 'b-old' });
    expect(routes?.shadowed).toEqual([
      {
        kind: 'VirtualService',
        namespace: 'default',
        name: 'a-young',
        reason: 'VirtualService default/b-old is older and names the same host',
      },
    ]);
  });

  it('with equal (or no) timestamps, namespace/name order decides', () => {
    const routes = built(
      reviewsMesh(
        vs([{ route: [to('reviews')] }], {}, 'zeta'),
        vs([{ route: [to('reviews')] }], {}, 'alpha'),
      ),
    ).routes;
    expect(routes?.source.name).toBe('alpha');
  });

  it('a VirtualService wins over an HTTPRoute for the same Service', () => {
    const raws = reviewsMesh(
      createdAt('2026-06-01T00:00:00Z')(vs([{ route: [to('reviews')] }])),
      createdAt('2026-01-01T00:00:00Z')(
        httpRoute('older-route', [{ backendRefs: [{ name: 'reviews', port: 9080 }] }]),
      ),
    );
    const routes = built(raws).routes;
    expect(routes?.source.kind).toBe('VirtualService');
    expect(routes?.shadowed).toEqual([
      {
        kind: 'HTTPRoute',
        namespace: 'default',
        name: 'older-route',
        reason:
          'VirtualService default/reviews names the same host: a VirtualService wins over an HTTPRoute',
      },
    ]);
  });

  it('a VirtualService with tcp routes only leaves HTTP to the HTTPRoutes, in the model and in their status', () => {
    const raws = reviewsMesh(
      createdAt('2026-01-01T00:00:00Z')(
        vs([], { tcp: [{ route: [{ destination: { host: 'reviews' } }] }] }),
      ),
      createdAt('2026-06-01T00:00:00Z')(
        httpRoute('route', [{ backendRefs: [{ name: 'reviews', port: 9080 }] }]),
      ),
    );
    const model = modelOf(raws);
    expect(model.service('default/reviews')?.service.routes?.source).toEqual({
      kind: 'HTTPRoute',
      namespace: 'default',
      name: 'route',
    });
    expect(model.routeFacts().virtualServiceFor('default/reviews', 'HTTPRoute')).toBeNull();
  });

  it("of two DestinationRules for one host in one namespace, the older one's policy is used, the younger merged in", () => {
    const raws = reviewsMesh(
      createdAt('2026-06-01T00:00:00Z')(
        dr({ trafficPolicy: { loadBalancer: { simple: 'RANDOM' } } }, 'young'),
      ),
      createdAt('2026-01-01T00:00:00Z')(
        dr({ trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' } } }, 'old'),
      ),
    );
    expect(built(raws).policy).toEqual({
      source: { namespace: 'default', name: 'old' },
      merged: [{ namespace: 'default', name: 'young' }],
      trafficPolicy: { loadBalancer: 'ROUND_ROBIN' },
    });
  });
});

describe('DestinationRule: policies with Istio defaults', () => {
  it('fills outlier detection defaults (5 errors, 10 s, 30 s, 10%) and maps LEAST_CONN to LEAST_REQUEST', () => {
    const raws = reviewsMesh(
      dr({
        trafficPolicy: {
          loadBalancer: { simple: 'LEAST_CONN' },
          outlierDetection: {},
          connectionPool: {
            tcp: {
              maxConnections: 10,
              connectTimeout: '250ms',
              idleTimeout: '30m',
              maxConnectionDuration: '10m',
              tcpKeepalive: { time: '600s', interval: '75s', probes: 3 },
            },
            http: {
              http1MaxPendingRequests: 5,
              maxRequestsPerConnection: 0,
              maxRetries: 3,
              idleTimeout: '45s',
            },
          },
        },
        subsets: [
          {
            name: 'v2',
            labels: { version: 'v2' },
            trafficPolicy: {
              loadBalancer: { simple: 'RANDOM' },
              connectionPool: { tcp: { idleTimeout: '0s' }, http: { idleTimeout: '0s' } },
            },
          },
        ],
      }),
    );
    const s = built(raws);
    expect(s.policy?.trafficPolicy).toEqual({
      loadBalancer: 'LEAST_REQUEST',
      connectionPool: {
        tcp: {
          maxConnections: 10,
          connectTimeoutMs: 250,
          idleTimeoutMs: 1_800_000,
          maxConnectionDurationMs: 600_000,
          keepalive: { timeS: 600, intervalS: 75, probes: 3 },
        },
        http: { http1MaxPendingRequests: 5, maxRetries: 3, idleTimeoutMs: 45_000 },
      },
      outlierDetection: {
        consecutive5xxErrors: 5,
        consecutiveGatewayErrors: 0,
        intervalMs: 10_000,
        baseEjectionTimeMs: 30_000,
        maxEjectionPercent: 10,
      },
    });
    // An idle timeout of 0 is kept: it turns Istio's 1 hour off.
    expect(s.policy?.subsets).toEqual([
      {
        name: 'v2',
        trafficPolicy: {
          loadBalancer: 'RANDOM',
          connectionPool: { tcp: { idleTimeoutMs: 0 }, http: { idleTimeoutMs: 0 } },
        },
      },
    ]);
    expect(s.endpoints.map((e) => e.subsets)).toEqual([undefined, ['v2'], undefined]);
  });
});

describe('DestinationRule: portLevelSettings and tls', () => {
  it('reads the settings of each port; tls ISTIO_MUTUAL is what Mooring does (no warning)', () => {
    const rule = dr({
      trafficPolicy: {
        tls: { mode: 'ISTIO_MUTUAL' },
        loadBalancer: { simple: 'ROUND_ROBIN' },
        portLevelSettings: [
          {
            port: { number: 9080 },
            loadBalancer: { consistentHash: { httpHeaderName: 'x-user' } },
            connectionPool: { tcp: { maxConnections: 5 } },
          },
        ],
      },
    });
    const raws = reviewsMesh(rule);
    expect(built(raws).policy?.trafficPolicy).toEqual({
      tls: { mode: 'ISTIO_MUTUAL' },
      loadBalancer: 'ROUND_ROBIN',
      portLevelSettings: [
        {
          port: 9080,
          consistentHash: { header: 'x-user' },
          connectionPool: { tcp: { maxConnections: 5 } },
        },
      ],
    });
    expect(warningsOf(rule)).toEqual([]);
  });

  it('reads tls DISABLE, and SIMPLE and MUTUAL with their files, names and checks', () => {
    const disabled = dr({
      trafficPolicy: {
        tls: { mode: 'DISABLE' },
        portLevelSettings: [{ port: { number: 9080 }, tls: { mode: 'ISTIO_MUTUAL' } }],
      },
    });
    expect(built(reviewsMesh(disabled)).policy?.trafficPolicy).toEqual({
      tls: { mode: 'DISABLE' },
      portLevelSettings: [{ port: 9080, tls: { mode: 'ISTIO_MUTUAL' } }],
    });
    const mutual = dr({
      trafficPolicy: {
        tls: {
          mode: 'MUTUAL',
          sni: 'db.example',
          subjectAltNames: ['db.example', 'db2.example'],
          caCertificates: '/etc/db/ca.pem',
          caCrl: '/etc/db/crl.pem',
          clientCertificate: '/etc/db/cert.pem',
          privateKey: '/etc/db/key.pem',
        },
      },
    });
    expect(built(reviewsMesh(mutual)).policy?.trafficPolicy?.tls).toEqual({
      mode: 'MUTUAL',
      sni: 'db.example',
      subjectAltNames: ['db.example', 'db2.example'],
      caCertificates: '/etc/db/ca.pem',
      caCrl: '/etc/db/crl.pem',
      clientCertificate: '/etc/db/cert.pem',
      privateKey: '/etc/db/key.pem',
    });
    expect(
      problemsOf(
        dr({
          trafficPolicy: {
            tls: {
              mode: 'MUTUAL',
              credentialName: 'db-client',
              caCertificates: 'ca.pem',
              caCrl: 'crl.pem',
            },
          },
        }),
      ),
    ).toEqual([
      {
        field: 'spec.trafficPolicy.tls.credentialName',
        message:
          "is not supported by Mooring's sidecar: give caCertificates, clientCertificate and privateKey as files in its container",
      },
      {
        field: 'spec.trafficPolicy.tls.caCertificates',
        message: 'must be an absolute path, not "ca.pem"',
      },
      {
        field: 'spec.trafficPolicy.tls.caCrl',
        message: 'must be an absolute path, not "crl.pem"',
      },
      {
        field: 'spec.trafficPolicy.tls',
        message: 'MUTUAL needs clientCertificate and privateKey',
      },
    ]);
    expect(problemsOf(dr({ trafficPolicy: { tls: { mode: 'TLS' } } }))).toEqual([
      {
        field: 'spec.trafficPolicy.tls.mode',
        message: 'must be DISABLE, SIMPLE, MUTUAL or ISTIO_MUTUAL, not "TLS"',
      },
    ]);
  });

  it('refuses a port given twice, or none', () => {
    const problems = problemsOf(
      dr({
        trafficPolicy: {
          portLevelSettings: [
            { port: { number: 80 }, loadBalancer: { simple: 'RANDOM' } },
            { port: { number: 80 }, loadBalancer: { simple: 'RANDOM' } },
            { loadBalancer: { simple: 'RANDOM' } },
          ],
        },
      }),
    );
    expect(problems).toEqual([
      {
        field: 'spec.trafficPolicy.portLevelSettings[1].port.number',
        message: 'port 80 has settings already',
      },
      {
        field: 'spec.trafficPolicy.portLevelSettings[2].port.number',
        message: 'must be a port number from 1 to 65535',
      },
    ]);
  });
});

describe('DestinationRule: consistentHash', () => {
  it.each<[string, object, object]>([
    ['a header (lower-cased)', { httpHeaderName: 'X-User' }, { header: 'x-user' }],
    ['the source address', { useSourceIp: true }, { sourceIp: true }],
    ['a query parameter', { httpQueryParameterName: 'user' }, { queryParameter: 'user' }],
    [
      'a cookie with its TTL and path',
      {
        httpCookie: { name: 'sticky', path: '/app', ttl: '1h' },
        ringHash: { minimumRingSize: 4096 },
      },
      { cookie: { name: 'sticky', path: '/app', ttlMs: 3_600_000 } },
    ],
  ])('reads %s', (_name, consistentHash, expected) => {
    const s = built(reviewsMesh(dr({ trafficPolicy: { loadBalancer: { consistentHash } } })));
    expect(s.policy?.trafficPolicy).toEqual({ consistentHash: expected });
  });

  it.each<[string, object, string, RegExp]>([
    [
      'two keys at once',
      { consistentHash: { httpHeaderName: 'x', useSourceIp: true } },
      'spec.trafficPolicy.loadBalancer.consistentHash',
      /exactly one of .* not httpHeaderName and useSourceIp/,
    ],
    [
      'simple beside it',
      { simple: 'ROUND_ROBIN', consistentHash: { useSourceIp: true } },
      'spec.trafficPolicy.loadBalancer',
      /simple or consistentHash, not both/,
    ],
    [
      'a cookie name that is not a token',
      { consistentHash: { httpCookie: { name: 'a b' } } },
      'spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name',
      /not a cookie name/,
    ],
  ])('refuses %s', (_name, loadBalancer, field, message) => {
    const problems = problemsOf(dr({ trafficPolicy: { loadBalancer } }));
    expect(problems).toContainEqual({ field, message: expect.stringMatching(message) });
  });
});

describe('HTTPRoute parentRefs by sectionName (a port name of the Service)', () => {
  const twoPorts = (): Raw[] =>
    reviewsMesh().map((r) => (r.kind === 'Service' ? withPort(9090, 'admin')(r) : r));
  const bySection = (sectionName: string, port?: number): Raw =>
    httpRoute(
      'r',
      [{ backendRefs: [{ name: 'reviews', port: 9080 }] }],
      [{ group: '', kind: 'Service', name: 'reviews', sectionName, ...(port ? { port } : {}) }],
    );

  it('applies the route to the port of that name only, the other port going by default', () => {
    const routes = built([...twoPorts(), bySection('admin')]).routes;
    expect(routes?.rules.map((r) => r.matches)).toEqual([[{ pathPrefix: '/', port: 9090 }]]);
    // The proxy routes a request to 9080 as if there were no route (not 404).
    expect(routes?.ports).toEqual([9090]);
  });

  it('leaves the Service alone when no port has that name, or the port does not agree', () => {
    expect(built([...twoPorts(), bySection('metrics')]).routes).toBeUndefined();
    expect(built([...twoPorts(), bySection('admin', 9080)]).routes).toBeUndefined();
    expect(built([...twoPorts(), bySection('admin', 9090)]).routes?.rules).toHaveLength(1);
  });
});

describe('HTTPRoute for a Service (GAMMA): defaults and Gateway API precedence', () => {
  it('fills a rule without matches with PathPrefix /, a backend without weight with 1; Gateway parents are not the mesh', () => {
    const raws = reviewsMesh(
      httpRoute(
        'r',
        [{ backendRefs: [{ name: 'reviews', port: 9080 }] }],
        [{ name: 'ingress' }, { kind: 'Service', group: '', name: 'reviews' }],
      ),
    );
    expect(built(raws).routes?.rules).toEqual([
      {
        matches: [{ pathPrefix: '/' }],
        destinations: [{ service: 'default/reviews', port: 9080, weight: 1 }],
        noBackendStatus: 500,
      },
    ]);
  });

  it('orders matches across routes: exact path, regex, longest prefix, method, most headers, most query params, then the oldest route', () => {
    const raws = reviewsMesh(
      createdAt('2026-01-01T00:00:00Z')(
        httpRoute('old', [
          {
            matches: [{ path: { type: 'PathPrefix', value: '/a' } }],
            backendRefs: [{ name: 'reviews', port: 9080 }],
          },
          {
            matches: [{ headers: [{ name: 'x-h', value: '1' }] }],
            backendRefs: [{ name: 'reviews', port: 9080 }],
          },
        ]),
      ),
      createdAt('2026-02-01T00:00:00Z')(
        httpRoute('new', [
          {
            matches: [
              { path: { type: 'PathPrefix', value: '/a/b' } },
              { path: { type: 'Exact', value: '/x' } },
              { path: { type: 'PathPrefix', value: '/a' }, method: 'POST' },
              { headers: [{ name: 'x-h', value: '1' }] },
              {
                headers: [
                  { name: 'x-h', value: '1' },
                  { name: 'x-i', value: '2' },
                ],
              },
              { path: { type: 'RegularExpression', value: '/r/[0-9]+' } },
            ],
            backendRefs: [{ name: 'reviews', port: 9080 }],
          },
        ]),
      ),
    );
    const routes = built(raws).routes as HttpRouteTable;
    expect(routes.source.name).toBe('old');
    expect(routes.merged).toEqual([
      { kind: 'HTTPRoute', namespace: 'default', name: 'old' },
      { kind: 'HTTPRoute', namespace: 'default', name: 'new' },
    ]);
    const strip = ({ port: _, ...m }: Record<string, unknown>) => m;
    expect(routes.rules.map((r) => strip({ ...r.matches[0] }))).toEqual([
      { uri: { exact: '/x' } },
      { uri: { regex: '/r/[0-9]+' } },
      { pathPrefix: '/a/b' },
      { pathPrefix: '/a', method: { exact: 'POST' } },
      { pathPrefix: '/a' },
      {
        pathPrefix: '/',
        headers: [
          { name: 'x-h', value: { exact: '1' } },
          { name: 'x-i', value: { exact: '2' } },
        ],
      },
      // the same match in both routes: the older route first
      { pathPrefix: '/', headers: [{ name: 'x-h', value: { exact: '1' } }] },
      { pathPrefix: '/', headers: [{ name: 'x-h', value: { exact: '1' } }] },
    ]);
    expect(compareGatewayMatches({ pathPrefix: '/a' }, { pathPrefix: '/a' })).toBe(0);
  });

  it('answers 500 for a rule whose backend weights add up to 0 (no destination), and maps timeouts and retry', () => {
    const raws = reviewsMesh(
      httpRoute('r', [
        {
          matches: [{ path: { type: 'Exact', value: '/zero' } }],
          backendRefs: [{ name: 'reviews', port: 9080, weight: 0 }],
        },
        {
          backendRefs: [{ name: 'reviews', port: 9080 }],
          timeouts: { request: '3s', backendRequest: '1s' },
          retry: { attempts: 3, codes: [503], backoff: '50ms' },
        },
      ]),
    );
    const rules = built(raws).routes?.rules ?? [];
    expect(rules[0]?.destinations).toEqual([]);
    expect(rules[1]).toMatchObject({
      timeoutMs: 3000,
      retries: {
        attempts: 3,
        perTryTimeoutMs: 1000,
        retriableStatusCodes: [503],
        backoffBaseMs: 50,
        retryOn: [
          'connect-failure',
          'refused-stream',
          'unavailable',
          'cancelled',
          'retriable-status-codes',
        ],
      },
    });
  });

  it('reads URLRewrite, RequestHeaderModifier and ResponseHeaderModifier filters', () => {
    const raws = reviewsMesh(
      httpRoute('r', [
        {
          matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
          filters: [
            {
              type: 'URLRewrite',
              urlRewrite: {
                hostname: 'new.host',
                path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' },
              },
            },
            {
              type: 'RequestHeaderModifier',
              requestHeaderModifier: { set: [{ name: 'X-Set', value: 'v' }], remove: ['x-gone'] },
            },
            {
              type: 'ResponseHeaderModifier',
              responseHeaderModifier: { add: [{ name: 'X-Served-By', value: 'reviews' }] },
            },
          ],
          backendRefs: [{ name: 'reviews', port: 9080 }],
        },
      ]),
    );
    const rule = built(raws).routes?.rules[0];
    expect(rule?.rewrite).toEqual({ authority: 'new.host', prefix: '/new' });
    expect(rule?.requestHeaders).toEqual({
      set: [{ name: 'x-set', value: 'v' }],
      remove: ['x-gone'],
    });
    expect(rule?.responseHeaders).toEqual({ add: [{ name: 'x-served-by', value: 'reviews' }] });
  });

  it("reads a RequestRedirect filter: without a scheme the port is the Service's, with one the scheme's", () => {
    const redirectRule = (requestRedirect: object): object => ({
      matches: [{ path: { type: 'PathPrefix', value: '/old' } }],
      filters: [{ type: 'RequestRedirect', requestRedirect }],
    });
    const raws = reviewsMesh(
      httpRoute('r', [
        redirectRule({ path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/new' } }),
        redirectRule({ scheme: 'https', hostname: 'shop.example', statusCode: 302 }),
      ]),
    );
    const replies = (built(raws).routes?.rules ?? []).map((r) => r.reply);
    expect(replies).toEqual([
      { kind: 'redirect', status: 301, port: 'service', path: { prefix: '/new' } },
      { kind: 'redirect', status: 302, scheme: 'https', host: 'shop.example', port: 'scheme' },
    ]);
  });
});

describe('VirtualService delegate', () => {
  const root = (http: unknown[], extra: Raw = {}): Raw => vs(http, extra, 'bookinfo');
  const delegate = (name: string, http: unknown[], extra: Raw = {}): Raw => ({
    apiVersion: 'networking.istio.io/v1',
    kind: 'VirtualService',
    metadata: { name, namespace: 'default' },
    spec: { http, ...extra },
  });

  it("applies the delegate's rules under the root rule's matches, in their order", () => {
    const raws = reviewsMesh(
      root([
        { match: [{ uri: { prefix: '/reviews' } }], delegate: { name: 'reviews-rules' } },
        { route: [to('reviews', { destination: { host: 'reviews', subset: 'v1' } })] },
      ]),
      delegate('reviews-rules', [
        {
          match: [{ uri: { prefix: '/reviews/v2' } }, { headers: { 'x-canary': { exact: '1' } } }],
          route: [to('reviews', { destination: { host: 'reviews', subset: 'v2' } })],
          timeout: '2s',
        },
        // Outside the root's /reviews: it never applies.
        {
          match: [{ uri: { prefix: '/ratings' } }],
          route: [to('reviews', { destination: { host: 'reviews', subset: 'v3' } })],
        },
        { route: [to('reviews', { destination: { host: 'reviews', subset: 'v3' } })] },
      ]),
    );
    const rules = built(raws).routes?.rules ?? [];
    expect(rules.map((r) => [r.matches, r.destinations[0]?.subset, r.timeoutMs])).toEqual([
      [
        [
          { uri: { prefix: '/reviews/v2' } },
          { uri: { prefix: '/reviews' }, headers: [{ name: 'x-canary', value: { exact: '1' } }] },
        ],
        'v2',
        2000,
      ],
      [[{ uri: { prefix: '/reviews' } }], 'v3', undefined],
      [[], 'v1', undefined],
    ]);
  });

  it('follows a change of the delegate, and drops the rule when the delegate is gone or not exported to the root', () => {
    const raws = reviewsMesh(
      root([{ match: [{ uri: { prefix: '/r' } }], delegate: { name: 'd' } }]),
      delegate('d', [
        { route: [to('reviews', { destination: { host: 'reviews', subset: 'v1' } })] },
      ]),
    );
    const model = modelOf(raws);
    expect(
      model.service('default/reviews')?.service.routes?.rules[0]?.destinations[0]?.subset,
    ).toBe('v1');
    const changed = validateMeshObject(
      delegate('d', [
        { route: [to('reviews', { destination: { host: 'reviews', subset: 'v2' } })] },
      ]),
    );
    if (changed.status !== 'valid') throw new Error('invalid');
    model.upsert(changed.object);
    expect(model.commit()?.services).toEqual(['default/reviews']);
    expect(
      model.service('default/reviews')?.service.routes?.rules[0]?.destinations[0]?.subset,
    ).toBe('v2');
    const hidden = validateMeshObject(
      delegate(
        'd',
        [{ route: [to('reviews', { destination: { host: 'reviews', subset: 'v2' } })] }],
        { exportTo: ['shop'] },
      ),
    );
    if (hidden.status !== 'valid') throw new Error('invalid');
    model.upsert(hidden.object);
    model.commit();
    expect(model.service('default/reviews')?.service.routes?.rules).toEqual([]);
    model.remove({ kind: 'VirtualService', namespace: 'default', name: 'd' });
    model.commit();
    expect(model.service('default/reviews')?.service.routes?.rules).toEqual([]);
  });

  it('refuses a rule that delegates and routes, and a delegate that delegates again', () => {
    expect(
      problemsOf(root([{ delegate: { name: 'd' }, route: [to('reviews')] }])).map((p) => p.field),
    ).toEqual(['spec.http[0].delegate']);
    expect(problemsOf(delegate('d', [{ delegate: { name: 'e' } }])).map((p) => p.message)).toEqual([
      'a delegate VirtualService (no hosts) cannot delegate again',
    ]);
  });
});

describe('merging a delegate match into its root match', () => {
  it.each<[string, RequestMatch, RequestMatch, RequestMatch | null]>([
    [
      'a prefix under the prefix',
      { uri: { prefix: '/a' } },
      { uri: { prefix: '/a/b' } },
      { uri: { prefix: '/a/b' } },
    ],
    [
      'an exact path under the prefix',
      { uri: { prefix: '/a' } },
      { uri: { exact: '/a/x' } },
      { uri: { exact: '/a/x' } },
    ],
    ['a prefix outside', { uri: { prefix: '/a' } }, { uri: { prefix: '/b' } }, null],
    ['another exact path', { uri: { exact: '/a' } }, { uri: { exact: '/b' } }, null],
    ['two methods', { method: { exact: 'GET' } }, { method: { exact: 'POST' } }, null],
    [
      'headers that add up',
      { headers: [{ name: 'a', value: { exact: '1' } }] },
      { headers: [{ name: 'b', value: { exact: '2' } }] },
      {
        headers: [
          { name: 'a', value: { exact: '1' } },
          { name: 'b', value: { exact: '2' } },
        ],
      },
    ],
    [
      'one header two ways',
      { headers: [{ name: 'a', value: { exact: '1' } }] },
      { headers: [{ name: 'a', value: { exact: '2' } }] },
      null,
    ],
    [
      'the port of the root kept',
      { port: 9080 },
      { uri: { prefix: '/x' } },
      { port: 9080, uri: { prefix: '/x' } },
    ],
  ])('%s', (_, r, d, expected) => {
    expect(mergeMatch(r, d)).toEqual(expected);
  });
});

describe('VirtualService tcp and tls matches on subnets', () => {
  const tcpVs = (match: unknown[]): Raw =>
    vs([], { tcp: [{ match, route: [{ destination: { host: 'reviews' } }] }] });

  it('reads destinationSubnets and sourceSubnet as CIDRs, a bare address as /32 or /128', () => {
    const raws = reviewsMesh(
      tcpVs([{ destinationSubnets: ['10.96.0.20', 'fd00::/64'], sourceSubnet: '10.0.0.0/24' }]),
    );
    expect(built(raws).tcpRoutes?.rules[0]?.matches).toEqual([
      { destinationSubnets: ['10.96.0.20/32', 'fd00::/64'], sourceSubnet: '10.0.0.0/24' },
    ]);
  });

  it('names a value that is no address or CIDR', () => {
    expect(
      problemsOf(tcpVs([{ destinationSubnets: ['10.0.0.0/40'], sourceSubnet: 'db' }])),
    ).toEqual([
      {
        field: 'spec.tcp[0].match[0].destinationSubnets[0]',
        message: '"10.0.0.0/40" is not an IPv4 or IPv6 address or CIDR',
      },
      {
        field: 'spec.tcp[0].match[0].sourceSubnet',
        message: '"db" is not an IPv4 or IPv6 address or CIDR',
      },
    ]);
  });
});

describe('HTTPRoute CORS filter (experimental channel)', () => {
  const corsOf = (cors: Raw) => {
    const v = validateMeshObject(
      httpRoute('r', [
        { filters: [{ type: 'CORS', cors }], backendRefs: [{ name: 'reviews', port: 9080 }] },
      ]),
    );
    if (v.status !== 'valid' || v.object.kind !== 'HTTPRoute') throw new Error(JSON.stringify(v));
    return v.object.rules[0]?.cors;
  };

  it('reads origins (exact, a default port left out, a leading wildcard, any), lists and defaults', () => {
    expect(
      corsOf({
        allowOrigins: [
          'https://Shop.example:443',
          'http://a.example:8080',
          'https://*.cdn.example',
        ],
        allowMethods: ['GET', 'PUT'],
        allowHeaders: ['X-Token'],
        exposeHeaders: ['X-Trace'],
      }),
    ).toEqual({
      allowOrigins: [
        { exact: 'https://shop.example' },
        { exact: 'http://a.example:8080' },
        { regex: 'https://[a-z0-9.-]+\\.cdn\\.example' },
      ],
      allowMethods: ['GET', 'PUT'],
      allowHeaders: ['x-token'],
      exposeHeaders: ['x-trace'],
      // The Gateway API's default, and its answer to a preflight from another origin.
      maxAgeSeconds: 5,
      allowCredentials: false,
      ignoreUnmatchedPreflights: true,
    });
    expect(corsOf({ allowOrigins: ['*'], maxAge: 60 })).toMatchObject({
      allowOrigins: [{ prefix: '' }],
      maxAgeSeconds: 60,
    });
  });

  it('names a bad origin or a `*` beside other values', () => {
    expect(
      problemsOf(
        httpRoute('r', [
          {
            filters: [
              {
                type: 'CORS',
                cors: { allowOrigins: ['shop.example'], allowMethods: ['*', 'GET'] },
              },
            ],
            backendRefs: [{ name: 'reviews', port: 9080 }],
          },
        ]),
      ),
    ).toEqual([
      {
        field: 'spec.rules[0].filters[0].cors.allowOrigins[0]',
        message:
          '"shop.example" is not an origin (<scheme>://<host>[:<port>], http or https, the host may start with "*.")',
      },
      {
        field: 'spec.rules[0].filters[0].cors.allowMethods',
        message: 'has "*" alongside other values',
      },
    ]);
  });

  it('reaches the route table, and a GRPCRoute refuses it', () => {
    const raws = reviewsMesh(
      httpRoute('r', [
        {
          filters: [{ type: 'CORS', cors: { allowOrigins: ['https://shop.example'] } }],
          backendRefs: [{ name: 'reviews', port: 9080 }],
        },
      ]),
    );
    expect(built(raws).routes?.rules[0]?.cors?.allowOrigins).toEqual([
      { exact: 'https://shop.example' },
    ]);
    expect(
      problemsOf({
        ...httpRoute('g', [{ filters: [{ type: 'CORS', cors: {} }] }]),
        kind: 'GRPCRoute',
      }).map((p) => p.field),
    ).toEqual(['spec.rules[0].filters[0].type']);
  });
});

describe('RequestMirror filters', () => {
  it('read into mirrors: every request without percent, else percent or fraction (of 100 by default)', () => {
    const mirror = (extra: Raw): object => ({
      type: 'RequestMirror',
      requestMirror: { backendRef: { name: 'reviews', namespace: 'shop', port: 9080 }, ...extra },
    });
    const raws = reviewsMesh(
      httpRoute('r', [
        {
          filters: [
            mirror({}),
            mirror({ percent: 25 }),
            mirror({ fraction: { numerator: 1 } }),
            mirror({ fraction: { numerator: 1, denominator: 1000 } }),
          ],
          backendRefs: [{ name: 'reviews', port: 9080 }],
        },
      ]),
    );
    const m = (percent: number): object => ({ service: 'shop/reviews', port: 9080, percent });
    expect(built(raws).routes?.rules[0]?.mirrors).toEqual([m(100), m(25), m(1), m(0.1)]);
  });
});

describe('the model follows changes', () => {
  it('takes the routes away when the VirtualService goes, and a DestinationRule change re-labels endpoints', () => {
    const model = modelOf(reviewsMesh(...example('canary-95-5.yaml')));
    expect(model.service('default/reviews')?.service.routes).toBeDefined();
    model.remove({ kind: 'VirtualService', namespace: 'default', name: 'reviews' });
    const commit = model.commit();
    expect(commit?.services).toEqual(['default/reviews']);
    expect(model.service('default/reviews')?.service.routes).toBeUndefined();
    expect(model.service('default/reviews')?.service.endpoints[0]?.subsets).toEqual(['v1']);
    model.remove({ kind: 'DestinationRule', namespace: 'default', name: 'reviews' });
    model.commit();
    expect(model.service('default/reviews')?.service.endpoints[0]?.subsets).toBeUndefined();
    expect(model.counts()).toMatchObject({ VirtualService: 0, DestinationRule: 0, HTTPRoute: 0 });
  });
});

describe('bad objects: the field and what is wrong', () => {
  it.each<[string, Raw, string, RegExp]>([
    [
      'a regex RE2 cannot read',
      vs([{ match: [{ uri: { regex: '(?=x)a' } }], route: [to('reviews')] }]),
      'spec.http[0].match[0].uri.regex',
      /lookaround/,
    ],
    [
      'a regex that does not compile',
      vs([{ match: [{ headers: { 'x-a': { regex: '(' } } }], route: [to('reviews')] }]),
      'spec.http[0].match[0].headers.x-a.regex',
      /not a valid regular expression/,
    ],
    [
      'weights that add up to 0',
      vs([{ route: [to('reviews', { weight: 0 }), to('reviews', { weight: 0 })] }]),
      'spec.http[0].route',
      /add up to 0/,
    ],
    [
      'a negative weight',
      vs([{ route: [to('reviews', { weight: -5 }), to('reviews', { weight: 10 })] }]),
      'spec.http[0].route[0].weight',
      /at least 0/,
    ],
    [
      'two kinds of string match',
      vs([{ match: [{ uri: { exact: '/a', prefix: '/' } }], route: [to('reviews')] }]),
      'spec.http[0].match[0].uri',
      /one of exact, prefix or regex/,
    ],
    [
      'an uppercase header name',
      vs([{ match: [{ headers: { 'X-User': { exact: 'a' } } }], route: [to('reviews')] }]),
      'spec.http[0].match[0].headers.X-User',
      /lowercase/,
    ],
    [
      'a timeout that is no duration',
      vs([{ route: [to('reviews')], timeout: '10' }]),
      'spec.http[0].timeout',
      /not a duration/,
    ],
    [
      'an unknown retry condition',
      vs([{ route: [to('reviews')], retries: { attempts: 2, retryOn: '5xx,sometimes' } }]),
      'spec.http[0].retries.retryOn',
      /"sometimes" is not a retry condition/,
    ],
    [
      'a destination that is neither a Service nor a DNS name',
      vs([{ route: [to('*.example.com:80')] }]),
      'spec.http[0].route[0].destination.host',
      /neither a Kubernetes Service .* nor a ServiceEntry's host/,
    ],
    [
      'a rule without destination',
      vs([{ match: [{ uri: { prefix: '/' } }] }]),
      'spec.http[0].route',
      /at least one destination/,
    ],
    [
      'a response header operation on a header that frames the message',
      vs([{ route: [to('reviews')], headers: { response: { set: { 'Content-Length': '0' } } } }]),
      'spec.http[0].headers.response.set.Content-Length',
      /frames the message/,
    ],
    [
      'a header value with a line break (it would end the header)',
      vs([{ route: [to('reviews')], headers: { request: { add: { 'x-a': 'b\r\nx-evil: 1' } } } }]),
      'spec.http[0].headers.request.add.x-a',
      /control character/,
    ],
    [
      'a redirect beside a route',
      vs([{ redirect: { uri: '/x' }, route: [to('reviews')] }]),
      'spec.http[0]',
      /a rule with a redirect has no route/,
    ],
    [
      'a redirect code that is not a redirect',
      vs([{ redirect: { uri: '/x', redirectCode: 304 } }]),
      'spec.http[0].redirect.redirectCode',
      /one of 301, 302, 303, 307, 308/,
    ],
    [
      'a direct response without status',
      vs([{ directResponse: { body: { string: 'x' } } }]),
      'spec.http[0].directResponse.status',
      /required/,
    ],
    [
      'an unmatchedPreflights that does not exist',
      vs([{ route: [to('reviews')], corsPolicy: { unmatchedPreflights: 'DROP' } }]),
      'spec.http[0].corsPolicy.unmatchedPreflights',
      /must be FORWARD or IGNORE, not "DROP"/,
    ],
    [
      'a direct response body with string and bytes',
      vs([{ directResponse: { status: 200, body: { string: 'a', bytes: 'YQ==' } } }]),
      'spec.http[0].directResponse.body',
      /string or bytes, not both/,
    ],
    [
      'a direct response body of bytes that are not base64',
      vs([{ directResponse: { status: 200, body: { bytes: 'not base64!' } } }]),
      'spec.http[0].directResponse.body.bytes',
      /must be base64/,
    ],
    [
      'a keepalive time under a second',
      dr({ trafficPolicy: { connectionPool: { tcp: { tcpKeepalive: { time: '500ms' } } } } }),
      'spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.time',
      /at least 1000ms/,
    ],
    [
      'a tls rule without match',
      vs([], { tls: [{ route: [to('reviews')] }] }),
      'spec.tls[0].match',
      /is required: a tls rule matches on the server name/,
    ],
    [
      'a tls match without sniHosts',
      vs([], { tls: [{ match: [{ port: 443 }], route: [to('reviews')] }] }),
      'spec.tls[0].match[0].sniHosts',
      /at least one server name/,
    ],
    [
      'a server name with a wildcard inside',
      vs([], { tls: [{ match: [{ sniHosts: ['a.*.example'] }], route: [to('reviews')] }] }),
      'spec.tls[0].match[0].sniHosts[0]',
      /"a\.\*\.example" is not a server name/,
    ],
    [
      'a mirror beside mirrors',
      vs([
        {
          route: [to('reviews')],
          mirror: { host: 'reviews' },
          mirrors: [{ destination: { host: 'reviews' } }],
        },
      ]),
      'spec.http[0]',
      /mirror or mirrors, not both/,
    ],
    [
      'a mirror to a host that is neither a Service nor a DNS name',
      vs([{ route: [to('reviews')], mirror: { host: 'api example' } }]),
      'spec.http[0].mirror.host',
      /neither a Kubernetes Service .* nor a ServiceEntry's host/,
    ],
    [
      'a mirrors entry without destination',
      vs([{ route: [to('reviews')], mirrors: [{ percentage: { value: 5 } }] }]),
      'spec.http[0].mirrors[0].destination',
      /required/,
    ],
    [
      'a mirror percentage over 100',
      vs([
        { route: [to('reviews')], mirror: { host: 'reviews' }, mirrorPercentage: { value: 101 } },
      ]),
      'spec.http[0].mirrorPercentage.value',
      /from 0 to 100/,
    ],
    [
      'an abort status out of range',
      vs([{ route: [to('reviews')], fault: { abort: { httpStatus: 99 } } }]),
      'spec.http[0].fault.abort.httpStatus',
      /from 200 to 599/,
    ],
    [
      'an abort with a gRPC status that does not exist',
      vs([{ route: [to('reviews')], fault: { abort: { grpcStatus: 'BROKEN' } } }]),
      'spec.http[0].fault.abort.grpcStatus',
      /"BROKEN" is not a gRPC status/,
    ],
    [
      'an abort with an HTTP/2 error (Istio refuses it too)',
      vs([{ route: [to('reviews')], fault: { abort: { http2Error: 'CANCEL' } } }]),
      'spec.http[0].fault.abort.http2Error',
      /not supported by Mooring yet/,
    ],
    [
      'an exponential delay (Istio refuses it too)',
      vs([{ route: [to('reviews')], fault: { delay: { exponentialDelay: '1s' } } }]),
      'spec.http[0].fault.delay.exponentialDelay',
      /not supported by Mooring yet/,
    ],
    [
      'a fault percentage over 100',
      vs([
        {
          route: [to('reviews')],
          fault: { delay: { fixedDelay: '1s', percentage: { value: 150 } } },
        },
      ]),
      'spec.http[0].fault.delay.percentage.value',
      /from 0 to 100/,
    ],
    [
      'no hosts and no http rules (not even a delegate)',
      vs([], { hosts: [] }),
      'spec.hosts',
      /at least one host/,
    ],
    [
      'an unknown load balancer',
      dr({ trafficPolicy: { loadBalancer: { simple: 'FASTEST' } } }),
      'spec.trafficPolicy.loadBalancer.simple',
      /not "FASTEST"/,
    ],
    [
      'a subset defined twice',
      dr({
        subsets: [
          { name: 'v1', labels: {} },
          { name: 'v1', labels: {} },
        ],
      }),
      'spec.subsets[1].name',
      /used twice/,
    ],
    [
      'an ejection percentage over 100',
      dr({ trafficPolicy: { outlierDetection: { maxEjectionPercent: 101 } } }),
      'spec.trafficPolicy.outlierDetection.maxEjectionPercent',
      /from 0 to 100/,
    ],
    [
      'an idle timeout that is not a duration',
      dr({ trafficPolicy: { connectionPool: { tcp: { idleTimeout: '1 hour' } } } }),
      'spec.trafficPolicy.connectionPool.tcp.idleTimeout',
      /"1 hour" is not a duration/,
    ],
    ['a DestinationRule without host', dr({ host: '' }), 'spec.host', /required/],
    [
      'a Service backend without port',
      httpRoute('r', [{ backendRefs: [{ name: 'reviews' }] }]),
      'spec.rules[0].backendRefs[0].port',
      /required/,
    ],
    [
      'a RequestRedirect beside a URLRewrite',
      httpRoute('r', [
        {
          filters: [
            { type: 'RequestRedirect', requestRedirect: { hostname: 'a' } },
            { type: 'URLRewrite', urlRewrite: { hostname: 'b' } },
          ],
        },
      ]),
      'spec.rules[0].filters',
      /RequestRedirect and URLRewrite cannot be in one rule/,
    ],
    [
      'an unsupported filter',
      httpRoute('r', [
        {
          filters: [{ type: 'ExtensionRef', extensionRef: { group: 'x', kind: 'Y', name: 'z' } }],
          backendRefs: [{ name: 'reviews', port: 9080 }],
        },
      ]),
      'spec.rules[0].filters[0].type',
      /not supported/,
    ],
    [
      'a CORS filter without its cors',
      httpRoute('r', [
        { filters: [{ type: 'CORS' }], backendRefs: [{ name: 'reviews', port: 9080 }] },
      ]),
      'spec.rules[0].filters[0].cors',
      /required/,
    ],
    [
      'a RequestMirror without its backendRef',
      httpRoute('r', [{ filters: [{ type: 'RequestMirror', requestMirror: {} }] }]),
      'spec.rules[0].filters[0].requestMirror.backendRef',
      /required/,
    ],
    [
      'a RequestMirror to a backend that is not a Service',
      httpRoute('r', [
        {
          filters: [
            {
              type: 'RequestMirror',
              requestMirror: { backendRef: { kind: 'ServiceImport', name: 'x', port: 80 } },
            },
          ],
        },
      ]),
      'spec.rules[0].filters[0].requestMirror.backendRef.kind',
      /only Services/,
    ],
    [
      'a RequestMirror with percent and fraction',
      httpRoute('r', [
        {
          filters: [
            {
              type: 'RequestMirror',
              requestMirror: {
                backendRef: { name: 'reviews', port: 9080 },
                percent: 5,
                fraction: { numerator: 1 },
              },
            },
          ],
        },
      ]),
      'spec.rules[0].filters[0].requestMirror',
      /percent or fraction, not both/,
    ],
    [
      'a RequestMirror fraction over 1',
      httpRoute('r', [
        {
          filters: [
            {
              type: 'RequestMirror',
              requestMirror: {
                backendRef: { name: 'reviews', port: 9080 },
                fraction: { numerator: 3, denominator: 2 },
              },
            },
          ],
        },
      ]),
      'spec.rules[0].filters[0].requestMirror.fraction',
      /numerator must not be greater than denominator/,
    ],
    [
      'a path type that does not exist',
      httpRoute('r', [{ matches: [{ path: { type: 'Glob', value: '/a' } }] }]),
      'spec.rules[0].matches[0].path.type',
      /Exact, PathPrefix or RegularExpression/,
    ],
    [
      'a backend timeout longer than the request timeout',
      httpRoute('r', [{ timeouts: { request: '1s', backendRequest: '2s' } }]),
      'spec.rules[0].timeouts.backendRequest',
      /not be longer/,
    ],
  ])('refuses %s', (_, raw, field, message) => {
    const problems = problemsOf(raw);
    expect(problems).toContainEqual({ field, message: expect.stringMatching(message) });
  });

  it('parses Go durations as Istio reads them', () => {
    expect([
      parseDuration('10s'),
      parseDuration('1.5s'),
      parseDuration('250ms'),
      parseDuration('1m30s'),
      parseDuration('3m'),
      parseDuration('10'),
    ]).toEqual([10_000, 1500, 250, 90_000, 180_000, null]);
  });
});

describe('local mode: a bad traffic object in a file', () => {
  it('is reported with its file, kind, name and field, and skipped; the file keeps its other objects', () => {
    const docs = [
      readFileSync(path.join(EXAMPLES, 'retries-timeout.yaml'), 'utf8'),
      '---',
      'apiVersion: networking.istio.io/v1',
      'kind: VirtualService',
      'metadata: {name: broken}',
      'spec:',
      '  hosts: [details]',
      '  http:',
      '  - match: [{uri: {regex: "(?<=a)b"}}]',
      '    route: [{destination: {host: details}}]',
    ].join('\n');
    const file = readMeshFile('traffic.yaml', docs, null);
    expect([...file.objects.keys()]).toEqual(['VirtualService/default/ratings']);
    expect(file.problems).toEqual([
      {
        source: 'traffic.yaml',
        kind: 'VirtualService',
        namespace: 'default',
        name: 'broken',
        field: 'spec.http[0].match[0].uri.regex',
        message: '"(?<=a)b" uses lookaround or a backreference, which RE2 has not',
        effect: 'skipped',
      },
    ]);
  });
});

describe('HTTPRoute status (cluster mode)', () => {
  const NOW = '2026-12-04T12:00:00Z';
  const route = (raw: Raw) => {
    const v = validateMeshObject(raw);
    if (v.status !== 'valid' || v.object.kind !== 'HTTPRoute') throw new Error('invalid route');
    return v.object;
  };
  const facts = (services: string[], vs: string | null = null) => ({
    serviceExists: (k: string) => services.includes(k),
    portNamed: (k: string, name: string) => (services.includes(k) && name === 'http' ? 9080 : null),
    virtualServiceFor: () => vs,
    grpcConflict: () => null,
  });
  const r = route(
    httpRoute('r', [
      {
        backendRefs: [
          { name: 'reviews', port: 9080 },
          { name: 'gone', port: 80 },
        ],
      },
    ]),
  );

  it('says Accepted and names the backends it cannot resolve, keeping other controllers entries', () => {
    const other = {
      parentRef: { name: 'gw' },
      controllerName: 'example.com/gateway',
      conditions: [],
    };
    const parents = routeStatusParents(r, [other], facts(['default/reviews']), NOW);
    expect(parents).toEqual([
      other,
      {
        parentRef: {
          group: '',
          kind: 'Service',
          namespace: 'default',
          name: 'reviews',
          port: 9080,
        },
        controllerName: MESH_CONTROLLER_NAME,
        conditions: [
          expect.objectContaining({
            type: 'Accepted',
            status: 'True',
            reason: 'Accepted',
            lastTransitionTime: NOW,
          }),
          expect.objectContaining({
            type: 'ResolvedRefs',
            status: 'False',
            reason: 'BackendNotFound',
            message: expect.stringContaining('default/gone'),
          }),
        ],
      },
    ]);
  });

  it('writes nothing when the status already says it, and keeps the transition time of an unchanged condition', () => {
    const first = routeStatusParents(r, [], facts(['default/reviews']), NOW);
    expect(
      routeStatusParents(r, first, facts(['default/reviews']), '2026-12-05T00:00:00Z'),
    ).toBeNull();
    const later = routeStatusParents(
      r,
      first,
      facts(['default/reviews', 'default/gone']),
      '2026-12-05T00:00:00Z',
    ) as {
      conditions: { type: string; status: string; lastTransitionTime: string }[];
    }[];
    expect(later[0]?.conditions.map((c) => [c.type, c.status, c.lastTransitionTime])).toEqual([
      ['Accepted', 'True', NOW],
      ['ResolvedRefs', 'True', '2026-12-05T00:00:00Z'],
    ]);
  });

  it('says NoMatchingParent for a missing Service, and names the VirtualService that wins', () => {
    const missing = routeStatusParents(r, [], facts([]), NOW) as {
      conditions: { reason: string }[];
    }[];
    expect(missing[0]?.conditions[0]?.reason).toBe('NoMatchingParent');
    const bySection = route(
      httpRoute(
        's',
        [{ backendRefs: [{ name: 'reviews', port: 9080 }] }],
        [{ group: '', kind: 'Service', name: 'reviews', sectionName: 'grpc' }],
      ),
    );
    const noPort = routeStatusParents(bySection, [], facts(['default/reviews']), NOW) as {
      parentRef: Record<string, unknown>;
      conditions: { reason: string; message: string }[];
    }[];
    expect(noPort[0]?.parentRef).toMatchObject({ name: 'reviews', sectionName: 'grpc' });
    expect(noPort[0]?.conditions[0]).toMatchObject({
      reason: 'NoMatchingParent',
      message: 'Service default/reviews has no port named "grpc"',
    });
    const shadowed = routeStatusParents(
      r,
      [],
      facts(['default/reviews', 'default/gone'], 'default/reviews-vs'),
      NOW,
    ) as {
      conditions: { message: string }[];
    }[];
    expect(shadowed[0]?.conditions[0]?.message).toMatch(
      /VirtualService default\/reviews-vs .* wins/,
    );
  });
});

describe('mooring proxy-config shows the traffic rules', () => {
  it('lists each Service with rules: where its routes and policy come from, and what is not used', () => {
    const model = modelOf(
      reviewsMesh(
        ...example('canary-95-5.yaml'),
        // No timestamps: the name decides.
        vs([{ route: [to('reviews')] }], {}, 'reviews-later'),
        // Merged into the older one of its namespace.
        dr({ subsets: [{ name: 'v3', labels: { version: 'v3' } }] }, 'reviews-more'),
      ),
    );
    const reviews = model.service('default/reviews')?.service as MeshService;
    const text = formatProxyConfig(
      {
        source: 'proxy',
        mesh: {
          version: 1,
          proxy: WEB_PROXY,
          settings: SETTINGS,
          services: [reviews],
        },
      },
      'the proxy at test',
    );
    expect(text).toContain(
      'default/reviews  VirtualService default/reviews (1 rules)  DestinationRule default/reviews + DestinationRule default/reviews-more  VirtualService default/reviews-later',
    );
  });
});

describe('the validating webhook (POST /validate)', () => {
  const review = (
    object: Raw,
    extra: Raw = {},
    kind = 'VirtualService',
    group = 'networking.istio.io',
  ) => ({
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'u-1',
      kind: { group, version: 'v1', kind },
      operation: 'CREATE',
      namespace: 'default',
      object,
      ...extra,
    },
  });
  const badVs = vs([{ route: [to('reviews', { weight: 0 }), to('reviews', { weight: 0 })] }]);

  it('refuses an object the mesh would skip, with its kind, name, field and reason', () => {
    expect(answerMeshValidation(review(badVs)).response).toEqual({
      uid: 'u-1',
      allowed: false,
      status: {
        status: 'Failure',
        code: 422,
        reason: 'Invalid',
        message:
          'VirtualService default/reviews is invalid for Mooring: spec.http[0].route: the weights add up to 0: no destination can receive a request',
      },
    });
  });

  it('allows a valid one with the ignored fields as warnings, and deletes, status updates and other kinds', () => {
    expect(
      answerMeshValidation(
        review(
          dr({
            trafficPolicy: { tunnel: { protocol: 'CONNECT', targetHost: 'db', targetPort: 5432 } },
          }),
          {},
          'DestinationRule',
        ),
      ).response,
    ).toEqual({
      uid: 'u-1',
      allowed: true,
      warnings: ['spec.trafficPolicy.tunnel: is not supported by Mooring yet: ignored'],
    });
    expect(answerMeshValidation(review(badVs, { operation: 'DELETE' })).response.allowed).toBe(
      true,
    );
    expect(answerMeshValidation(review(badVs, { subResource: 'status' })).response.allowed).toBe(
      true,
    );
    expect(
      answerMeshValidation(review({ metadata: { name: 'x' } }, {}, 'Gateway')).response.allowed,
    ).toBe(true);
  });
});

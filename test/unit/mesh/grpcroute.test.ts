// GRPCRoute (Gateway API, GAMMA): the reader's defaults and errors, its matches as request
// matches and their precedence, what a GRPCRoute takes from HTTPRoutes on the same Service port
// (GEP-1294), and the status of both.
import type { HttpRouteTable, MeshService } from '../../../src/api/mesh';
import { routeStatusParents, validateMeshObject } from '../../../src/mesh';
import { answerMeshValidation } from '../../../src/admission/validate-mesh';
import { routeRequest, type RequestView } from '../../../src/agent/proxy/core/route';
import {
  createdAt,
  endpointSlice,
  modelOf,
  builtService,
  problemsOf,
  service,
  withClusterIP,
  withEndpoint,
  withPort,
  withSlicePort,
  type Raw,
} from '../../fixtures/mesh-objects';

/** Service echo with a gRPC port (50051) and an HTTP port (8080), one endpoint. */
const echoMesh = (...extra: Raw[]): Raw[] => [
  service('echo', withPort(50051, 'grpc'), withPort(8080, 'http'), withClusterIP('10.96.0.30')),
  endpointSlice(
    'echo',
    withSlicePort(50051, 'grpc'),
    withSlicePort(8080, 'http'),
    withEndpoint('10.0.0.9'),
  ),
  service('echo-v2', withPort(50051, 'grpc')),
  ...extra,
];

const grpcRoute = (name: string, rules: unknown[], parentRefs?: unknown[]): Raw => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'GRPCRoute',
  metadata: { name, namespace: 'default' },
  spec: {
    parentRefs: parentRefs ?? [{ group: '', kind: 'Service', name: 'echo', port: 50051 }],
    rules,
  },
});
const httpRoute = (name: string, parentRefs: unknown[]): Raw => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'HTTPRoute',
  metadata: { name, namespace: 'default' },
  spec: { parentRefs, rules: [{ backendRefs: [{ name: 'echo', port: 8080 }] }] },
});
const toV2 = [{ name: 'echo-v2', port: 50051 }];
const echoParent = (port?: number): Raw => ({
  group: '',
  kind: 'Service',
  name: 'echo',
  ...(port === undefined ? {} : { port }),
});

const built = (raws: Raw[], key = 'default/echo'): MeshService => builtService(raws, key);

const grpcCall = (path: string, headers: Record<string, string> = {}): RequestView => ({
  method: 'POST',
  path,
  header: (name) => headers[name] ?? (name === 'content-type' ? 'application/grpc' : null),
});

describe('GRPCRoute: matches as request matches', () => {
  it('turns service and method into the gRPC path: exact for both, a pattern for one, any for none', () => {
    const raws = echoMesh(
      grpcRoute('r', [
        {
          matches: [
            { method: { service: 'shop.Cart', method: 'Add' } },
            { method: { service: 'shop.Cart' } },
            { method: { method: 'Ping' } },
            { method: { type: 'RegularExpression', service: 'shop\\..*', method: 'Get.*' } },
            { headers: [{ name: 'x-user', value: 'ann' }] },
          ],
          backendRefs: toV2,
        },
        { backendRefs: [{ name: 'echo', port: 50051 }] },
      ]),
    );
    const rules = built(raws).routes?.rules ?? [];
    expect(rules.map((r) => r.matches[0])).toEqual([
      // The most service characters first (9, 9, 8, 0), then method characters, then headers.
      { uri: { exact: '/shop.Cart/Add' }, port: 50051 },
      { uri: { regex: '/shop\\.Cart/[^/]+' }, port: 50051 },
      { uri: { regex: '/(?:shop\\..*)/(?:Get.*)' }, port: 50051 },
      { uri: { regex: '/[^/]+/Ping' }, port: 50051 },
      { pathPrefix: '/', headers: [{ name: 'x-user', value: { exact: 'ann' } }], port: 50051 },
      { pathPrefix: '/', port: 50051 },
    ]);
    // A GRPCRoute answers UNAVAILABLE (503) for a backend the mesh does not know.
    expect(rules.every((r) => r.noBackendStatus === 503)).toBe(true);
  });

  it('routes by the precedence of the Gateway API: the longest service, then method, then headers; then the oldest route', () => {
    const raws = echoMesh(
      createdAt('2026-01-01T00:00:00Z')(
        grpcRoute('old', [
          { matches: [{ method: { service: 'shop.Cart' } }], backendRefs: toV2 },
          {
            matches: [{ headers: [{ name: 'x-a', value: '1' }] }],
            backendRefs: [{ name: 'echo', port: 50051 }],
          },
        ]),
      ),
      createdAt('2026-02-01T00:00:00Z')(
        grpcRoute('new', [
          {
            matches: [
              { method: { service: 'shop.Cart' } },
              { method: { service: 'shop.Cart', method: 'Add' } },
              {
                headers: [
                  { name: 'x-a', value: '1' },
                  { name: 'x-b', value: '2' },
                ],
              },
            ],
            backendRefs: [{ name: 'echo', port: 50051, weight: 3 }],
          },
        ]),
      ),
    );
    const svc = built(raws);
    const table = svc.routes as HttpRouteTable;
    expect(table.source).toEqual({ kind: 'GRPCRoute', namespace: 'default', name: 'old' });
    expect(table.merged).toEqual([
      { kind: 'GRPCRoute', namespace: 'default', name: 'old' },
      { kind: 'GRPCRoute', namespace: 'default', name: 'new' },
    ]);
    const lookup = (key: string): MeshService | null =>
      key === 'default/echo' ? svc : built(raws, key);
    const to = (path: string, headers: Record<string, string> = {}): string | undefined => {
      const d = routeRequest(svc, 50051, grpcCall(path, headers), () => 0, lookup);
      return d !== null && d.kind === undefined ? d.service.key : undefined;
    };
    // The new route's Cart/Add (service and method) wins over old's Cart (service only)...
    expect(to('/shop.Cart/Add')).toBe('default/echo');
    // ...and for Cart/List both name the service only: the older route wins.
    expect(to('/shop.Cart/List')).toBe('default/echo-v2');
    // Two headers before one.
    expect(to('/other.S/M', { 'x-a': '1', 'x-b': '2' })).toBe('default/echo');
    // No rule for this call: the Gateway API's 404 (no route).
    expect(routeRequest(svc, 50051, grpcCall('/other.S/M'), () => 0, lookup)).toBeNull();
  });

  it('keeps the other ports of the Service to the default routing', () => {
    const svc = built(
      echoMesh(grpcRoute('r', [{ matches: [{ method: { method: 'Ping' } }], backendRefs: toV2 }])),
    );
    expect(svc.routes?.ports).toEqual([50051]);
    const d = routeRequest(
      svc,
      8080,
      grpcCall('/anything'),
      () => 0,
      () => null,
    );
    expect(d).toMatchObject({ rule: null, service: { key: 'default/echo' }, port: 8080 });
  });
});

describe('GRPCRoute and HTTPRoute on one Service (GEP-1294)', () => {
  it('a GRPCRoute takes its port from the HTTPRoutes, which keep the other ports', () => {
    const raws = echoMesh(
      grpcRoute('g', [{ backendRefs: toV2 }]),
      // No port: every port of the Service, 50051 taken by the GRPCRoute.
      httpRoute('h', [echoParent()]),
      httpRoute('h-grpc-port', [echoParent(50051)]),
    );
    const model = modelOf(raws);
    const table = model.service('default/echo')?.service.routes as HttpRouteTable;
    expect(table.ports).toEqual([8080, 50051]);
    expect(table.rules.map((r) => [r.matches[0]?.port, r.destinations[0]?.service])).toEqual([
      [50051, 'default/echo-v2'],
      [8080, 'default/echo'],
    ]);
    expect(table.shadowed).toEqual([
      {
        kind: 'HTTPRoute',
        namespace: 'default',
        name: 'h',
        reason:
          'GRPCRoute default/g attaches to port 50051: a GRPCRoute wins over an HTTPRoute there',
      },
      {
        kind: 'HTTPRoute',
        namespace: 'default',
        name: 'h-grpc-port',
        reason:
          'GRPCRoute default/g attaches to the same Service ports: a GRPCRoute wins over an HTTPRoute there',
      },
    ]);

    // Their status: the route that lost every port is Conflicted, the other still Accepted.
    const facts = model.routeFacts();
    const statusOf = (raw: Raw) => {
      const v = validateMeshObject(raw);
      if (v.status !== 'valid') throw new Error('invalid');
      const route = v.object as Parameters<typeof routeStatusParents>[0];
      const parents = routeStatusParents(route, [], facts, '2026-12-06T00:00:00Z') as {
        conditions: { type: string; status: string; reason: string; message: string }[];
      }[];
      return parents[0]?.conditions.find((c) => c.type === 'Accepted');
    };
    expect(statusOf(httpRoute('h-grpc-port', [echoParent(50051)]))).toMatchObject({
      status: 'False',
      reason: 'Conflicted',
      message: expect.stringContaining('GRPCRoute default/g') as unknown,
    });
    expect(statusOf(httpRoute('h', [echoParent()]))).toMatchObject({
      status: 'True',
      reason: 'Accepted',
      message: expect.stringContaining(
        'except on port 50051, where GRPCRoute default/g wins',
      ) as unknown,
    });
    expect(statusOf(grpcRoute('g', [{ backendRefs: toV2 }]))).toMatchObject({
      status: 'True',
      reason: 'Accepted',
    });
    // A GRPCRoute's missing backend is answered UNAVAILABLE, and its status says so.
    const missing = validateMeshObject(
      grpcRoute('gone', [{ backendRefs: [{ name: 'nowhere', port: 1 }] }]),
    );
    if (missing.status !== 'valid') throw new Error('invalid');
    const parents = routeStatusParents(
      missing.object as Parameters<typeof routeStatusParents>[0],
      [],
      facts,
      '2026-12-06T00:00:00Z',
    ) as { conditions: { type: string; message: string }[] }[];
    expect(parents[0]?.conditions.find((c) => c.type === 'ResolvedRefs')?.message).toBe(
      'no such Service: default/nowhere (its share of the requests is answered 503, UNAVAILABLE)',
    );
  });

  it('names the GRPCRoute that takes the port, of several', () => {
    const table = built(
      echoMesh(
        createdAt('2026-01-01T00:00:00Z')(
          grpcRoute('on-http-port', [{ backendRefs: toV2 }], [echoParent(8080)]),
        ),
        createdAt('2026-02-01T00:00:00Z')(grpcRoute('on-grpc-port', [{ backendRefs: toV2 }])),
        httpRoute('h', [echoParent(50051)]),
      ),
    ).routes as HttpRouteTable;
    expect(table.shadowed?.map((s) => s.reason)).toEqual([
      'GRPCRoute default/on-grpc-port attaches to the same Service ports: a GRPCRoute wins over an HTTPRoute there',
    ]);
  });

  it('a GRPCRoute on every port leaves no port to the HTTPRoutes', () => {
    const table = built(
      echoMesh(
        grpcRoute('g', [{ backendRefs: toV2 }], [echoParent()]),
        httpRoute('h', [echoParent(8080)]),
      ),
    ).routes as HttpRouteTable;
    expect(table.source.kind).toBe('GRPCRoute');
    expect(table.ports).toBeUndefined();
    expect(table.rules).toHaveLength(1);
    expect(table.shadowed?.map((s) => s.name)).toEqual(['h']);
  });

  it('a VirtualService wins over a GRPCRoute for the same host', () => {
    const table = built(
      echoMesh(grpcRoute('g', [{ backendRefs: toV2 }]), {
        apiVersion: 'networking.istio.io/v1',
        kind: 'VirtualService',
        metadata: { name: 'echo', namespace: 'default' },
        spec: { hosts: ['echo'], http: [{ route: [{ destination: { host: 'echo' } }] }] },
      }),
    ).routes as HttpRouteTable;
    expect(table.source.kind).toBe('VirtualService');
    expect(table.shadowed).toEqual([
      {
        kind: 'GRPCRoute',
        namespace: 'default',
        name: 'g',
        reason:
          'VirtualService default/echo names the same host: a VirtualService wins over a GRPCRoute',
      },
    ]);
  });
});

describe('GRPCRoute: bad input names its field', () => {
  it.each<[string, Raw, string]>([
    [
      'a method match with neither service nor method',
      grpcRoute('r', [{ matches: [{ method: { type: 'Exact' } }] }]),
      'spec.rules[0].matches[0].method: needs a service, a method or both',
    ],
    [
      'an Exact service that is no gRPC name',
      grpcRoute('r', [{ matches: [{ method: { service: 'shop/Cart' } }] }]),
      'spec.rules[0].matches[0].method.service: "shop/Cart" is not a gRPC service name (package.Service)',
    ],
    [
      'a method type the Gateway API does not have',
      grpcRoute('r', [{ matches: [{ method: { type: 'Prefix', service: 'a' } }] }]),
      'spec.rules[0].matches[0].method.type: must be Exact or RegularExpression, not "Prefix"',
    ],
    [
      'a filter of HTTPRoute only',
      grpcRoute('r', [
        { filters: [{ type: 'URLRewrite', urlRewrite: { hostname: 'x' } }], backendRefs: toV2 },
      ]),
      'spec.rules[0].filters[0].type: "URLRewrite" is not supported on a GRPCRoute by Mooring (RequestHeaderModifier, ResponseHeaderModifier, RequestMirror are)',
    ],
    [
      'a Service backend without its port',
      grpcRoute('r', [{ backendRefs: [{ name: 'echo-v2' }] }]),
      'spec.rules[0].backendRefs[0].port: is required for a Service backend (a port number from 1 to 65535)',
    ],
  ])('%s', (_, raw, problem) => {
    expect(problemsOf(raw)).toContain(problem);
  });

  it('has a bad regular expression refused at kubectl apply by the validating webhook', () => {
    const raw = grpcRoute('r', [
      { matches: [{ method: { type: 'RegularExpression', method: '(?<=a)b' } }] },
    ]);
    const answer = answerMeshValidation({
      apiVersion: 'admission.k8s.io/v1',
      kind: 'AdmissionReview',
      request: {
        uid: 'u-2',
        kind: { group: 'gateway.networking.k8s.io', version: 'v1', kind: 'GRPCRoute' },
        resource: { group: 'gateway.networking.k8s.io', version: 'v1', resource: 'grpcroutes' },
        operation: 'CREATE',
        namespace: 'default',
        name: 'r',
        object: raw,
      },
    }).response as { allowed: boolean; status?: { message: string } };
    expect(answer.allowed).toBe(false);
    expect(answer.status?.message).toMatch(
      /^GRPCRoute default\/r is invalid for Mooring: spec\.rules\[0\]\.matches\[0\]\.method\.method: /,
    );
  });

  it('header and mirror filters apply to the rule', () => {
    const rules =
      built(
        echoMesh(
          grpcRoute('r', [
            {
              filters: [
                {
                  type: 'RequestHeaderModifier',
                  requestHeaderModifier: { set: [{ name: 'x-env', value: 'blue' }] },
                },
                {
                  type: 'ResponseHeaderModifier',
                  responseHeaderModifier: { remove: ['x-internal'] },
                },
                { type: 'RequestMirror', requestMirror: { backendRef: toV2[0], percent: 10 } },
              ],
              backendRefs: [{ name: 'echo', port: 50051 }],
            },
          ]),
        ),
      ).routes?.rules ?? [];
    expect(rules[0]).toMatchObject({
      requestHeaders: { set: [{ name: 'x-env', value: 'blue' }] },
      responseHeaders: { remove: ['x-internal'] },
      mirrors: [{ service: 'default/echo-v2', port: 50051, percent: 10 }],
    });
  });
});

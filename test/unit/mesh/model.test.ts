import type { MeshService } from '../../../src/api/mesh';
import { MeshModel } from '../../../src/mesh';
import {
  exportedTo,
  createdAt,
  endpointSlice,
  headless,
  inNamespace,
  MODEL_OPTIONS,
  meshed,
  modelOf,
  named,
  ownedBy,
  peerAuthentication,
  pod,
  service,
  valid,
  withAnnotation,
  withClusterIP,
  withContainerPort,
  withEndpoint,
  withField,
  withIP,
  withLabels,
  withMatchLabels,
  withMode,
  withPort,
  withPortMtls,
  withServiceAccount,
  withSlicePort,
  withSpec,
  type Raw,
} from '../../fixtures/mesh-objects';

const WEB_ID = 'spiffe://cluster.local/ns/default/sa/web';

/** Service web (80 -> http 8080), its slice with web-1 at 10.0.0.1, and the meshed Pod web-1. */
function webMesh(...extra: Raw[]): Raw[] {
  return [
    service('web', withPort(80, 'http', 8080), withClusterIP('10.96.0.10')),
    endpointSlice('web', withSlicePort(8080, 'http'), withEndpoint('10.0.0.1', { pod: 'web-1' })),
    pod('web-1', meshed(), withServiceAccount('web'), withIP('10.0.0.1')),
    ...extra,
  ];
}

const built = (model: MeshModel, key: string): MeshService | undefined =>
  model.service(key)?.service;

describe('a MeshService from a Service and its EndpointSlices', () => {
  it('names the Service, its ClusterIP, its ports with their protocols, and its endpoints with their identity', () => {
    expect(built(modelOf(webMesh()), 'default/web')).toEqual({
      key: 'default/web',
      name: 'web',
      namespace: 'default',
      hostname: 'web.default.svc.cluster.local',
      addresses: ['10.96.0.10'],
      ports: [{ port: 80, name: 'http', protocol: 'http' }],
      endpoints: [
        {
          address: '10.0.0.1',
          ports: { '80': 8080 },
          ready: true,
          identity: WEB_ID,
          workload: { name: 'web-1', namespace: 'default', app: 'web', version: null },
          pod: 'web-1',
        },
      ],
    });
  });

  it.each([
    [
      'an endpoint whose Pod is not injected is dialled in plain text',
      [pod('web-1', withServiceAccount('web'))],
      { identity: null, workload: { name: 'web-1' }, pod: 'web-1' },
    ],
    [
      'an endpoint whose Pod is unknown is dialled in plain text',
      [],
      { identity: null, workload: null, pod: 'web-1' },
    ],
    [
      'an endpoint under a DISABLE policy is dialled in plain text',
      [
        pod('web-1', meshed(), withServiceAccount('web')),
        peerAuthentication('off', withMode('DISABLE')),
      ],
      { identity: null, pod: 'web-1' },
    ],
    [
      'an endpoint under a STRICT policy speaks mutual TLS',
      [
        pod('web-1', meshed(), withServiceAccount('web')),
        peerAuthentication('strict', withMode('STRICT')),
      ],
      { identity: WEB_ID },
    ],
    [
      'a Pod without service account is the default one',
      [pod('web-1', meshed())],
      { identity: 'spiffe://cluster.local/ns/default/sa/default' },
    ],
    [
      'a Deployment Pod carries its workload name and labels',
      [
        pod(
          'web-1',
          meshed(),
          ownedBy('ReplicaSet', 'web-6f7c9'),
          withLabels({ 'pod-template-hash': '6f7c9', version: 'v2' }),
        ),
      ],
      { workload: { name: 'web', namespace: 'default', app: 'web', version: 'v2' } },
    ],
  ])('%s', (_sentence, pods, expected) => {
    const raws = [
      service('web', withPort(80, 'http', 8080)),
      endpointSlice('web', withSlicePort(8080, 'http'), withEndpoint('10.0.0.1', { pod: 'web-1' })),
      ...pods,
    ];
    expect(built(modelOf(raws), 'default/web')?.endpoints[0]).toMatchObject(expected);
  });

  it('lists the ports a meshed endpoint takes in plain text under portLevelMtls DISABLE (container ports)', () => {
    const raws = [
      service('web', withPort(80, 'http', 'web'), withPort(9090, 'metrics', 9090)),
      endpointSlice(
        'web',
        withSlicePort(8080, 'http'),
        withSlicePort(9090, 'metrics'),
        withEndpoint('10.0.0.1', { pod: 'web-1' }),
      ),
      pod('web-1', meshed(), withServiceAccount('web'), withContainerPort(8080, 'web')),
      peerAuthentication(
        'metrics',
        withMatchLabels({ app: 'web' }),
        withMode('STRICT'),
        withPortMtls(9090, 'DISABLE'),
      ),
    ];
    expect(built(modelOf(raws), 'default/web')?.endpoints[0]).toMatchObject({
      identity: WEB_ID,
      ports: { '80': 8080, '9090': 9090 },
      plaintextPorts: [9090],
    });
  });

  it('dials an endpoint in plain text when every one of its ports is DISABLE', () => {
    const raws = [
      ...webMesh(),
      peerAuthentication('p', withMatchLabels({ app: 'web' }), withPortMtls(8080, 'DISABLE')),
    ];
    const endpoint = built(modelOf(raws), 'default/web')?.endpoints[0];
    expect(endpoint?.identity).toBeNull();
    expect(endpoint).not.toHaveProperty('plaintextPorts');
  });

  it('keeps a terminating endpoint (serving, not ready) as not ready and drops one neither ready nor serving', () => {
    const raws = [
      service('web', withPort(80, 'http', 8080)),
      endpointSlice(
        'web',
        withSlicePort(8080, 'http'),
        withEndpoint('10.0.0.1', { ready: false, serving: true, terminating: true }),
        withEndpoint('10.0.0.2', { ready: false, serving: false }),
        withEndpoint('10.0.0.3', { ready: false }),
      ),
    ];
    expect(built(modelOf(raws), 'default/web')?.endpoints.map((e) => [e.address, e.ready])).toEqual(
      [['10.0.0.1', false]],
    );
  });

  it('maps each Service port through the slice port of the same name, and skips endpoints of a slice with none', () => {
    const raws = [
      service('web', withPort(80, 'http', 8080), withPort(443, 'https', 8443)),
      endpointSlice(
        'web',
        withSlicePort(8080, 'http'),
        withSlicePort(8443, 'https'),
        withEndpoint('10.0.0.1'),
      ),
      endpointSlice(
        'web',
        named('web-other'),
        withSlicePort(7000, 'admin'),
        withEndpoint('10.0.0.2'),
      ),
    ];
    expect(built(modelOf(raws), 'default/web')?.endpoints.map((e) => [e.address, e.ports])).toEqual(
      [['10.0.0.1', { '80': 8080, '443': 8443 }]],
    );
  });

  it('merges an address that two slices list, ready when either says so', () => {
    const raws = [
      service('web', withPort(80, 'http', 8080), withPort(81, 'alt', 8081)),
      endpointSlice(
        'web',
        withSlicePort(8080, 'http'),
        withEndpoint('10.0.0.1', { ready: false, serving: true }),
      ),
      endpointSlice('web', named('web-2'), withSlicePort(8081, 'alt'), withEndpoint('10.0.0.1')),
    ];
    expect(built(modelOf(raws), 'default/web')?.endpoints).toMatchObject([
      { address: '10.0.0.1', ports: { '80': 8080, '81': 8081 }, ready: true },
    ]);
  });

  it('sorts endpoints by address and reads IPv6 slices too', () => {
    const raws = [
      service('web', withPort(80, 'http', 8080), withClusterIP('10.96.0.10', 'fd00:10:96::a')),
      endpointSlice(
        'web',
        withSlicePort(8080, 'http'),
        withEndpoint('10.0.0.9'),
        withEndpoint('10.0.0.2'),
      ),
      endpointSlice(
        'web',
        named('web-v6'),
        withField('addressType', 'IPv6'),
        withSlicePort(8080, 'http'),
        withEndpoint('fd00::2'),
      ),
      endpointSlice(
        'web',
        named('web-fqdn'),
        withField('addressType', 'FQDN'),
        withSlicePort(8080, 'http'),
        withEndpoint('web.example.com'),
      ),
    ];
    const svc = built(modelOf(raws), 'default/web');
    expect(svc?.addresses).toEqual(['10.96.0.10', 'fd00:10:96::a']);
    expect(svc?.endpoints.map((e) => e.address)).toEqual(['10.0.0.2', '10.0.0.9', 'fd00::2']);
  });

  it.each([
    [
      'a headless Service has no address',
      [service('db', withPort(5432, 'tcp-pg'), headless())],
      { addresses: [] },
    ],
    [
      'a UDP port is left out',
      [
        service(
          'dns',
          withPort(53, 'dns-udp', 53, { protocol: 'UDP' }),
          withPort(53, 'dns-tcp', 53),
        ),
      ],
      { ports: [{ port: 53, name: 'dns-tcp', protocol: 'tcp' }] },
    ],
  ])('%s', (_sentence, raws, expected) => {
    const key = `default/${(raws[0]?.metadata as { name: string }).name}`;
    expect(built(modelOf(raws), key)).toMatchObject(expected);
  });

  it.each([
    [
      'an ExternalName Service',
      service('ext', withSpec({ type: 'ExternalName', externalName: 'example.com' }), withPort(80)),
    ],
    ['a Service with UDP ports only', service('dns', withPort(53, 'dns', 53, { protocol: 'UDP' }))],
    ['a Service without ports', service('empty')],
  ])('leaves out %s', (_sentence, raw) => {
    const model = modelOf([raw]);
    expect(model.visibleServices('default')).toEqual([]);
  });
});

describe("a proxy's scope", () => {
  it('gives its identity, workload, address, mTLS mode and the protocols of its ports', () => {
    const model = modelOf([
      ...webMesh(),
      service(
        'web-grpc',
        withPort(9000, 'grpc', 'grpc-port'),
        withField('spec.selector', { app: 'web' }),
      ),
      service('web-raw', withPort(9001, 'x', 8080), withField('spec.selector', { app: 'web' })),
      pod(
        'web-1',
        meshed(),
        withServiceAccount('web'),
        withIP('10.0.0.1', 'fd00::1'),
        withContainerPort(9100, 'grpc-port'),
      ),
      peerAuthentication('strict', withMode('STRICT'), createdAt('2026-01-01T00:00:00Z')),
    ]);
    expect(model.proxyScope('default/web-1')).toEqual({
      pod: { name: 'web-1', namespace: 'default', ip: '10.0.0.1' },
      identity: WEB_ID,
      workload: { name: 'web-1', namespace: 'default', app: 'web', version: null },
      labels: { app: 'web' },
      inbound: {
        mtlsMode: 'STRICT',
        ports: [
          { port: 8080, protocol: 'http' },
          { port: 9100, protocol: 'grpc' },
        ],
        source: 'PeerAuthentication default/strict (namespace)',
      },
    });
  });

  it('carries portLevelMtls and the per-Pod tracing and access-log annotations', () => {
    const model = modelOf([
      pod(
        'web-1',
        meshed(),
        withAnnotation('proxy.mooring.dev/trace-sampling', '25'),
        withAnnotation('proxy.mooring.dev/access-log', 'true'),
      ),
      peerAuthentication('p', withMatchLabels({ app: 'web' }), withPortMtls(8080, 'DISABLE')),
    ]);
    expect(model.proxyScope('default/web-1')).toMatchObject({
      inbound: { mtlsMode: 'PERMISSIVE', portMtls: { '8080': 'DISABLE' } },
      traceSamplingPercent: 25,
      accessLog: true,
    });
  });

  it('follows mesh.mtlsMode where no policy sets a mode', () => {
    const model = modelOf(webMesh(), { defaultMtlsMode: 'STRICT' });
    expect(model.proxyScope('default/web-1')?.inbound).toMatchObject({
      mtlsMode: 'STRICT',
      source: 'mesh.mtlsMode',
    });
    model.setDefaultMtlsMode('PERMISSIVE');
    expect(model.commit()?.pods).toEqual(['default/web-1']);
    expect(model.proxyScope('default/web-1')?.inbound.mtlsMode).toBe('PERMISSIVE');
  });

  it('is null for a Pod the model does not hold', () => {
    expect(modelOf(webMesh()).proxyScope('default/ghost')).toBeNull();
  });
});

describe('incremental commits', () => {
  const twoServices = (): Raw[] => [
    ...webMesh(),
    service('api', withPort(80, 'http', 8080), inNamespace('shop')),
    endpointSlice(
      'api',
      inNamespace('shop'),
      withSlicePort(8080, 'http'),
      withEndpoint('10.0.1.1', { pod: 'api-1' }),
    ),
    pod('api-1', inNamespace('shop'), meshed()),
  ];

  it('commits nothing when an object is written again unchanged', () => {
    const model = modelOf(twoServices());
    const version = model.version;
    expect(
      model.upsert(valid(service('web', withPort(80, 'http', 8080), withClusterIP('10.96.0.10')))),
    ).toBe(false);
    expect(model.commit()).toBeNull();
    expect(model.version).toBe(version);
  });

  it('rebuilds only the Service of a changed EndpointSlice', () => {
    const model = modelOf(twoServices());
    model.upsert(
      valid(
        endpointSlice(
          'web',
          withSlicePort(8080, 'http'),
          withEndpoint('10.0.0.1', { pod: 'web-1' }),
          withEndpoint('10.0.0.2'),
        ),
      ),
    );
    expect(model.commit()).toMatchObject({ services: ['default/web'], removed: [], rebuilt: 1 });
  });

  it('rebuilds the Services whose endpoints a changed Pod is, and no other', () => {
    const model = modelOf(twoServices());
    model.upsert(valid(pod('api-1', inNamespace('shop'))));
    expect(model.commit()).toMatchObject({
      services: ['shop/api'],
      pods: ['shop/api-1'],
      rebuilt: 1,
    });
    expect(built(model, 'shop/api')?.endpoints[0]?.identity).toBeNull();
  });

  it('rebuilds under a namespace PeerAuthentication only the Services with Pods of that namespace', () => {
    const model = modelOf(twoServices());
    model.upsert(valid(peerAuthentication('off', inNamespace('shop'), withMode('DISABLE'))));
    expect(model.commit()).toMatchObject({
      services: ['shop/api'],
      pods: ['shop/api-1'],
      rebuilt: 1,
    });
  });

  it('rebuilds everything with Pods under a mesh-wide PeerAuthentication, and reports no content change for a mode that keeps identities', () => {
    const model = modelOf(twoServices());
    model.upsert(
      valid(peerAuthentication('mesh', inNamespace('mooring-system'), withMode('STRICT'))),
    );
    const commit = model.commit();
    expect(commit).toMatchObject({ services: [], rebuilt: 2 });
    expect([...(commit?.pods ?? [])].sort()).toEqual(['default/web-1', 'shop/api-1']);
  });

  it('reports a deleted Service as removed, and a Pod label change as a scope change only', () => {
    const model = modelOf(twoServices());
    model.upsert(
      valid(
        pod(
          'web-1',
          meshed(),
          withServiceAccount('web'),
          withIP('10.0.0.1'),
          withLabels({ tier: 'front' }),
        ),
      ),
    );
    expect(model.commit()).toMatchObject({ services: [], pods: ['default/web-1'] });
    model.remove({ kind: 'Service', namespace: 'shop', name: 'api' });
    expect(model.commit()).toMatchObject({ services: [], removed: ['shop/api'] });
    expect(model.remove({ kind: 'Service', namespace: 'shop', name: 'api' })).toBe(false);
  });

  it('moves an EndpointSlice that changes Service from one to the other', () => {
    const model = modelOf(twoServices());
    model.upsert(
      valid(
        endpointSlice(
          'web',
          withLabels({ 'kubernetes.io/service-name': 'web2' }),
          withSlicePort(8080, 'http'),
          withEndpoint('10.0.0.1'),
        ),
      ),
    );
    model.upsert(valid(service('web2', withPort(80, 'http', 8080))));
    const commit = model.commit();
    expect([...(commit?.services ?? [])].sort()).toEqual(['default/web', 'default/web2']);
    expect(built(model, 'default/web')?.endpoints).toEqual([]);
    expect(built(model, 'default/web2')?.endpoints.map((e) => e.address)).toEqual(['10.0.0.1']);
  });
});

describe('what changed since a version, for a proxy of a namespace', () => {
  it('gives the changed Services and the removed keys', () => {
    const model = modelOf(webMesh());
    const since = model.version;
    model.upsert(valid(service('api', withPort(80, 'http'))));
    model.commit();
    model.remove({ kind: 'Service', namespace: 'default', name: 'web' });
    model.commit();
    const changes = model.changesSince(since, 'default');
    expect({ services: changes.services.map((b) => b.key), removed: changes.removed }).toEqual({
      services: ['default/api'],
      removed: ['default/web'],
    });
    expect(model.changesSince(model.version, 'default')).toEqual({ services: [], removed: [] });
  });

  it('hides a Service exported to its own namespace from other namespaces, and removes it from them when its exportTo changes', () => {
    const exported = (value: string) =>
      valid(service('web', withPort(80, 'http', 8080), exportedTo(value)));
    const model = new MeshModel(MODEL_OPTIONS);
    model.upsert(exported('*'));
    model.commit();
    const since = model.version;
    expect(model.visibleServices('shop').map((b) => b.key)).toEqual(['default/web']);
    model.upsert(exported('.'));
    model.commit();
    expect(model.visibleServices('shop')).toEqual([]);
    expect(model.visibleServices('default').map((b) => b.key)).toEqual(['default/web']);
    expect(model.changesSince(since, 'shop')).toEqual({ services: [], removed: ['default/web'] });
    model.upsert(exported('shop, ops'));
    model.commit();
    expect(model.visibleServices('shop').map((b) => b.key)).toEqual(['default/web']);
    expect(model.visibleServices('default')).toEqual([]);
    model.upsert(exported('~'));
    model.commit();
    expect(model.visibleServices('shop')).toEqual([]);
  });

  it('tells a proxy that a Service it saw is gone when it was deleted and made again out of its sight', () => {
    const model = modelOf([service('api', withPort(80, 'http'), inNamespace('shop'))]);
    const since = model.version;
    model.remove({ kind: 'Service', namespace: 'shop', name: 'api' });
    model.commit();
    model.upsert(valid(service('api', withPort(80, 'http'), inNamespace('shop'), exportedTo('.'))));
    model.commit();
    expect(model.changesSince(since, 'default')).toEqual({ services: [], removed: ['shop/api'] });
    expect(model.changesSince(since, 'shop').services.map((b) => b.key)).toEqual(['shop/api']);
  });

  it('still answers from a scan of every Service after the change log was pruned', () => {
    const model = modelOf(webMesh());
    const since = model.version;
    model.upsert(valid(service('api', withPort(80, 'http'))));
    model.commit();
    model.prune(model.version);
    expect(model.changesSince(since, 'default').services.map((b) => b.key)).toEqual([
      'default/api',
    ]);
  });
});

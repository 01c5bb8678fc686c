import { isIP, validateMeshObject, type Validation } from '../../../src/mesh/validate';
import {
  endpointSlice,
  meshed,
  peerAuthentication,
  pod,
  service,
  withAnnotation,
  withClusterIP,
  withEndpoint,
  withField,
  withMode,
  withPort,
  withPortMtls,
  withSlicePort,
  withSpec,
  type Raw,
} from '../../fixtures/mesh-objects';

const problems = (v: Validation) => (v.status === 'invalid' ? v.problems : []);

describe('objects the mesh reads are checked field by field', () => {
  it.each([
    [
      'a Service port out of range',
      service('web', withPort(70000, 'http')),
      'spec.ports[0].port',
      /1 to 65535/,
    ],
    [
      'a Service port without number',
      service('web', withField('spec.ports', [{ name: 'http' }])),
      'spec.ports[0].port',
      /port number/,
    ],
    [
      'an unnamed port of a two-port Service',
      service('web', withPort(80, 'http'), withPort(81)),
      'spec.ports[1].name',
      /required when the Service has more than one port/,
    ],
    [
      'two ports with one name',
      service('web', withPort(80, 'http'), withPort(81, 'http')),
      'spec.ports[1].name',
      /used twice/,
    ],
    [
      'a targetPort name that is not a port name',
      service('web', withPort(80, 'http', 'Not_A_Name')),
      'spec.ports[0].targetPort',
      /neither a port number nor a port name/,
    ],
    [
      'a port protocol that does not exist',
      service('web', withPort(80, 'http', 8080, { protocol: 'QUIC' })),
      'spec.ports[0].protocol',
      /TCP, UDP or SCTP/,
    ],
    [
      'a ClusterIP that is not an IP',
      service('web', withPort(80), withClusterIP('10.96.0.300')),
      'spec.clusterIP',
      /not an IP address/,
    ],
    [
      'a Service name that is not a DNS-1035 label',
      service('9web', withPort(80)),
      'metadata.name',
      /DNS-1035/,
    ],
    [
      'a Service type that does not exist',
      service('web', withField('spec.type', 'Magic')),
      'spec.type',
      /must be one of/,
    ],
    ['an object without name', service('', withPort(80)), 'metadata.name', /is required/],
    [
      'a namespace that is not a DNS label',
      service('web', withField('metadata.namespace', 'Shop')),
      'metadata.namespace',
      /DNS label/,
    ],
    [
      'a label value that is not a string',
      service('web', withField('metadata.labels', { tier: 3 })),
      'metadata.labels.tier',
      /string/,
    ],
    [
      'a Service of another apiVersion',
      service('web', withField('apiVersion', 'v2')),
      'apiVersion',
      /use v1/,
    ],
    [
      'an EndpointSlice without addressType',
      endpointSlice('web', withField('addressType', undefined)),
      'addressType',
      /is required/,
    ],
    [
      'an EndpointSlice address of the wrong family',
      endpointSlice('web', withEndpoint('fd00::1')),
      'endpoints[0].addresses[0]',
      /not an IPv4 address/,
    ],
    [
      'an EndpointSlice endpoint without address',
      endpointSlice('web', withField('endpoints', [{ addresses: [] }])),
      'endpoints[0].addresses',
      /at least one address/,
    ],
    [
      'an EndpointSlice condition that is not a boolean',
      endpointSlice(
        'web',
        withField('endpoints', [{ addresses: ['10.0.0.1'], conditions: { ready: 'yes' } }]),
      ),
      'endpoints[0].conditions.ready',
      /true or false/,
    ],
    [
      'an EndpointSlice port out of range',
      endpointSlice('web', withSlicePort(0, 'http')),
      'ports[0].port',
      /1 to 65535/,
    ],
    [
      'a Pod whose service account is not a DNS subdomain',
      pod('web-1', withField('spec.serviceAccountName', 'Web_SA')),
      'spec.serviceAccountName',
      /DNS subdomain/,
    ],
    [
      'a Pod IP that is not an IP',
      pod('web-1', withField('status', { podIP: 'ten' })),
      'status.podIP',
      /not an IP address/,
    ],
    [
      'a container port out of range',
      pod('web-1', withField('spec.containers', [{ name: 'a', ports: [{ containerPort: 0 }] }])),
      'spec.containers[0].ports[0].containerPort',
      /1 to 65535/,
    ],
    [
      'a PeerAuthentication mode that does not exist',
      peerAuthentication('pa', withMode('STRCT')),
      'spec.mtls.mode',
      /UNSET, PERMISSIVE, STRICT, DISABLE/,
    ],
    [
      'a portLevelMtls without selector (Istio refuses it)',
      peerAuthentication('pa', withPortMtls(8080, 'DISABLE')),
      'spec.portLevelMtls',
      /needs spec.selector/,
    ],
    [
      'an empty portLevelMtls',
      peerAuthentication(
        'pa',
        withField('spec.selector', { matchLabels: { app: 'web' } }),
        withField('spec.portLevelMtls', {}),
      ),
      'spec.portLevelMtls',
      /at least one port/,
    ],
    [
      'a portLevelMtls key that is not a port',
      peerAuthentication(
        'pa',
        withField('spec.selector', { matchLabels: { app: 'web' } }),
        withField('spec.portLevelMtls', { http: { mode: 'STRICT' } }),
      ),
      'spec.portLevelMtls.http',
      /port number/,
    ],
    [
      'a PeerAuthentication of an unknown version',
      peerAuthentication('pa', withField('apiVersion', 'security.istio.io/v1alpha1')),
      'apiVersion',
      /security.istio.io\/v1 or security.istio.io\/v1beta1/,
    ],
  ] as const)('refuses %s, naming the field', (_sentence, raw: Raw, field, message) => {
    const found = problems(validateMeshObject(raw));
    expect(found.map((p) => p.field)).toContain(field);
    expect(found.find((p) => p.field === field)?.message).toMatch(message);
  });

  it('names the object it could not use', () => {
    const v = validateMeshObject(
      service('web', withField('metadata.namespace', 'shop'), withPort(0)),
    );
    expect(v).toMatchObject({
      status: 'invalid',
      identity: { apiVersion: 'v1', kind: 'Service', namespace: 'shop', name: 'web' },
    });
  });

  it('ignores kinds the mesh does not read, and refuses an object without kind', () => {
    expect(
      validateMeshObject({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'web' } })
        .status,
    ).toBe('ignored');
    expect(problems(validateMeshObject({ metadata: { name: 'x' } }))).toEqual([
      { field: 'kind', message: 'is required' },
    ]);
    expect(problems(validateMeshObject(['a']))).toEqual([
      { field: '', message: 'an object must be a YAML or JSON map' },
    ]);
  });

  it('accepts PeerAuthentication v1beta1 as v1', () => {
    expect(
      validateMeshObject(
        peerAuthentication(
          'pa',
          withField('apiVersion', 'security.istio.io/v1beta1'),
          withMode('STRICT'),
        ),
      ),
    ).toMatchObject({
      status: 'valid',
      object: { mode: 'STRICT', selector: null },
    });
  });

  it('puts an object without namespace in default', () => {
    expect(
      validateMeshObject(service('web', withField('metadata.namespace', undefined), withPort(80))),
    ).toMatchObject({
      status: 'valid',
      object: { meta: { namespace: 'default' } },
    });
  });

  it('fills Kubernetes defaults: TCP, targetPort = port, ready and serving when conditions are absent', () => {
    const svc = validateMeshObject(service('web', withField('spec.ports', [{ port: 80 }])));
    expect(svc).toMatchObject({
      status: 'valid',
      object: {
        ports: [{ name: '', port: 80, targetPort: 80, protocol: 'TCP', appProtocol: null }],
      },
    });
    const slice = validateMeshObject(
      endpointSlice('web', withField('endpoints', [{ addresses: ['10.0.0.1'] }])),
    );
    expect(slice).toMatchObject({
      status: 'valid',
      object: { endpoints: [{ ready: true, serving: true, targetRef: null }] },
    });
    const notReady = validateMeshObject(
      endpointSlice(
        'web',
        withField('endpoints', [{ addresses: ['10.0.0.1'], conditions: { ready: false } }]),
      ),
    );
    expect(notReady).toMatchObject({
      status: 'valid',
      object: { endpoints: [{ ready: false, serving: false }] },
    });
  });

  it('reads a targetPort given as a numeric string as a number', () => {
    expect(validateMeshObject(service('web', withPort(80, 'http', '8080')))).toMatchObject({
      status: 'valid',
      object: { ports: [{ targetPort: 8080 }] },
    });
  });

  it('drops a bad per-Pod proxy annotation with a warning, and keeps the Pod in the mesh', () => {
    const v = validateMeshObject(
      pod(
        'web-1',
        meshed(),
        withAnnotation('proxy.mooring.dev/trace-sampling', '150'),
        withAnnotation('proxy.mooring.dev/access-log', 'yes'),
      ),
    );
    expect(v).toMatchObject({
      status: 'valid',
      object: { meshed: true, traceSamplingPercent: null, accessLog: null },
    });
    expect(v.status === 'valid' ? v.warnings.map((w) => w.field) : []).toEqual([
      'metadata.annotations.proxy.mooring.dev/trace-sampling',
      'metadata.annotations.proxy.mooring.dev/access-log',
    ]);
  });

  it('reads valid per-Pod proxy annotations', () => {
    const v = validateMeshObject(
      pod(
        'web-1',
        withAnnotation('proxy.mooring.dev/trace-sampling', '12.5'),
        withAnnotation('proxy.mooring.dev/access-log', 'true'),
      ),
    );
    expect(v).toMatchObject({
      status: 'valid',
      object: { traceSamplingPercent: 12.5, accessLog: true, meshed: false },
    });
  });
});

describe('what locality load balancing reads', () => {
  /** A core v1 Node (cluster-scoped) with `labels`, as the apiserver lists it. */
  const node = (name: string, labels: Record<string, string> = {}, extra: Raw = {}): Raw => ({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: { name, labels, resourceVersion: '7', ...extra },
  });
  const localityOf = (raw: Raw): unknown => {
    const v = validateMeshObject(raw);
    if (v.status !== 'valid') throw new Error(`not valid: ${JSON.stringify(v)}`);
    return (v.object as { locality?: unknown }).locality;
  };

  it('reads a Node as cluster-scoped: no namespace, whatever the default or its metadata say', () => {
    const name = 'ip-10-0-0-1.eu-west-1.compute.internal';
    for (const v of [
      validateMeshObject(node(name), 'shop'),
      validateMeshObject(node(name, {}, { namespace: 'shop' })),
    ]) {
      expect(v).toMatchObject({
        status: 'valid',
        object: { kind: 'Node', meta: { name, namespace: '' } },
      });
    }
  });

  it.each([
    [
      'region, zone and subzone from the topology labels',
      {
        'topology.kubernetes.io/region': 'us-east1',
        'topology.kubernetes.io/zone': 'us-east1-b',
        'topology.istio.io/subzone': 'rack-7',
      },
      'us-east1/us-east1-b/rack-7',
    ],
    [
      'no subzone: the last part empty',
      { 'topology.kubernetes.io/region': 'region1', 'topology.kubernetes.io/zone': 'zone1' },
      'region1/zone1/',
    ],
    [
      'the deprecated failure-domain.beta.kubernetes.io labels when the topology ones are absent',
      {
        'failure-domain.beta.kubernetes.io/region': 'old-region',
        'failure-domain.beta.kubernetes.io/zone': 'old-zone',
      },
      'old-region/old-zone/',
    ],
    [
      'the topology labels over the deprecated ones',
      {
        'topology.kubernetes.io/region': 'new-region',
        'failure-domain.beta.kubernetes.io/region': 'old-region',
        'topology.kubernetes.io/zone': 'new-zone',
        'failure-domain.beta.kubernetes.io/zone': 'old-zone',
      },
      'new-region/new-zone/',
    ],
    [
      'a deprecated label where the topology one is empty',
      {
        'topology.kubernetes.io/region': '',
        'failure-domain.beta.kubernetes.io/region': 'old-region',
        'topology.kubernetes.io/zone': 'zone1',
      },
      'old-region/zone1/',
    ],
    ['only a zone', { 'topology.kubernetes.io/zone': 'zone1' }, '/zone1/'],
    ['no topology label: every part empty', { 'kubernetes.io/hostname': 'n1' }, '//'],
    [
      'never istio-locality, which is a Pod label, not a Node one',
      { 'istio-locality': 'r9.z9.s9', 'topology.kubernetes.io/region': 'region1' },
      'region1//',
    ],
  ])("takes a Node's locality: %s", (_sentence, labels, locality) => {
    expect(localityOf(node('n1', labels))).toBe(locality);
  });

  it('refuses a Node named badly or of another apiVersion, naming the field', () => {
    expect(problems(validateMeshObject(node('Node_1')))).toEqual([
      expect.objectContaining({ field: 'metadata.name' }),
    ]);
    expect(problems(validateMeshObject({ ...node('n1'), apiVersion: 'v2' }))).toEqual([
      expect.objectContaining({ field: 'apiVersion' }),
    ]);
    expect(
      problems(validateMeshObject(node('n1', { 'topology.kubernetes.io/zone': 5 } as never))),
    ).toEqual([expect.objectContaining({ field: 'metadata.labels.topology.kubernetes.io/zone' })]);
  });

  it("reads a Pod's spec.nodeName; null before it is scheduled", () => {
    expect(validateMeshObject(pod('web-1', withSpec({ nodeName: 'n1' })))).toMatchObject({
      status: 'valid',
      object: { kind: 'Pod', nodeName: 'n1' },
    });
    for (const raw of [pod('web-1'), pod('web-1', withSpec({ nodeName: '' }))]) {
      expect(validateMeshObject(raw)).toMatchObject({
        status: 'valid',
        object: { kind: 'Pod', nodeName: null },
      });
    }
  });

  it("reads an EndpointSlice endpoint's nodeName and zone; null when absent", () => {
    const v = validateMeshObject(
      endpointSlice(
        'web',
        withSlicePort(8080, 'http'),
        withField('endpoints', [
          { addresses: ['10.0.0.1'], nodeName: 'n1', zone: 'zone1' },
          { addresses: ['10.0.0.2'], nodeName: '', zone: '' },
          { addresses: ['10.0.0.3'] },
        ]),
      ),
    );
    expect(v).toMatchObject({
      status: 'valid',
      object: {
        endpoints: [
          { addresses: ['10.0.0.1'], nodeName: 'n1', zone: 'zone1' },
          { addresses: ['10.0.0.2'], nodeName: null, zone: null },
          { addresses: ['10.0.0.3'], nodeName: null, zone: null },
        ],
      },
    });
  });

  it.each([
    ['PreferClose', true],
    ['PreferSameZone', true],
    ['PreferSameNode', true],
    ['Prefer', false],
    ['preferclose', false],
    ['', false],
    [undefined, false],
  ])("reads a Service's trafficDistribution %s as preferClose %s", (value, preferClose) => {
    const raw = service(
      'web',
      withPort(80, 'http'),
      ...(value === undefined ? [] : [withSpec({ trafficDistribution: value })]),
    );
    expect(validateMeshObject(raw)).toMatchObject({ status: 'valid', object: { preferClose } });
  });
});

describe('IP addresses', () => {
  it.each([
    ['10.0.0.1', true],
    ['255.255.255.255', true],
    ['256.0.0.1', false],
    ['10.0.0', false],
    ['01.0.0.1', false],
    ['::', true],
    ['::1', true],
    ['fd00::1', true],
    ['2001:db8:0:0:0:0:0:1', true],
    ['2001:db8::1:2:3:4:5:6:7', false],
    ['::ffff:10.0.0.1', true],
    ['fe80::1%eth0', false],
    ['1:2:3:4:5:6:7:8:9', false],
    ['gggg::1', false],
    [':::1', false],
    ['', false],
  ])('%s is an IP: %s', (text, ok) => {
    expect(isIP(text)).toBe(ok);
  });
});

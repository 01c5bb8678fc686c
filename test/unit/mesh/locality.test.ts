// Localities in the mesh model: where each endpoint and each proxy is (a Pod's `istio-locality`,
// its Node's topology labels, the EndpointSlice's zone), kept up to date as Nodes change, and
// DestinationRule `localityLbSetting` read as Istio's validation reads it.

import { validateMeshObject } from '../../../src/mesh';
import { localityMatches, localityPatternProblem } from '../../../src/mesh/locality';
import {
  endpointSlice,
  meshed,
  modelOf,
  pod,
  service,
  valid,
  withClusterIP,
  withEndpoint,
  withField,
  withIP,
  withLabels,
  withPort,
  withServiceAccount,
  withSlicePort,
  withSpec,
  type Raw,
} from '../../fixtures/mesh-objects';

const node = (name: string, labels: Record<string, string>): Raw => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: { name, labels },
});
const ZONE = 'topology.kubernetes.io/zone';
const REGION = 'topology.kubernetes.io/region';

const onNode = (name: string) => withField('spec.nodeName', name);

/** Service web with endpoints web-1 (on node a) and web-2 (on node b), and a client on a. */
function mesh(...extra: Raw[]): Raw[] {
  return [
    service('web', withPort(80, 'http', 8080), withClusterIP('10.96.0.10')),
    endpointSlice(
      'web',
      withSlicePort(8080, 'http'),
      withEndpoint('10.0.0.1', { pod: 'web-1' }),
      withEndpoint('10.0.0.2', { pod: 'web-2' }),
    ),
    pod('web-1', meshed(), withServiceAccount('web'), withIP('10.0.0.1'), onNode('a')),
    pod('web-2', meshed(), withServiceAccount('web'), withIP('10.0.0.2'), onNode('b')),
    pod('client-1', meshed(), withIP('10.0.1.1'), onNode('a')),
    node('a', { [REGION]: 'us-east', [ZONE]: 'us-east-1a', 'topology.istio.io/subzone': 'rack1' }),
    node('b', { [REGION]: 'us-east', [ZONE]: 'us-east-1b' }),
    ...extra,
  ];
}

const localities = (raws: Raw[]): Record<string, string | undefined> => {
  const s = modelOf(raws).service('default/web')?.service;
  return Object.fromEntries((s?.endpoints ?? []).map((e) => [e.address, e.locality]));
};

describe('where endpoints and proxies are', () => {
  it('gives each endpoint and each proxy the locality of its Node', () => {
    const model = modelOf(mesh());
    expect(localities(mesh())).toEqual({
      '10.0.0.1': 'us-east/us-east-1a/rack1',
      '10.0.0.2': 'us-east/us-east-1b/',
    });
    expect(model.proxyScope('default/client-1')?.locality).toBe('us-east/us-east-1a/rack1');
  });

  it("takes a Pod's istio-locality label over its Node's, dots for slashes", () => {
    const raws = mesh().map((r) =>
      (r.metadata as { name: string }).name === 'web-2' && r.kind === 'Pod'
        ? withLabels({ 'istio-locality': 'eu.eu-1c.rack9' })(r)
        : r,
    );
    expect(localities(raws)['10.0.0.2']).toBe('eu/eu-1c/rack9');
  });

  it("falls back to the slice's nodeName and zone for an endpoint without a Pod; none: no locality", () => {
    const raws = [
      service('web', withPort(80, 'http', 8080), withClusterIP('10.96.0.10')),
      endpointSlice(
        'web',
        withSlicePort(8080, 'http'),
        withEndpoint('10.0.0.1'),
        withEndpoint('10.0.0.2'),
        withEndpoint('10.0.0.3'),
        withField('endpoints.0.nodeName', 'b'),
        withField('endpoints.1.zone', 'us-west-2a'),
      ),
      node('b', { [REGION]: 'us-east', [ZONE]: 'us-east-1b' }),
    ];
    expect(localities(raws)).toEqual({
      '10.0.0.1': 'us-east/us-east-1b/',
      '10.0.0.2': '/us-west-2a/',
      '10.0.0.3': undefined,
    });
  });

  it("follows a Node's labels: its endpoints' Services are rebuilt and its Pods' scopes change", () => {
    const model = modelOf(mesh());
    const v = model.version;
    model.upsert(valid(node('b', { [REGION]: 'us-west', [ZONE]: 'us-west-2a' })));
    const commit = model.commit();
    expect(commit?.services).toEqual(['default/web']);
    expect(commit?.pods).toEqual(['default/web-2']);
    expect(model.version).toBe(v + 1);
    const s = model.service('default/web')?.service;
    expect(s?.endpoints.find((e) => e.address === '10.0.0.2')?.locality).toBe(
      'us-west/us-west-2a/',
    );
    // A Node removed: its Pods' locality is unknown.
    model.remove({ kind: 'Node', namespace: '', name: 'a' });
    model.commit();
    expect(model.proxyScope('default/client-1')?.locality).toBeUndefined();
  });

  it("carries a Service's trafficDistribution PreferClose (PreferSameZone, PreferSameNode alike)", () => {
    for (const [value, expected] of [
      ['PreferClose', true],
      ['PreferSameZone', true],
      ['PreferSameNode', true],
      ['Other', undefined],
    ] as const) {
      const raws = mesh().map((r) =>
        r.kind === 'Service' ? withSpec({ trafficDistribution: value })(r) : r,
      );
      expect(modelOf(raws).service('default/web')?.service.preferClose).toBe(expected);
    }
  });

  it("reads a ServiceEntry endpoint's locality, and refuses one that is not region/zone/subzone", () => {
    const entry = (locality: string): Raw => ({
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'db', namespace: 'default' },
      spec: {
        hosts: ['db.example.com'],
        ports: [{ number: 5432, name: 'tcp', protocol: 'TCP' }],
        resolution: 'STATIC',
        endpoints: [{ address: '192.0.2.1', locality }],
      },
    });
    const s = modelOf([entry('us-east/us-east-1a')]).service('db.example.com');
    expect(s?.service.endpoints[0]?.locality).toBe('us-east/us-east-1a');
    const v = validateMeshObject(entry('a/b/c/d'));
    expect(v.status).toBe('invalid');
  });
});

describe('DestinationRule localityLbSetting, as Istio validates it', () => {
  const dr = (localityLbSetting: unknown, outlier = true): Raw => ({
    apiVersion: 'networking.istio.io/v1',
    kind: 'DestinationRule',
    metadata: { name: 'web', namespace: 'default' },
    spec: {
      host: 'web',
      trafficPolicy: {
        loadBalancer: { localityLbSetting },
        ...(outlier ? { outlierDetection: { consecutive5xxErrors: 3 } } : {}),
      },
    },
  });
  const problems = (raw: Raw): string[] => {
    const v = validateMeshObject(raw);
    return v.status === 'invalid' ? v.problems.map((p) => `${p.field}: ${p.message}`) : [];
  };

  it('reads distribute, failover and failoverPriority into the traffic policy', () => {
    const v = validateMeshObject(
      dr({
        enabled: true,
        distribute: [{ from: 'us-east/*', to: { 'us-east/*': 80, 'us-west/*': 20 } }],
      }),
    );
    expect(v.status).toBe('valid');
    const object = v.status === 'valid' ? v.object : null;
    expect(object).toMatchObject({
      trafficPolicy: {
        localityLb: {
          enabled: true,
          distribute: [{ from: 'us-east/*', to: { 'us-east/*': 80, 'us-west/*': 20 } }],
        },
      },
    });
  });

  it('refuses weights that do not add up to 100, or out of 1-100', () => {
    expect(problems(dr({ distribute: [{ from: '*', to: { 'a/*': 50, 'b/*': 40 } }] }))).toEqual([
      'spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to: the weights add up to 90, not 100',
    ]);
    expect(problems(dr({ distribute: [{ from: '*', to: { 'a/*': 0, 'b/*': 100 } }] }))).toEqual([
      'spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to["a/*"]: must be from 1 to 100, not 0',
    ]);
  });

  it('refuses a wildcard that is not a whole last part, distribute beside failover, failover within a region or to a zone', () => {
    expect(problems(dr({ distribute: [{ from: 'us-*', to: { '*': 100 } }] }))).toEqual([
      'spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].from: "us-*": a "*" must be a whole part and the last one',
    ]);
    expect(
      problems(
        dr({
          distribute: [{ from: '*', to: { '*': 100 } }],
          failover: [{ from: 'a', to: 'b' }],
        }),
      ),
    ).toEqual([
      'spec.trafficPolicy.loadBalancer.localityLbSetting: sets distribute or failover, not both',
    ]);
    expect(problems(dr({ failover: [{ from: 'a', to: 'a' }] }))).toEqual([
      'spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]: fails over from a region to itself',
    ]);
    expect(problems(dr({ failover: [{ from: 'a', to: 'b/z1' }] }))).toEqual([
      'spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0].to: "b/z1" is not a region (no "/" or "*")',
    ]);
  });

  it('refuses failoverPriority labels other than the topology ones (not read yet), and with failover', () => {
    expect(problems(dr({ failoverPriority: ['version'] }))[0]).toMatch(
      /failoverPriority\[0\]: "version": Mooring reads only the topology labels yet/,
    );
    expect(
      problems(
        dr({
          failoverPriority: ['topology.kubernetes.io/region'],
          failover: [{ from: 'a', to: 'b' }],
        }),
      ),
    ).toEqual([
      'spec.trafficPolicy.loadBalancer.localityLbSetting: sets failover or topology labels in failoverPriority, not both',
    ]);
  });

  it('warns that failover without outlierDetection has no effect, as Istio does', () => {
    const v = validateMeshObject(dr({ failover: [{ from: 'a', to: 'b' }] }, false));
    expect(v.status === 'valid' ? v.warnings : null).toEqual([
      {
        field: 'spec.trafficPolicy.loadBalancer.localityLbSetting',
        message:
          'failover needs outlierDetection beside it: without, it has no effect (as in Istio)',
      },
    ]);
  });
});

describe('locality patterns', () => {
  it('match by the parts given, `*` taking the rest', () => {
    expect(localityMatches('us-east/*', 'us-east/us-east-1a/r1')).toBe(true);
    expect(localityMatches('us-east/us-east-1a', 'us-east/us-east-1a/r1')).toBe(true);
    expect(localityMatches('us-east/us-east-1b/*', 'us-east/us-east-1a/')).toBe(false);
    expect(localityMatches('*', '')).toBe(true);
    expect(localityMatches('us-west', 'us-east/a/b')).toBe(false);
  });

  it('are refused when empty, longer than three parts, or with a partial wildcard', () => {
    expect(localityPatternProblem('a/b/c')).toBeNull();
    expect(localityPatternProblem('a/*')).toBeNull();
    expect(localityPatternProblem('')).toMatch(/is not a locality/);
    expect(localityPatternProblem('a/b/c/d')).toMatch(/is not a locality/);
    expect(localityPatternProblem('*/b')).toMatch(/whole part and the last one/);
    expect(localityPatternProblem('a//c')).toMatch(/empty part/);
  });
});

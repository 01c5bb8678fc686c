// Istio's ServiceEntry: the reader's errors and warnings (each naming its field), and the services
// the model builds from an entry's hosts: keys the rules naming a host resolve to, addresses and
// CIDRs, ports, endpoints by resolution, identities of MESH_INTERNAL endpoints, rules attached by
// host, precedence (a Service of the same key, the oldest entry), visibility, deletion.
import { formatProxyConfig } from '../../../src/cli/proxy-config';
import { validateMeshObject } from '../../../src/mesh';
import { meshState, proxyScope } from '../../fixtures/mesh';
import {
  createdAt,
  inNamespace,
  meshed,
  modelOf,
  pod,
  problemsOf,
  service,
  valid,
  withClusterIP,
  withField,
  withIP,
  withLabels,
  withPort,
  withServiceAccount,
  type Raw,
} from '../../fixtures/mesh-objects';

const serviceEntry = (
  name: string,
  spec: Raw,
  namespace = 'egress',
  ...mods: ((r: Raw) => Raw)[]
): Raw =>
  mods.reduce<Raw>((r, m) => m(r), {
    apiVersion: 'networking.istio.io/v1',
    kind: 'ServiceEntry',
    metadata: { name, namespace },
    spec,
  });

const https443 = { number: 443, name: 'https', protocol: 'HTTPS' };

const warningsOf = (raw: Raw): string[] => {
  const v = validateMeshObject(raw);
  if (v.status !== 'valid') throw new Error(`expected valid, got ${JSON.stringify(v)}`);
  return v.warnings.map((w) => `${w.field}: ${w.message}`);
};

describe('reading ServiceEntry', () => {
  it('refuses what it cannot carry, naming the field', () => {
    expect(problemsOf(serviceEntry('e', {}))).toEqual([
      'spec.hosts: is required: at least one host',
      'spec.ports: is required: at least one port',
    ]);
    expect(
      problemsOf(
        serviceEntry('e', {
          hosts: [
            'api.example.com',
            'Not A Host',
            'reviews',
            'reviews.default.svc.cluster.local',
            '*',
          ],
          ports: [
            https443,
            { number: 443, name: 'again', protocol: 'TLS' },
            { number: 80, protocol: 'QUIC' },
          ],
          resolution: 'STATICALLY',
        }),
      ),
    ).toEqual([
      'spec.resolution: must be one of NONE, STATIC, DNS, DNS_ROUND_ROBIN, not "STATICALLY"',
      'spec.hosts[1]: "Not A Host" is not a DNS name (a wildcard is "*." in front of one)',
      'spec.hosts[2]: "reviews" names a Kubernetes Service: a ServiceEntry adds hosts the mesh does not learn from Kubernetes (use a fully qualified name outside .svc)',
      'spec.hosts[3]: "reviews.default.svc.cluster.local" names a Kubernetes Service: a ServiceEntry adds hosts the mesh does not learn from Kubernetes (use a fully qualified name outside .svc)',
      'spec.hosts[4]: "*" is not a DNS name (a wildcard is "*." in front of one)',
      'spec.ports[1].number: 443 is listed twice',
      'spec.ports[2].protocol: must be one of HTTP, HTTP_PROXY, HTTP2, GRPC, GRPC-WEB, HTTPS, TLS, TCP, MONGO, MYSQL, REDIS, not "QUIC"',
    ]);
    expect(
      problemsOf(
        serviceEntry('e', {
          hosts: ['*.example.com'],
          ports: [https443],
          resolution: 'STATIC',
          endpoints: [
            { address: 'db.example.com' },
            { address: '10.0.0.1', ports: { grpc: 9000 } },
          ],
          workloadSelector: { labels: { app: 'vm' } },
        }),
      ),
    ).toEqual([
      'spec.hosts[0]: a wildcard host needs resolution NONE or DNS',
      'spec.endpoints[0].address: "db.example.com" is not an IP address (a DNS name needs resolution DNS)',
      'spec.endpoints[1].ports.grpc: names no port of spec.ports',
      'spec.endpoints: must be empty with a workloadSelector (its Pods are the endpoints)',
    ]);
    expect(
      problemsOf(
        serviceEntry('e', {
          hosts: ['*.example.com'],
          ports: [https443],
          resolution: 'DNS',
        }),
      ),
    ).toEqual([
      'spec.hosts[0]: a wildcard host cannot be resolved by DNS: list spec.endpoints, or use resolution NONE',
    ]);
    expect(
      problemsOf(
        serviceEntry('e', {
          hosts: ['api.example.com'],
          ports: [https443],
          endpoints: [{ address: '10.0.0.1' }],
          addresses: ['10.0.0.0/33'],
        }),
      ),
    ).toEqual([
      'spec.addresses[0]: "10.0.0.0/33" is not an IP address or a CIDR',
      'spec.endpoints: must be empty with resolution NONE (connections go to the address the app dialled)',
    ]);
    // v1alpha3 is not read (Istio's v1 and v1beta1 are the same schema).
    expect(
      problemsOf({
        ...serviceEntry('e', { hosts: ['api.example.com'], ports: [https443] }),
        apiVersion: 'networking.istio.io/v1alpha3',
      })[0],
    ).toMatch(/^apiVersion: "networking.istio.io\/v1alpha3" is not read for ServiceEntry/);
  });

  it('warns of what it ignores', () => {
    expect(
      warningsOf(
        serviceEntry('e', {
          hosts: ['db.example.com'],
          ports: [
            { number: 5432, name: 'pg', protocol: 'TCP' },
            { number: 53, name: 'dns', protocol: 'UDP' },
          ],
          resolution: 'DNS',
          subjectAltNames: ['spiffe://x/y'],
          endpoints: [{ address: 'db1.example.com', locality: 'eu/west', serviceAccount: 'db' }],
        }),
      ),
    ).toEqual([
      "spec.subjectAltNames: is not supported by Mooring yet: ignored (a MESH_INTERNAL endpoint's identity comes from its serviceAccount)",
      'spec.ports[1].protocol: UDP is not carried by the proxy: the port is ignored',
      'spec.endpoints[0].serviceAccount: is used with MESH_INTERNAL only (an endpoint outside the mesh has no mesh identity): ignored',
    ]);
  });
});

describe('the services of a ServiceEntry', () => {
  it('makes one service per host, keyed as rules name it, with its ports, addresses and CIDRs', () => {
    const model = modelOf([
      serviceEntry('apis', {
        hosts: ['api.example.com', 'httpbin.org'],
        addresses: ['192.0.2.10', '198.51.100.0/24', '2001:db8::1'],
        ports: [{ number: 80, name: 'http', protocol: 'HTTP' }, https443, { number: 9000 }],
      }),
    ]);
    const api = model.service('api.example.com')?.service;
    expect(api).toEqual({
      key: 'api.example.com',
      name: 'api.example.com',
      namespace: 'egress',
      hostname: 'api.example.com',
      addresses: ['192.0.2.10', '2001:db8::1'],
      ports: [
        { port: 80, name: 'http', protocol: 'http' },
        { port: 443, name: 'https', protocol: 'tcp', tls: true },
        { port: 9000, name: '', protocol: 'unknown' },
      ],
      endpoints: [],
      entry: {
        source: { namespace: 'egress', name: 'apis' },
        location: 'MESH_EXTERNAL',
        resolution: 'NONE',
        subnets: ['198.51.100.0/24'],
      },
    });
    // A host of two labels has the key `name.namespace` gives it: rules naming it find it.
    expect(model.service('org/httpbin')?.service.hostname).toBe('httpbin.org');
  });

  it('gives endpoints by resolution: STATIC ports by name, DNS the host itself, MESH_INTERNAL identities', () => {
    const model = modelOf([
      serviceEntry('vm', {
        hosts: ['vm.internal.example'],
        location: 'MESH_INTERNAL',
        resolution: 'STATIC',
        ports: [
          { number: 80, name: 'http', protocol: 'HTTP', targetPort: 8080 },
          { number: 9090, name: 'metrics', protocol: 'HTTP' },
        ],
        endpoints: [
          {
            address: '10.1.0.5',
            ports: { metrics: 9191 },
            serviceAccount: 'vm-app',
            labels: { version: 'v2' },
          },
          { address: '10.1.0.6' },
        ],
      }),
      serviceEntry('dns', {
        hosts: ['api.example.com'],
        resolution: 'DNS_ROUND_ROBIN',
        ports: [https443],
      }),
    ]);
    expect(model.service('vm.internal.example')?.service.endpoints).toEqual([
      {
        address: '10.1.0.5',
        ports: { '80': 8080, '9090': 9191 },
        ready: true,
        identity: 'spiffe://cluster.local/ns/egress/sa/vm-app',
        workload: null,
        pod: null,
      },
      {
        address: '10.1.0.6',
        ports: { '80': 8080, '9090': 9090 },
        ready: true,
        identity: null,
        workload: null,
        pod: null,
      },
    ]);
    const dns = model.service('api.example.com')?.service;
    expect(dns?.entry?.resolution).toBe('DNS');
    expect(dns?.endpoints).toEqual([
      {
        address: 'api.example.com',
        ports: { '443': 443 },
        ready: true,
        identity: null,
        workload: null,
        pod: null,
      },
    ]);
  });

  it('takes the VirtualServices and DestinationRules that name its host, subsets by endpoint labels', () => {
    const vs = {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'httpbin', namespace: 'default' },
      spec: {
        hosts: ['httpbin.org'],
        http: [{ timeout: '3s', route: [{ destination: { host: 'httpbin.org', subset: 'eu' } }] }],
      },
    };
    const dr = {
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: 'httpbin', namespace: 'egress' },
      spec: {
        host: 'httpbin.org',
        trafficPolicy: { tls: { mode: 'SIMPLE' } },
        subsets: [{ name: 'eu', labels: { region: 'eu' } }],
      },
    };
    const model = modelOf([
      vs,
      dr,
      serviceEntry('httpbin', {
        hosts: ['httpbin.org'],
        resolution: 'STATIC',
        ports: [{ number: 80, name: 'http', protocol: 'HTTP', targetPort: 443 }],
        endpoints: [
          { address: '10.2.0.1', labels: { region: 'eu' } },
          { address: '10.2.0.2', labels: { region: 'us' } },
        ],
      }),
    ]);
    const built = model.service('org/httpbin')?.service;
    expect(built?.routes?.source).toEqual({
      kind: 'VirtualService',
      namespace: 'default',
      name: 'httpbin',
    });
    expect(built?.routes?.rules[0]?.timeoutMs).toBe(3000);
    expect(built?.routes?.rules[0]?.destinations).toEqual([
      { service: 'org/httpbin', subset: 'eu', weight: 100 },
    ]);
    expect(built?.policy?.trafficPolicy?.tls).toEqual({ mode: 'SIMPLE' });
    expect(built?.endpoints.map((e) => [e.address, e.subsets ?? []])).toEqual([
      ['10.2.0.1', ['eu']],
      ['10.2.0.2', []],
    ]);
    // A VirtualService's destination outside Kubernetes is read (a ServiceEntry's host).
    expect(validateMeshObject(vs).status).toBe('valid');
  });

  it('yields to a Service of the same key; of two entries of one host the oldest is used; deleted, it is removed', () => {
    const older = serviceEntry(
      'older',
      { hosts: ['api.example.com'], ports: [https443] },
      'a',
      createdAt('2026-01-01T00:00:00Z'),
    );
    const younger = serviceEntry(
      'younger',
      { hosts: ['api.example.com'], ports: [{ number: 8443, name: 'tls', protocol: 'TLS' }] },
      'b',
      createdAt('2026-02-01T00:00:00Z'),
    );
    const model = modelOf([younger, older]);
    expect(model.service('api.example.com')?.service.entry?.source).toEqual({
      namespace: 'a',
      name: 'older',
    });
    model.remove({ kind: 'ServiceEntry', namespace: 'a', name: 'older' });
    model.commit();
    expect(model.service('api.example.com')?.service.ports[0]?.port).toBe(8443);
    model.remove({ kind: 'ServiceEntry', namespace: 'b', name: 'younger' });
    const commit = model.commit();
    expect(commit?.removed).toEqual(['api.example.com']);
    expect(model.service('api.example.com')).toBeUndefined();

    const shared = modelOf([
      serviceEntry('httpbin', { hosts: ['httpbin.org'], ports: [https443] }),
      service(
        'httpbin',
        (o) => ({ ...o, metadata: { name: 'httpbin', namespace: 'org' } }),
        withPort(8000, 'http'),
        withClusterIP('10.96.0.9'),
      ),
    ]);
    expect(shared.service('org/httpbin')?.service.entry).toBeUndefined();
    expect(shared.service('org/httpbin')?.service.addresses).toEqual(['10.96.0.9']);
  });

  it('is seen by the namespaces its exportTo names', () => {
    const model = modelOf([
      serviceEntry('private', {
        hosts: ['private.example.com'],
        ports: [https443],
        exportTo: ['.'],
      }),
      serviceEntry('public', { hosts: ['public.example.com'], ports: [https443] }),
    ]);
    expect(model.visibleServices('egress').map((s) => s.key)).toEqual([
      'private.example.com',
      'public.example.com',
    ]);
    expect(model.visibleServices('default').map((s) => s.key)).toEqual(['public.example.com']);
  });
});

describe('mooring proxy-config', () => {
  it('shows an entry host by its name and entry, how it is matched and where it goes', () => {
    const model = modelOf([
      serviceEntry('apis', { hosts: ['api.example.com'], ports: [https443] }),
      serviceEntry('db', {
        hosts: ['db.example.com'],
        addresses: ['192.0.2.0/24'],
        resolution: 'DNS',
        ports: [{ number: 5432, name: 'pg', protocol: 'TCP' }],
      }),
    ]);
    const state = meshState(
      proxyScope('web'),
      ...['api.example.com', 'db.example.com'].map((k) => model.service(k)?.service ?? []).flat(),
    );
    const text = formatProxyConfig(
      {
        source: 'proxy',
        mesh: { ...state, services: [...state.services.values()] },
      },
      'the proxy at test',
    );
    expect(text).toMatch(
      /api\.example\.com \(ServiceEntry egress\/apis\) +\(none: by server name, Host or port\) +443\/tcp.* +where the app dialled/,
    );
    expect(text).toMatch(
      /db\.example\.com \(ServiceEntry egress\/db\) +192\.0\.2\.0\/24 .* 1 \(DNS\), 0 mTLS/,
    );
  });
});

describe("a ServiceEntry's workloadSelector", () => {
  const selecting = serviceEntry(
    'vm-api',
    {
      hosts: ['api.corp.example.com'],
      ports: [{ number: 80, name: 'http', protocol: 'HTTP', targetPort: 8080 }],
      location: 'MESH_INTERNAL',
      resolution: 'STATIC',
      workloadSelector: { labels: { app: 'api' } },
    },
    'shop',
  );
  const apiPod = (name: string, ip: string, ...mods: ((r: Raw) => Raw)[]): Raw =>
    pod(name, meshed(), inNamespace('shop'), withServiceAccount('api'), withIP(ip), ...mods);
  const endpointsOf = (raws: Raw[]) =>
    modelOf(raws)
      .service('api.corp.example.com')
      ?.service.endpoints.map((e) => ({
        address: e.address,
        ports: e.ports,
        ready: e.ready,
        identity: e.identity,
      }));

  it("takes the Pods of its namespace with its labels as endpoints, at the port's targetPort, with their identity", () => {
    expect(
      endpointsOf([
        selecting,
        apiPod('api-1', '10.0.0.1'),
        apiPod(
          'api-2',
          '10.0.0.2',
          withField('status.conditions', [{ type: 'Ready', status: 'False' }]),
        ),
        pod('web-1', meshed(), inNamespace('shop'), withIP('10.0.0.3')),
        apiPod('api-9', '10.0.9.9', inNamespace('other')),
      ]),
    ).toEqual([
      {
        address: '10.0.0.1',
        ports: { '80': 8080 },
        ready: true,
        identity: 'spiffe://cluster.local/ns/shop/sa/api',
      },
      // Not Ready: kept as terminating (used only when nothing else is).
      {
        address: '10.0.0.2',
        ports: { '80': 8080 },
        ready: false,
        identity: 'spiffe://cluster.local/ns/shop/sa/api',
      },
    ]);
  });

  it('follows its Pods: one that comes, or whose labels stop matching, changes the host', () => {
    const model = modelOf([selecting, apiPod('api-1', '10.0.0.1')]);
    model.upsert(valid(apiPod('api-2', '10.0.0.2')));
    expect(model.commit()?.services).toContain('api.corp.example.com');
    expect(model.service('api.corp.example.com')?.service.endpoints.map((e) => e.address)).toEqual([
      '10.0.0.1',
      '10.0.0.2',
    ]);
    model.upsert(valid(apiPod('api-1', '10.0.0.1', withLabels({ app: 'other' }))));
    model.commit();
    expect(model.service('api.corp.example.com')?.service.endpoints.map((e) => e.address)).toEqual([
      '10.0.0.2',
    ]);
  });

  it('is refused beside listed endpoints, or with a resolution other than STATIC', () => {
    expect(
      problemsOf(
        serviceEntry('e', {
          hosts: ['api.corp.example.com'],
          ports: [https443],
          resolution: 'DNS',
          workloadSelector: { labels: { app: 'api' } },
        }),
      ),
    ).toEqual([
      'spec.resolution: must be STATIC with a workloadSelector (its Pods are the endpoints)',
    ]);
  });
});

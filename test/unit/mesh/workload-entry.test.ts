// Istio's WorkloadEntry: read and checked, then an endpoint of the Services of its namespace whose
// selector its labels match and of the ServiceEntries that select it, meshed with its service
// account's identity; a change reaches those Services only.

import { validateMeshObject } from '../../../src/mesh';
import {
  inNamespace,
  modelOf,
  service,
  valid,
  withClusterIP,
  withPort,
  withSelector,
  type Raw,
} from '../../fixtures/mesh-objects';

const entry = (name: string, spec: object, namespace = 'shop'): Raw => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'WorkloadEntry',
  metadata: { name, namespace },
  spec,
});
const vm = (name: string, address: string, labels: object = { app: 'web' }): Raw =>
  entry(name, { address, labels, ports: { http: 9080 }, serviceAccount: 'vm' });

const web = service(
  'web',
  inNamespace('shop'),
  withPort(80, 'http', 'http'),
  withClusterIP('10.96.0.10'),
  withSelector({ app: 'web' }),
);

describe('a WorkloadEntry', () => {
  it("is an endpoint of the Services whose selector its labels match, at the named targetPort, with its service account's identity", () => {
    const model = modelOf([web, vm('vm-1', '10.9.0.1'), vm('other', '10.9.0.2', { app: 'db' })]);
    expect(model.service('shop/web')?.service.endpoints).toEqual([
      {
        address: '10.9.0.1',
        ports: { '80': 9080 },
        ready: true,
        identity: 'spiffe://cluster.local/ns/shop/sa/vm',
        workload: { name: 'vm-1', namespace: 'shop', app: 'web', version: null },
        pod: null,
      },
    ]);
  });

  it('is plain text without a service account, and follows its labels: a change rebuilds only the Services it was or is in', () => {
    const db = service(
      'db',
      inNamespace('shop'),
      withPort(5432, 'tcp', 5432),
      withSelector({ app: 'db' }),
    );
    const model = modelOf([
      web,
      db,
      entry('vm-1', { address: '10.9.0.1', labels: { app: 'web' } }),
    ]);
    // No port named http on the entry: a named targetPort it lacks leaves it out.
    expect(model.service('shop/web')?.service.endpoints).toEqual([]);
    model.upsert(valid(entry('vm-1', { address: '10.9.0.1', labels: { app: 'db' } })));
    const commit = model.commit();
    expect(commit?.services).toEqual(['shop/db']);
    expect(model.service('shop/db')?.service.endpoints).toMatchObject([
      { address: '10.9.0.1', ports: { '5432': 5432 }, identity: null },
    ]);
  });

  it('is an endpoint of a ServiceEntry whose workloadSelector takes it, at its own port of the port name', () => {
    const model = modelOf([
      vm('vm-1', '10.9.0.1'),
      {
        apiVersion: 'networking.istio.io/v1',
        kind: 'ServiceEntry',
        metadata: { name: 'web-vms', namespace: 'shop' },
        spec: {
          hosts: ['web.vms.example'],
          ports: [{ number: 80, name: 'http', protocol: 'HTTP', targetPort: 8080 }],
          location: 'MESH_INTERNAL',
          resolution: 'STATIC',
          workloadSelector: { labels: { app: 'web' } },
        },
      },
    ]);
    expect(model.service('web.vms.example')?.service.endpoints).toMatchObject([
      {
        address: '10.9.0.1',
        ports: { '80': 9080 },
        identity: 'spiffe://cluster.local/ns/shop/sa/vm',
      },
    ]);
  });

  it('carries its locality to its endpoints (locality load balancing), and refuses one with a wildcard', () => {
    const model = modelOf([
      web,
      entry('vm-1', {
        address: '10.9.0.1',
        labels: { app: 'web' },
        ports: { http: 9080 },
        locality: 'us-east/us-east-1a',
      }),
    ]);
    expect(model.service('shop/web')?.service.endpoints[0]?.locality).toBe('us-east/us-east-1a');
    const v = validateMeshObject(entry('w', { address: '10.9.0.1', locality: 'us-east/*' }));
    expect(v.status === 'invalid' ? v.problems.map((p) => p.field) : v).toEqual(['spec.locality']);
  });

  it('is refused with the field named: an address that is not an IP, a bad port, a bad service account', () => {
    const v = validateMeshObject(
      entry('bad', { address: 'vm.example.com', ports: { http: 70000 }, serviceAccount: 'Not_OK' }),
    );
    expect(v.status === 'invalid' ? v.problems.map((p) => p.field) : v).toEqual([
      'spec.address',
      'spec.ports.http',
      'spec.serviceAccount',
    ]);
    const w = validateMeshObject(entry('w', { address: '10.9.0.1', network: 'n2', weight: 3 }));
    expect(w.status === 'valid' ? w.warnings.map((x) => x.field) : w).toEqual([
      'spec.network',
      'spec.weight',
    ]);
  });
});

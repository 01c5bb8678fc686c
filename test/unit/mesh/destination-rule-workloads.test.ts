// A DestinationRule with a workloadSelector: read, then pushed to the proxies of its own
// namespace only, beside the shared rule; each proxy applies the first that selects its Pod.

import { routesForThisProxy } from '../../../src/agent/proxy/core/route';
import type { MeshService } from '../../../src/api/mesh';
import { validateMeshObject } from '../../../src/mesh';
import { meshState, proxyScope } from '../../fixtures/mesh';
import {
  createdAt,
  endpointSlice,
  inNamespace,
  modelOf,
  service,
  withClusterIP,
  withEndpoint,
  withPort,
  withSlicePort,
  type Raw,
} from '../../fixtures/mesh-objects';

const dr = (name: string, spec: object, ...mods: ((o: Raw) => Raw)[]): Raw =>
  mods.reduce<Raw>((o, m) => m(o), {
    apiVersion: 'networking.istio.io/v1',
    kind: 'DestinationRule',
    metadata: { name, namespace: 'default' },
    spec: { host: 'web.default.svc.cluster.local', ...spec },
  });
const pool = (n: number) => ({ connectionPool: { http: { maxRequestsPerConnection: n } } });

const mesh = (...extra: Raw[]): Raw[] => [
  service('web', withPort(80, 'http', 8080), withClusterIP('10.96.0.10')),
  endpointSlice('web', withSlicePort(8080, 'http'), withEndpoint('10.0.0.1')),
  ...extra,
];

function seenFrom(raws: Raw[], namespace: string): MeshService | undefined {
  return modelOf(raws)
    .visibleServices(namespace)
    .find((b) => b.key === 'default/web')?.service;
}

describe('a DestinationRule with a workloadSelector', () => {
  const raws = mesh(
    dr('shared', { trafficPolicy: pool(100) }),
    dr(
      'for-web',
      { workloadSelector: { matchLabels: { app: 'client' } }, trafficPolicy: pool(1) },
      createdAt('2026-01-01T00:00:00Z'),
    ),
    dr(
      'for-web-later',
      { workloadSelector: { matchLabels: { app: 'client' } }, trafficPolicy: pool(2) },
      createdAt('2026-02-01T00:00:00Z'),
    ),
  );

  it("is pushed to its own namespace's proxies beside the shared rule, oldest first, and to no other namespace", () => {
    const own = seenFrom(raws, 'default');
    expect(own?.policy?.source.name).toBe('shared');
    expect(own?.policy?.trafficPolicy).toEqual(pool(100));
    expect(own?.policy?.workloads).toEqual([
      {
        source: { namespace: 'default', name: 'for-web' },
        selector: { app: 'client' },
        trafficPolicy: pool(1),
      },
      {
        source: { namespace: 'default', name: 'for-web-later' },
        selector: { app: 'client' },
        trafficPolicy: pool(2),
      },
    ]);
    expect(seenFrom(raws, 'other')?.policy?.workloads).toBeUndefined();
    expect(seenFrom(raws, 'other')?.policy?.source.name).toBe('shared');
  });

  it('is alone when no shared rule exists, and leaves the others as they were', () => {
    const alone = mesh(
      dr('for-web', {
        workloadSelector: { matchLabels: { app: 'client' } },
        trafficPolicy: pool(1),
      }),
    );
    const own = seenFrom(alone, 'default') as MeshService;
    expect(own.policy?.trafficPolicy).toBeUndefined();
    expect(own.policy?.workloads).toHaveLength(1);
    expect(seenFrom(alone, 'other')?.policy).toBeUndefined();
    // A proxy it does not select has no policy at all; one it selects has its policy.
    const as = (labels: Record<string, string>) =>
      routesForThisProxy(
        meshState(
          proxyScope('client', (p) => ({ ...p, labels })),
          own,
        ),
      ).services.get('default/web')?.policy;
    expect(as({ app: 'server' })).toBeUndefined();
    expect(as({ app: 'client' })?.trafficPolicy).toEqual(pool(1));
  });

  it('gives a selected proxy the oldest selecting rule’s policy, and another proxy the shared one', () => {
    const service = seenFrom(raws, 'default') as MeshService;
    const as = (labels: Record<string, string>) =>
      routesForThisProxy(
        meshState(
          proxyScope('client', (p) => ({ ...p, labels })),
          service,
        ),
      ).services.get('default/web')?.policy;
    expect(as({ app: 'client' })).toMatchObject({
      source: { name: 'for-web' },
      trafficPolicy: pool(1),
    });
    expect(as({ app: 'server' })).toMatchObject({
      source: { name: 'shared' },
      trafficPolicy: pool(100),
    });
  });

  it('refuses subsets beside a workloadSelector (not read yet), naming the field', () => {
    const v = validateMeshObject(
      dr('x', {
        workloadSelector: { matchLabels: { app: 'client' } },
        subsets: [{ name: 'v1', labels: { version: 'v1' } }],
      }),
    );
    expect(v.status === 'invalid' ? v.problems.map((p) => p.field) : v).toEqual(['spec.subsets']);
    // In another namespace than the Service's, it still selects its own namespace's proxies.
    const elsewhere = mesh(
      dr(
        'from-other',
        { workloadSelector: { matchLabels: { app: 'client' } }, trafficPolicy: pool(3) },
        inNamespace('other'),
      ),
    );
    expect(seenFrom(elsewhere, 'other')?.policy?.workloads?.[0]?.trafficPolicy).toEqual(pool(3));
    expect(seenFrom(elsewhere, 'default')?.policy).toBeUndefined();
  });
});

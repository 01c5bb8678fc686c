// `exportTo` of VirtualServices and DestinationRules: which namespaces' proxies use a rule, in
// Istio's order (exported to the proxy's namespace alone, then exported everywhere), and how the
// model hands each namespace its own view of a Service.
import type { MeshService } from '../../../src/api/mesh';
import { validateMeshObject } from '../../../src/mesh';
import {
  createdAt,
  endpointSlice,
  inNamespace,
  modelOf,
  pod,
  service,
  withClusterIP,
  withEndpoint,
  withIP,
  withLabels,
  withPort,
  withSlicePort,
  type Raw,
} from '../../fixtures/mesh-objects';

/** Service reviews in default, Pods reviews-1/2 labelled v1/v2. */
const mesh = (...extra: Raw[]): Raw[] => [
  service('reviews', withPort(9080, 'http'), withClusterIP('10.96.0.20')),
  endpointSlice(
    'reviews',
    withSlicePort(9080, 'http'),
    withEndpoint('10.0.0.1', { pod: 'reviews-1' }),
    withEndpoint('10.0.0.2', { pod: 'reviews-2' }),
  ),
  pod('reviews-1', withLabels({ version: 'v1' }), withIP('10.0.0.1')),
  pod('reviews-2', withLabels({ version: 'v2' }), withIP('10.0.0.2')),
  ...extra,
];

const vs = (name: string, subset: string, exportTo?: string[]): Raw => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'VirtualService',
  metadata: { name, namespace: 'default' },
  spec: {
    hosts: ['reviews.default.svc.cluster.local'],
    http: [{ route: [{ destination: { host: 'reviews.default.svc.cluster.local', subset } }] }],
    ...(exportTo === undefined ? {} : { exportTo }),
  },
});
const dr = (name: string, labels: Record<string, string>, exportTo?: string[]): Raw => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'DestinationRule',
  metadata: { name, namespace: 'default' },
  spec: {
    host: 'reviews.default.svc.cluster.local',
    subsets: [{ name: 'chosen', labels }],
    ...(exportTo === undefined ? {} : { exportTo }),
  },
});

/** The reviews Service as a proxy in `namespace` gets it. */
function seenFrom(raws: Raw[], namespace: string): MeshService | undefined {
  return modelOf(raws)
    .visibleServices(namespace)
    .find((b) => b.key === 'default/reviews')?.service;
}
const subsetOf = (s: MeshService | undefined): string | undefined =>
  s?.routes?.rules[0]?.destinations[0]?.subset;

describe('VirtualService exportTo', () => {
  it('"." applies to the proxies of its own namespace only', () => {
    const raws = mesh(inNamespace('shop')(vs('shop-only', 'v2', ['.'])));
    expect(subsetOf(seenFrom(raws, 'shop'))).toBe('v2');
    expect(seenFrom(raws, 'default')?.routes).toBeUndefined();
    expect(seenFrom(raws, 'other')?.routes).toBeUndefined();
  });

  it('a namespace name applies there, and not in its own namespace unless "." is listed', () => {
    const raws = mesh(vs('for-ops', 'v2', ['ops']));
    expect(subsetOf(seenFrom(raws, 'ops'))).toBe('v2');
    expect(seenFrom(raws, 'default')?.routes).toBeUndefined();
    const both = mesh(vs('for-ops', 'v2', ['ops', '.']));
    expect(subsetOf(seenFrom(both, 'default'))).toBe('v2');
  });

  it('"~" applies nowhere; "*" (the default) everywhere', () => {
    expect(seenFrom(mesh(vs('hidden', 'v2', ['~'])), 'default')?.routes).toBeUndefined();
    expect(subsetOf(seenFrom(mesh(vs('all', 'v2', ['*'])), 'anywhere'))).toBe('v2');
  });

  it('one exported to a namespace alone wins there over an older one exported everywhere', () => {
    const raws = mesh(
      createdAt('2026-01-01T00:00:00Z')(vs('public', 'v1')),
      createdAt('2026-06-01T00:00:00Z')(inNamespace('shop')(vs('shop-canary', 'v2', ['.']))),
    );
    const shop = seenFrom(raws, 'shop');
    expect(subsetOf(shop)).toBe('v2');
    expect(shop?.routes?.source).toEqual({
      kind: 'VirtualService',
      namespace: 'shop',
      name: 'shop-canary',
    });
    expect(shop?.routes?.shadowed?.map((s) => s.name)).toEqual(['public']);
    expect(subsetOf(seenFrom(raws, 'default'))).toBe('v1');
    expect(seenFrom(raws, 'default')?.routes?.shadowed).toBeUndefined();
  });
});

describe('DestinationRule exportTo', () => {
  it('gives each namespace its own subsets and policy, down to the endpoints', () => {
    const raws = mesh(
      vs('public', 'chosen'),
      dr('everyone', { version: 'v1' }),
      inNamespace('canary')(dr('canary-only', { version: 'v2' }, ['.'])),
    );
    const chosen = (s: MeshService | undefined): string[] =>
      (s?.endpoints ?? []).filter((e) => e.subsets?.includes('chosen')).map((e) => e.address);
    expect(chosen(seenFrom(raws, 'canary'))).toEqual(['10.0.0.2']);
    expect(seenFrom(raws, 'canary')?.policy?.source).toEqual({
      namespace: 'canary',
      name: 'canary-only',
    });
    expect(chosen(seenFrom(raws, 'default'))).toEqual(['10.0.0.1']);
  });
});

describe("a DestinationRule's lookup: the proxy's namespace, the Service's, the root", () => {
  const policyOf = (s: MeshService | undefined): string | undefined =>
    s?.policy === undefined ? undefined : `${s.policy.source.namespace}/${s.policy.source.name}`;
  const older = createdAt('2026-01-01T00:00:00Z');
  const newer = createdAt('2026-06-01T00:00:00Z');

  it("a rule of the proxy's namespace wins there over an older one of the Service's, which the others use", () => {
    const raws = mesh(
      older(dr('in-service-ns', { version: 'v1' })),
      newer(inNamespace('shop')(dr('in-client-ns', { version: 'v2' }))),
    );
    expect(policyOf(seenFrom(raws, 'shop'))).toBe('shop/in-client-ns');
    expect(seenFrom(raws, 'shop')?.policy?.shadowed).toEqual([
      {
        namespace: 'default',
        name: 'in-service-ns',
        reason:
          "DestinationRule shop/in-client-ns comes first in the lookup: namespace shop is read before default (the proxy's namespace, then the Service's, then the root namespace)",
      },
    ]);
    expect(policyOf(seenFrom(raws, 'default'))).toBe('default/in-service-ns');
    expect(policyOf(seenFrom(raws, 'other'))).toBe('default/in-service-ns');
    // Its subsets too, down to the endpoints that shop's proxies send to.
    const chosen = (s: MeshService | undefined): string[] =>
      (s?.endpoints ?? []).filter((e) => e.subsets?.includes('chosen')).map((e) => e.address);
    expect(chosen(seenFrom(raws, 'shop'))).toEqual(['10.0.0.2']);
    expect(chosen(seenFrom(raws, 'other'))).toEqual(['10.0.0.1']);
  });

  it("a rule of the Service's namespace wins over an older one of the root namespace, used where there is no other", () => {
    const root = older(inNamespace('mooring-system')(dr('mesh-wide', { version: 'v1' })));
    expect(policyOf(seenFrom(mesh(root), 'shop'))).toBe('mooring-system/mesh-wide');
    const both = mesh(root, newer(dr('own', { version: 'v2' })));
    expect(policyOf(seenFrom(both, 'shop'))).toBe('default/own');
    expect(policyOf(seenFrom(both, 'mooring-system'))).toBe('mooring-system/mesh-wide');
  });

  it('a rule of any other namespace, even exported everywhere, is for its own proxies alone', () => {
    const raws = mesh(older(inNamespace('ops')(dr('ops-view', { version: 'v2' }))));
    expect(policyOf(seenFrom(raws, 'ops'))).toBe('ops/ops-view');
    expect(seenFrom(raws, 'shop')?.policy).toBeUndefined();
    expect(seenFrom(raws, 'default')?.policy).toBeUndefined();
    // Exported to shop by name: still not on shop's lookup path (as in Istio).
    const named = mesh(older(inNamespace('ops')(dr('ops-view', { version: 'v2' }, ['shop']))));
    expect(seenFrom(named, 'shop')?.policy).toBeUndefined();
  });

  it('merges the rules of one namespace exported alike: subsets added, the oldest name and host-wide policy kept', () => {
    const withPolicy = (raw: Raw, policy: object, subsets: object[]): Raw => ({
      ...raw,
      spec: { ...(raw.spec as object), trafficPolicy: policy, subsets },
    });
    const raws = mesh(
      older(
        withPolicy(dr('first', {}), { loadBalancer: { simple: 'ROUND_ROBIN' } }, [
          { name: 'v1', labels: { version: 'v1' } },
        ]),
      ),
      newer(
        withPolicy(dr('second', {}), { loadBalancer: { simple: 'RANDOM' } }, [
          { name: 'v1', labels: { version: 'v2' } },
          { name: 'v2', labels: { version: 'v2' } },
        ]),
      ),
      newer(inNamespace('default')(dr('private', { version: 'v2' }, ['.']))),
    );
    const policy = seenFrom(raws, 'shop')?.policy;
    expect(policyOf(seenFrom(raws, 'shop'))).toBe('default/first');
    expect(policy?.merged).toEqual([{ namespace: 'default', name: 'second' }]);
    expect(policy?.subsets?.map((x) => x.name)).toEqual(['v1', 'v2']);
    expect(policy?.trafficPolicy).toMatchObject({ loadBalancer: 'ROUND_ROBIN' });
    // The younger rule's v1 is dropped: v1 keeps the first rule's labels.
    const inSubset = (name: string): string[] =>
      (seenFrom(raws, 'shop')?.endpoints ?? [])
        .filter((e) => e.subsets?.includes(name))
        .map((e) => e.address);
    expect(inSubset('v1')).toEqual(['10.0.0.1']);
    expect(inSubset('v2')).toEqual(['10.0.0.2']);
    // Exported otherwise: not merged, shadowed (for the proxies of its namespace it comes after).
    expect(seenFrom(raws, 'default')?.policy?.shadowed).toEqual([
      {
        namespace: 'default',
        name: 'private',
        reason:
          'DestinationRule default/first is older and exported otherwise: only the rules of its namespace exported alike are merged into it',
      },
    ]);
    expect(seenFrom(raws, 'shop')?.policy?.shadowed).toBeUndefined();
  });

  it("a rule of the Service's namespace exported away from the proxy's is not used there", () => {
    const raws = mesh(dr('private', { version: 'v1' }, ['.']));
    expect(policyOf(seenFrom(raws, 'default'))).toBe('default/private');
    expect(seenFrom(raws, 'shop')?.policy).toBeUndefined();
  });
});

describe('the model: a view per namespace only where it differs', () => {
  it('keeps one view when no exportTo names anyone, and sends a change of a view as a change', () => {
    const model = modelOf(mesh(vs('public', 'v1')));
    expect(model.service('default/reviews')?.views).toBeUndefined();
    const since = model.version;
    const local = validateMeshObject(inNamespace('shop')(vs('shop-only', 'v2', ['.'])));
    if (local.status !== 'valid') throw new Error('invalid');
    model.upsert(local.object);
    model.commit();
    expect([...(model.service('default/reviews')?.views?.keys() ?? [])]).toEqual(['shop']);
    const forShop = model.changesSince(since, 'shop').services;
    expect(forShop.map((b) => subsetOf(b.service))).toEqual(['v2']);
    expect(JSON.parse(forShop[0]?.json ?? '{}')).toEqual(forShop[0]?.service);
    // The others see no difference in content (the version moved: they get it again).
    expect(model.changesSince(since, 'default').services.map((b) => subsetOf(b.service))).toEqual([
      'v1',
    ]);
  });
});

describe('exportTo: bad input names its field', () => {
  const problems = (exportTo: unknown): string[] => {
    const v = validateMeshObject({
      ...vs('r', 'v1'),
      spec: { ...(vs('r', 'v1').spec as object), exportTo },
    });
    return v.status === 'invalid' ? v.problems.map((p) => `${p.field}: ${p.message}`) : [];
  };

  it.each<[unknown, string]>([
    [['Shop'], 'spec.exportTo[0]: "Shop" is not "*", ".", "~" or a namespace name'],
    [['~', 'shop'], 'spec.exportTo: "~" (exported nowhere) cannot be listed with other entries'],
  ])('%j', (exportTo, problem) => {
    expect(problems(exportTo)).toEqual([problem]);
  });
});

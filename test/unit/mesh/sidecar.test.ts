// Istio's Sidecar for a namespace: the reader's refusals, which services the namespace's proxies
// are given (its own Sidecar over the root namespace's), what a change tells a connected proxy
// (every service it now sees, the keys of those it no longer sees), and the outbound traffic
// policy in the proxies' scope.
import { validateMeshObject } from '../../../src/mesh';
import { lineText, ProxySync } from '../../../src/mesh/proxy-sync';
import {
  meshed,
  modelOf,
  pod,
  problemsOf,
  service,
  valid,
  withLabels,
  withPort,
  type Raw,
} from '../../fixtures/mesh-objects';

const ROOT = 'mooring-system';

const sidecar = (name: string, spec: Raw, namespace = 'shop', created?: string): Raw => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'Sidecar',
  metadata: { name, namespace, ...(created === undefined ? {} : { creationTimestamp: created }) },
  spec,
});

const inNs =
  (namespace: string) =>
  (o: Raw): Raw => ({ ...o, metadata: { ...(o.metadata as Raw), namespace } });

const serviceEntry = (host: string, namespace: string): Raw => ({
  apiVersion: 'networking.istio.io/v1',
  kind: 'ServiceEntry',
  metadata: { name: host.split('.')[0], namespace },
  spec: { hosts: [host], ports: [{ number: 443, name: 'https', protocol: 'HTTPS' }] },
});

const mesh = (...extra: Raw[]): Raw[] => [
  service('cart', inNs('shop'), withPort(80, 'http')),
  service('pay', inNs('payments'), withPort(80, 'http')),
  service('telemetry', inNs(ROOT), withPort(80, 'http')),
  serviceEntry('api.example.com', 'egress'),
  pod('web-1', meshed(), inNs('shop')),
  pod('bank-1', meshed(), inNs('payments')),
  ...extra,
];

const keys = (model: ReturnType<typeof modelOf>, ns: string): string[] =>
  model.visibleServices(ns).map((b) => b.key);

describe('reading Sidecar', () => {
  it('refuses what Mooring does not do, naming the field', () => {
    expect(
      problemsOf(
        sidecar('s', {
          workloadSelector: { labels: {} },
          ingress: [{ port: { number: 8080 } }],
          egress: [
            { port: { number: 80, protocol: 'HTTP' }, hosts: ['./*'] },
            { hosts: ['reviews', 'shop/*', '*/a b'] },
            {},
          ],
          outboundTrafficPolicy: { mode: 'DENY_ALL' },
        }),
      ),
    ).toEqual([
      'spec.workloadSelector.labels: is required: the labels of the Pods it applies to',
      'spec.ingress: is not supported by Mooring yet: the proxy takes every inbound port',
      'spec.egress[0].port: is not supported by Mooring yet: the egress listener takes every port',
      'spec.egress[1].hosts[0]: "reviews" is not "namespace/host" (namespace "*", "." , "~" or a name; host "*", "*.suffix" or a DNS name)',
      'spec.egress[1].hosts[2]: "*/a b" is not "namespace/host" (namespace "*", "." , "~" or a name; host "*", "*.suffix" or a DNS name)',
      'spec.egress[2].hosts: is required: at least one "namespace/host"',
      'spec.outboundTrafficPolicy.mode: must be ALLOW_ANY or REGISTRY_ONLY, not "DENY_ALL"',
    ]);
  });
});

describe('reading Sidecar, what it ignores', () => {
  it('warns of inboundConnectionPool, and reads the rest', () => {
    const v = validateMeshObject(
      sidecar('s', { inboundConnectionPool: { http: { http1MaxPendingRequests: 10 } } }),
    );
    expect(v).toMatchObject({
      status: 'valid',
      object: { egressHosts: null, outboundTrafficPolicy: null },
      warnings: [
        {
          field: 'spec.inboundConnectionPool',
          message: 'is not supported by Mooring yet: ignored',
        },
      ],
    });
  });
});

describe('what the proxies of a namespace see', () => {
  it('gives them only the services the egress hosts name: own namespace, a namespace, a host', () => {
    const model = modelOf(
      mesh(sidecar('default', { egress: [{ hosts: ['./*', `${ROOT}/*`, '*/api.example.com'] }] })),
    );
    expect(keys(model, 'shop')).toEqual(['api.example.com', `${ROOT}/telemetry`, 'shop/cart']);
    // Another namespace, without a Sidecar, sees everything.
    expect(keys(model, 'payments')).toEqual([
      'api.example.com',
      `${ROOT}/telemetry`,
      'payments/pay',
      'shop/cart',
    ]);
  });

  it("takes the root namespace's Sidecar as every namespace's default, a namespace's own over it", () => {
    const model = modelOf(
      mesh(
        sidecar('mesh-default', { egress: [{ hosts: ['./*'] }] }, ROOT),
        sidecar('shop-own', { egress: [{ hosts: ['payments/*.svc.cluster.local'] }] }),
      ),
    );
    expect(keys(model, 'payments')).toEqual(['payments/pay']);
    expect(keys(model, 'shop')).toEqual(['payments/pay']);
    expect(keys(model, 'egress')).toEqual(['api.example.com']);
  });

  it('tells a connected proxy, at a Sidecar change, the services it now sees and the keys it no longer sees', () => {
    const model = modelOf(mesh());
    const before = model.version;
    model.upsert(valid(sidecar('narrow', { egress: [{ hosts: ['./*'] }] })));
    const commit = model.commit();
    expect(commit?.pods).toEqual(['shop/web-1']);
    const narrowed = model.changesSince(before, 'shop');
    expect(narrowed.services.map((b) => b.key)).toEqual(['shop/cart']);
    expect(narrowed.removed).toEqual(['api.example.com', `${ROOT}/telemetry`, 'payments/pay']);
    // Proxies of other namespaces are told nothing.
    expect(model.changesSince(before, 'payments')).toEqual({ services: [], removed: [] });
    const narrowVersion = model.version;
    model.remove({ kind: 'Sidecar', namespace: 'shop', name: 'narrow' });
    model.commit();
    const widened = model.changesSince(narrowVersion, 'shop');
    expect(widened.services.map((b) => b.key)).toEqual([
      'api.example.com',
      `${ROOT}/telemetry`,
      'payments/pay',
      'shop/cart',
    ]);
    expect(widened.removed).toEqual([]);
  });

  it("puts its outbound traffic policy in the scope of the namespace's proxies", () => {
    const model = modelOf(
      mesh(
        sidecar('locked', { outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } }),
        sidecar('open', { outboundTrafficPolicy: { mode: 'ALLOW_ANY' } }, 'payments'),
      ),
    );
    expect(model.proxyScope('shop/web-1')?.outboundTrafficPolicy).toBe('REGISTRY_ONLY');
    expect(model.proxyScope('payments/bank-1')?.outboundTrafficPolicy).toBe('ALLOW_ANY');
    // A Sidecar without egress hides nothing.
    expect(keys(model, 'shop')).toHaveLength(4);
  });
});

describe('a ServiceEntry host that changes namespace (its oldest entry removed)', () => {
  it('is removed from the proxies that no longer see it, though its exportTo did not change', () => {
    const older = {
      ...serviceEntry('api.example.com', 'shop'),
      metadata: { name: 'older', namespace: 'shop', creationTimestamp: '2026-01-01T00:00:00Z' },
    };
    const younger = {
      ...serviceEntry('api.example.com', 'payments'),
      metadata: {
        name: 'younger',
        namespace: 'payments',
        creationTimestamp: '2026-02-01T00:00:00Z',
      },
    };
    const model = modelOf(mesh(older, younger, sidecar('own', { egress: [{ hosts: ['./*'] }] })));
    expect(keys(model, 'shop')).toContain('api.example.com');
    const before = model.version;
    model.remove({ kind: 'ServiceEntry', namespace: 'shop', name: 'older' });
    model.commit();
    expect(keys(model, 'shop')).not.toContain('api.example.com');
    expect(model.changesSince(before, 'shop').removed).toEqual(['api.example.com']);
  });
});

describe('a Sidecar with a workloadSelector', () => {
  const selecting = (labels: Record<string, string>, hosts: string[], created?: string): Raw =>
    sidecar(
      `for-${Object.values(labels).join('-')}`,
      {
        workloadSelector: { labels },
        egress: [{ hosts }],
        outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' },
      },
      'shop',
      created,
    );
  const web2 = pod('web-2', meshed(), inNs('shop'), withLabels({ role: 'batch', tier: 'edge' }));
  const raws = () =>
    mesh(
      web2,
      sidecar('whole', { egress: [{ hosts: ['./*'] }] }),
      selecting({ tier: 'edge' }, ['payments/*'], '2026-01-01T00:00:00Z'),
      selecting({ role: 'batch' }, ['egress/*'], '2026-02-01T00:00:00Z'),
    );
  const seen = (model: ReturnType<typeof modelOf>, podKey: string): string[] => {
    const sync = new ProxySync(model, podKey, podKey.split('/')[0] as string);
    const line = sync.snapshot();
    return line === null
      ? []
      : (JSON.parse(lineText(line)) as { services: { key: string }[] }).services.map((x) => x.key);
  };

  it("gives the Pods it selects its egress and outbound policy, the oldest first, and the namespace's to the others", () => {
    const model = modelOf(raws());
    expect(seen(model, 'shop/web-2')).toEqual(['payments/pay']);
    expect(model.proxyScope('shop/web-2')?.outboundTrafficPolicy).toBe('REGISTRY_ONLY');
    expect(seen(model, 'shop/web-1')).toEqual(['shop/cart']);
    expect(model.proxyScope('shop/web-1')?.outboundTrafficPolicy).toBeUndefined();
    // Another namespace's Pods are not selected by it.
    expect(seen(model, 'payments/bank-1')).toHaveLength(4);
  });

  it('moves a Pod whose labels change to the Sidecar that now selects it, and tells its proxy what it now sees', () => {
    const model = modelOf(raws());
    const sync = new ProxySync(model, 'shop/web-1', 'shop');
    sync.snapshot();
    model.upsert(valid(pod('web-1', meshed(), inNs('shop'), withLabels({ role: 'batch' }))));
    model.commit();
    const line = sync.delta();
    expect(line).not.toBeNull();
    const delta = JSON.parse(lineText(line as NonNullable<typeof line>)) as {
      services?: { key: string }[];
      removed?: string[];
    };
    expect(delta.services?.map((x) => x.key)).toEqual(['api.example.com']);
    expect(delta.removed).toContain('shop/cart');
  });
});

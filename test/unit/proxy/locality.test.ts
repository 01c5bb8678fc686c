// Locality load balancing in the proxy: the groups an endpoint set is split into for a caller,
// and where requests go as endpoints fail, against Istio's and Envoy's documented behaviour.

import type {
  Endpoint,
  LocalityLbSetting,
  MeshService,
  TrafficPolicy,
} from '../../../src/api/mesh';
import {
  pickByHash,
  pickEndpoint,
  type EndpointSet,
  type UpstreamEndpoint,
} from '../../../src/agent/proxy/core/endpoints';
import { MeshIndex } from '../../../src/agent/proxy/core/mesh-index';
import { endpoint, meshState, port, proxyScope, seeded, service } from '../../fixtures/mesh';

const OUTLIER = {
  consecutive5xxErrors: 5,
  consecutiveGatewayErrors: 0,
  intervalMs: 10_000,
  baseEjectionTimeMs: 30_000,
  maxEjectionPercent: 100,
};

const at =
  (locality: string) =>
  (e: Endpoint): Endpoint => ({ ...e, locality });

/** Endpoints 10.0.<i>.<j>: one per locality listed (several when repeated). */
function setFor(
  caller: string | undefined,
  localities: string[],
  trafficPolicy?: TrafficPolicy,
  mods: ((s: MeshService) => MeshService)[] = [],
): { set: EndpointSet; byAddress: Map<string, UpstreamEndpoint> } {
  const eps = localities.map((l, i) => endpoint(`10.0.0.${i + 1}`, { 80: 8080 }, at(l)));
  const policy =
    trafficPolicy === undefined
      ? {}
      : { policy: { source: { namespace: 'default', name: 'dr' }, trafficPolicy } };
  const svc = service('web', '10.96.0.1', [port(80)], eps, (s) => ({ ...s, ...policy }), ...mods);
  const scope = proxyScope('client', (p) =>
    caller === undefined ? p : { ...p, locality: caller },
  );
  const index = new MeshIndex(meshState(scope, svc));
  const set = index.endpointSet(svc, 80);
  return { set, byAddress: new Map(set.endpoints.map((e) => [e.address, e])) };
}

function share(set: EndpointSet, n = 4000, now = 0): Map<string, number> {
  const random = seeded(7);
  const counts = new Map<string, number>();
  for (let i = 0; i < n; i++) {
    const e = pickEndpoint(set, 'LEAST_REQUEST', random, now) as UpstreamEndpoint;
    counts.set(e.address, (counts.get(e.address) ?? 0) + 1 / n);
  }
  return counts;
}

const eject = (e: UpstreamEndpoint | undefined): void => {
  (e as UpstreamEndpoint).ejectedUntil = 60_000;
};

const LOCALITIES = ['r1/z1/s1', 'r1/z1/s2', 'r1/z2/s1', 'r2/z3/s1', 'r3/z4/s1'];

describe('locality failover (a DestinationRule with outlierDetection)', () => {
  it('sends everything to the caller’s own subzone while it is healthy', () => {
    const { set } = setFor('r1/z1/s1', LOCALITIES, { outlierDetection: OUTLIER });
    expect(set.groups?.kind).toBe('priority');
    expect(set.groups?.localities).toEqual([
      'r1/z1/s1',
      'r1/z1/s2',
      'r1/z2/s1',
      'r2/z3/s1,r3/z4/s1',
    ]);
    expect(share(set).get('10.0.0.1')).toBeCloseTo(1, 5);
  });

  it('fails over level by level, nearest first: subzone, zone, region, then the rest', () => {
    const { set, byAddress } = setFor('r1/z1/s1', LOCALITIES, { outlierDetection: OUTLIER });
    eject(byAddress.get('10.0.0.1'));
    expect(share(set).get('10.0.0.2')).toBeCloseTo(1, 5);
    eject(byAddress.get('10.0.0.2'));
    expect(share(set).get('10.0.0.3')).toBeCloseTo(1, 5);
    eject(byAddress.get('10.0.0.3'));
    const rest = share(set);
    expect((rest.get('10.0.0.4') ?? 0) + (rest.get('10.0.0.5') ?? 0)).toBeCloseTo(1, 5);
    // Once the ejection is over, back to the nearest.
    expect(share(set, 1000, 60_000).get('10.0.0.1')).toBeCloseTo(1, 5);
  });

  it('spills part of a level’s traffic when under 1/1.4 of it is healthy (Envoy’s overprovisioning)', () => {
    // Four endpoints in the caller's zone, two of them ejected: 1.4 × 50% = 70% stays there,
    // where an even spread over the healthy ones would keep 40%.
    const { set, byAddress } = setFor(
      'r1/z1/',
      ['r1/z1/', 'r1/z1/', 'r1/z1/', 'r1/z1/', 'r1/z2/', 'r1/z2/', 'r1/z2/'],
      { outlierDetection: OUTLIER },
    );
    eject(byAddress.get('10.0.0.1'));
    eject(byAddress.get('10.0.0.2'));
    const counts = share(set, 20_000);
    const local = (counts.get('10.0.0.3') ?? 0) + (counts.get('10.0.0.4') ?? 0);
    expect(local).toBeCloseTo(0.7, 1);
    const remote = ['10.0.0.5', '10.0.0.6', '10.0.0.7'].map((a) => counts.get(a) ?? 0);
    expect(remote.reduce((a, b) => a + b)).toBeCloseTo(0.3, 1);
    expect(counts.get('10.0.0.1')).toBeUndefined();
  });

  it('fails over to the region `failover` names before any other region', () => {
    const setting: LocalityLbSetting = { failover: [{ from: 'r1', to: 'r3' }] };
    const { set, byAddress } = setFor('r1/z1/s1', ['r1/z1/s1', 'r2/z3/s1', 'r3/z4/s1'], {
      outlierDetection: OUTLIER,
      localityLb: setting,
    });
    expect(set.groups?.localities).toEqual(['r1/z1/s1', 'r3/z4/s1', 'r2/z3/s1']);
    eject(byAddress.get('10.0.0.1'));
    expect(share(set).get('10.0.0.3')).toBeCloseTo(1, 5);
  });

  it('failoverPriority orders by the topology labels named, in order', () => {
    // Zone only: the same zone in another region counts as near (the region is not named).
    const setting: LocalityLbSetting = { failoverPriority: ['topology.kubernetes.io/zone'] };
    const { set } = setFor('r1/z1/s1', ['r2/z1/s9', 'r1/z2/s1'], {
      outlierDetection: OUTLIER,
      localityLb: setting,
    });
    expect(set.groups?.localities).toEqual(['r2/z1/s9', 'r1/z2/s1']);
    expect(share(set).get('10.0.0.1')).toBeCloseTo(1, 5);
  });

  it('does nothing without outlierDetection, when disabled, or for a caller of unknown locality', () => {
    expect(setFor('r1/z1/s1', LOCALITIES).set.groups).toBeUndefined();
    expect(
      setFor('r1/z1/s1', LOCALITIES, { outlierDetection: OUTLIER, localityLb: { enabled: false } })
        .set.groups,
    ).toBeUndefined();
    expect(setFor(undefined, LOCALITIES, { outlierDetection: OUTLIER }).set.groups).toBeUndefined();
    const even = share(setFor('r1/z1/s1', LOCALITIES).set);
    for (const a of ['10.0.0.1', '10.0.0.5']) expect(even.get(a)).toBeCloseTo(0.2, 1);
  });

  it('a retry goes to the nearest level with an endpoint it has not tried', () => {
    const { set, byAddress } = setFor('r1/z1/', ['r1/z1/', 'r1/z2/', 'r2/z1/'], {
      outlierDetection: OUTLIER,
    });
    const tried = new Set([byAddress.get('10.0.0.1') as UpstreamEndpoint]);
    for (let i = 0; i < 50; i++) {
      expect(pickEndpoint(set, 'LEAST_REQUEST', Math.random, 0, tried)?.address).toBe('10.0.0.2');
    }
  });

  it('consistent hashing hashes within the chosen level', () => {
    const { set } = setFor('r1/z1/', ['r1/z1/', 'r1/z1/', 'r2/z1/', 'r2/z1/'], {
      outlierDetection: OUTLIER,
      consistentHash: { header: 'x-user' },
    });
    for (let h = 0; h < 200; h++) {
      const e = pickByHash(set, h * 0x01000193, Math.random, 0);
      expect(['10.0.0.1', '10.0.0.2']).toContain(e?.address);
    }
  });

  it('with every endpoint ejected everywhere, balances over the whole set', () => {
    const { set, byAddress } = setFor('r1/z1/', ['r1/z1/', 'r2/z1/'], {
      outlierDetection: OUTLIER,
    });
    for (const e of byAddress.values()) eject(e);
    const counts = share(set);
    expect(counts.get('10.0.0.1')).toBeCloseTo(0.5, 1);
    expect(counts.get('10.0.0.2')).toBeCloseTo(0.5, 1);
  });
});

describe("a Service's trafficDistribution PreferClose", () => {
  const preferClose = (s: MeshService): MeshService => ({ ...s, preferClose: true });

  it('keeps traffic in the caller’s zone, without any DestinationRule, and leaves it when none is ready there', () => {
    const { set, byAddress } = setFor('r1/z1/', ['r1/z1/', 'r1/z2/', 'r1/z2/'], undefined, [
      preferClose,
    ]);
    expect(share(set).get('10.0.0.1')).toBeCloseTo(1, 5);
    (byAddress.get('10.0.0.1') as UpstreamEndpoint).ready = false;
    const counts = share(set);
    expect((counts.get('10.0.0.2') ?? 0) + (counts.get('10.0.0.3') ?? 0)).toBeCloseTo(1, 5);
  });
});

describe('locality weighted distribution (`distribute`)', () => {
  const distribute: LocalityLbSetting = {
    distribute: [
      { from: 'r9/*', to: { 'r1/*': 100 } },
      { from: 'r1/z1/*', to: { 'r1/z1/*': 70, 'r1/z2/*': 20, 'r3/*': 10 } },
    ],
  };

  it('shares traffic by weight among localities, a pattern’s weight split among the localities it names', () => {
    const { set } = setFor(
      'r1/z1/s1',
      ['r1/z1/s1', 'r1/z2/s1', 'r2/z3/s1', 'r3/z4/s1', 'r3/z5/s1'],
      { localityLb: distribute },
    );
    expect(set.groups?.kind).toBe('weighted');
    const counts = share(set, 40_000);
    expect(counts.get('10.0.0.1')).toBeCloseTo(0.7, 1);
    expect(counts.get('10.0.0.2')).toBeCloseTo(0.2, 1);
    // r2 is named by no pattern: it gets nothing; r3's 10% is split between its two zones.
    expect(counts.get('10.0.0.3')).toBeUndefined();
    expect(counts.get('10.0.0.4')).toBeCloseTo(0.05, 1);
    expect(counts.get('10.0.0.5')).toBeCloseTo(0.05, 1);
  });

  it('applies the first entry whose `from` takes the caller; none: plain balancing', () => {
    const other = setFor('r2/z1/s1', ['r1/z1/s1', 'r2/z1/s1'], { localityLb: distribute });
    expect(other.set.groups).toBeUndefined();
  });

  it('scales a locality’s share by its healthy part', () => {
    const { set, byAddress } = setFor('r1/z1/s1', ['r1/z1/s1', 'r1/z2/s1', 'r3/z4/s1'], {
      localityLb: distribute,
    });
    eject(byAddress.get('10.0.0.1'));
    const counts = share(set, 20_000);
    expect(counts.get('10.0.0.1')).toBeUndefined();
    expect(counts.get('10.0.0.2')).toBeCloseTo(20 / 30, 1);
    expect(counts.get('10.0.0.3')).toBeCloseTo(10 / 30, 1);
  });
});

// The edges (metric labels) a sidecar's HTTP handlers count requests into: the last one is found
// again by the parts of its key, without its text; any other part gives its own edge.

import type { UpstreamEndpoint } from '../../../src/agent/proxy/core/endpoints';
import { encodeWorkload, peerHeaderValue } from '../../../src/agent/proxy/core/peer';
import {
  InboundHttp,
  OutboundHttp,
  type HandlerContext,
  type InboundInfo,
} from '../../../src/agent/proxy/http-handlers';
import { IstioMetrics } from '../../../src/agent/proxy/metrics';
import type { MeshIndex } from '../../../src/agent/proxy/core/mesh-index';
import type { MeshService } from '../../../src/api/mesh';

/** What the handlers' edges read of their context: the configuration's version, who we are. */
function context(): { ctx: HandlerContext; setVersion(v: number): void } {
  let version = 1;
  const ctx = {
    index: () =>
      ({
        version,
        state: { services: new Map(), proxy: { pod: { name: 'server-0', namespace: 'default' } } },
      }) as unknown as MeshIndex,
    ownWorkload: () => ({ name: 'server', namespace: 'default', app: 'server', version: 'v1' }),
    ownIdentity: () => 'spiffe://cluster.local/ns/default/sa/server',
    metrics: new IstioMetrics(),
  } as unknown as HandlerContext;
  return {
    ctx,
    setVersion: (v) => {
      version = v;
    },
  };
}

const peer = (name: string): string =>
  peerHeaderValue(
    encodeWorkload({ name, namespace: 'default', app: name, version: 'v1' }),
    'server.default.svc.cluster.local',
  );

const info = (peerId: string | null, port = 8080): InboundInfo => ({
  app: { key: `127.0.0.1:${port}`, address: '127.0.0.1', port } as unknown as UpstreamEndpoint,
  peer: peerId,
  source: '127.0.0.1',
});

describe('InboundHttp edges', () => {
  const A = 'spiffe://cluster.local/ns/default/sa/a';
  const B = 'spiffe://cluster.local/ns/default/sa/b';

  it('finds the same edge for equal parts, even as strings made anew for each request', () => {
    const { ctx } = context();
    const h = new InboundHttp(ctx);
    const first = h.edge(info(A), peer('a'), 'server', 'http');
    // A new connection's facts and a new header string with the same text.
    const again = h.edge(info(`${A}`.slice(0)), `${peer('a')}`, 'server', 'http');
    expect(again).toBe(first);
    expect(first.labels.source.workload).toBe('a');
  });

  it('gives another edge for another peer, port, protocol or metadata, and the first back after', () => {
    const { ctx } = context();
    const h = new InboundHttp(ctx);
    const first = h.edge(info(A), peer('a'), null, 'http');
    // Each differs from the edge found just before it in one part only.
    const variants: [InboundInfo, string | null, 'http' | 'grpc'][] = [
      [info(B), peer('a'), 'http'],
      [info(A), peer('c'), 'http'],
      [info(A, 9090), peer('a'), 'http'],
      [info(A), peer('a'), 'grpc'],
      [info(A), null, 'http'],
    ];
    const others = variants.map(([i, p, protocol]) => {
      expect(h.edge(info(A), peer('a'), null, 'http')).toBe(first);
      return h.edge(i, p, null, protocol);
    });
    for (const e of others) expect(e).not.toBe(first);
    expect(new Set(others).size).toBe(others.length);
    expect(others[0]?.labels.source.principal).toBe(B);
    expect(others[1]?.labels.source.workload).toBe('c');
    expect(others[3]?.labels.protocol).toBe('grpc');
    expect(others[4]?.labels.source.workload).toBe('unknown');
    // Found again by its key after the last edge has changed.
    expect(h.edge(info(A), peer('a'), null, 'http')).toBe(first);
  });

  it('tells hosts apart only for a caller without metadata', () => {
    const { ctx } = context();
    const h = new InboundHttp(ctx);
    const plain = h.edge(info(null), null, 'one.default.svc.cluster.local', 'http');
    expect(h.edge(info(null), null, 'two.default.svc.cluster.local', 'http')).not.toBe(plain);
    const meshed = h.edge(info(A), peer('a'), 'one', 'http');
    expect(h.edge(info(A), peer('a'), 'two', 'http')).toBe(meshed);
  });

  it('makes the edges anew for a new configuration', () => {
    const { ctx, setVersion } = context();
    const h = new InboundHttp(ctx);
    const before = h.edge(info(A), peer('a'), null, 'http');
    setVersion(2);
    const after = h.edge(info(A), peer('a'), null, 'http');
    expect(after).not.toBe(before);
    expect(h.edge(info(A), peer('a'), null, 'http')).toBe(after);
  });
});

describe('OutboundHttp edges', () => {
  const service = (name: string): MeshService =>
    ({
      key: `default/${name}`,
      hostname: `${name}.default.svc.cluster.local`,
      name,
      namespace: 'default',
    }) as unknown as MeshService;
  const endpoint = (ip: string, identity: string | null): UpstreamEndpoint =>
    ({
      key: `${ip}:8080`,
      address: ip,
      port: 8080,
      identity,
      workload: { name: 'server', namespace: 'default', app: 'server', version: 'v1' },
    }) as unknown as UpstreamEndpoint;

  it('keeps one edge per endpoint, service and protocol, found again by its parts', () => {
    const { ctx, setVersion } = context();
    const h = new OutboundHttp(ctx);
    const svc = service('server');
    const e1 = endpoint('10.0.0.1', 'spiffe://cluster.local/ns/default/sa/server');
    const e2 = endpoint('10.0.0.2', null);
    const first = h.edge(e1, svc);
    expect(h.edge(e1, svc)).toBe(first);
    const second = h.edge(e2, svc);
    expect(second).not.toBe(first);
    expect(second.labels.security).toBe('none');
    expect(h.edge(e1, svc, 'grpc')).not.toBe(first);
    expect(h.edge(e1, service('other')).labels.service).toBe('other.default.svc.cluster.local');
    expect(h.edge(null, svc).labels.destination.workload).toBe('unknown');
    expect(h.edge(e1, svc)).toBe(first);
    setVersion(7);
    expect(h.edge(e1, svc)).not.toBe(first);
  });
});

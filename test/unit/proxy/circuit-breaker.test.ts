// The connection circuit breaker of a cluster on tables: the limits a DestinationRule's
// connectionPool sets (subset-level winning), pending admission, the one-connection-per-endpoint
// exception, strict TCP, waiters served first-in first-out per endpoint, and room made by a
// closed connection or a raised limit.
import type { MeshService } from '../../../src/api/mesh';
import {
  CircuitBreaker,
  clusterKey,
  NO_LIMIT,
  poolLimits,
  type Waiter,
} from '../../../src/agent/proxy/core/circuit-breaker';
import { effectivePolicy } from '../../../src/agent/proxy/core/mesh-index';
import { endpoint, port, service } from '../../fixtures/mesh';

const breaker = (maxConnections: number, maxPending: number): CircuitBreaker<string> =>
  new CircuitBreaker<string>('default/web|80|', { maxConnections, maxPending });

/** A waiter that records what it was woken with; woken with null it opens a connection. */
function waiter(
  b: CircuitBreaker<string>,
  key: string,
  log: string[],
  name: string,
): Waiter<string> {
  return {
    key,
    wake: (conn) => {
      log.push(`${name}:${conn ?? 'connect'}`);
      if (conn === null) b.connectionOpened();
    },
  };
}

describe('the limits a connectionPool sets', () => {
  it.each<[string, Parameters<typeof poolLimits>[0], ReturnType<typeof poolLimits>]>([
    ['none: no breaker at all (nothing counted)', undefined, null],
    [
      'only other fields: no breaker',
      { tcp: { connectTimeoutMs: 5 }, http: { maxRetries: 1 } },
      null,
    ],
    [
      'maxConnections alone',
      { tcp: { maxConnections: 3 } },
      { maxConnections: 3, maxPending: NO_LIMIT },
    ],
    [
      'http1MaxPendingRequests alone',
      { http: { http1MaxPendingRequests: 0 } },
      { maxConnections: NO_LIMIT, maxPending: 0 },
    ],
    [
      'both',
      { tcp: { maxConnections: 1 }, http: { http1MaxPendingRequests: 1 } },
      { maxConnections: 1, maxPending: 1 },
    ],
  ])('%s', (_name, pool, want) => {
    expect(poolLimits(pool)).toEqual(want);
  });

  it("takes a subset's connectionPool over the host's, and the host's for other subsets", () => {
    const svc: MeshService = {
      ...service('web', '10.96.0.1', [port(80, 'http')], [endpoint('10.0.0.1', { 80: 8080 })]),
      policy: {
        source: { namespace: 'default', name: 'web' },
        trafficPolicy: { connectionPool: { tcp: { maxConnections: 10 } } },
        subsets: [
          {
            name: 'v1',
            trafficPolicy: { connectionPool: { http: { http1MaxPendingRequests: 2 } } },
          },
          { name: 'v2' },
        ],
      },
    };
    expect(poolLimits(effectivePolicy(svc, 'v1').connectionPool)).toEqual({
      maxConnections: NO_LIMIT,
      maxPending: 2,
    });
    expect(poolLimits(effectivePolicy(svc, 'v2').connectionPool)).toEqual({
      maxConnections: 10,
      maxPending: NO_LIMIT,
    });
    expect(poolLimits(effectivePolicy(svc, undefined).connectionPool)?.maxConnections).toBe(10);
    expect(clusterKey(svc.key, 80, 'v1')).not.toBe(clusterKey(svc.key, 80, undefined));
  });

  it('takes a port-level setting over its level, and a subset (with its own ports) over the host', () => {
    const svc: MeshService = {
      ...service('web', '10.96.0.1', [port(80, 'http'), port(81, 'http')], []),
      policy: {
        source: { namespace: 'default', name: 'web' },
        trafficPolicy: {
          loadBalancer: 'ROUND_ROBIN',
          connectionPool: { tcp: { maxConnections: 10 } },
          portLevelSettings: [{ port: 81, consistentHash: { header: 'x-user' } }],
        },
        subsets: [
          {
            name: 'v1',
            trafficPolicy: {
              portLevelSettings: [{ port: 80, connectionPool: { tcp: { maxConnections: 3 } } }],
            },
          },
        ],
      },
    };
    const at = (subset: string | undefined, p: number) => {
      const e = effectivePolicy(svc, subset, p);
      return [e.loadBalancer, e.consistentHash, e.connectionPool?.tcp?.maxConnections];
    };
    expect(at(undefined, 80)).toEqual(['ROUND_ROBIN', undefined, 10]);
    expect(at(undefined, 81)).toEqual([undefined, { header: 'x-user' }, 10]);
    expect(at('v1', 80)).toEqual(['ROUND_ROBIN', undefined, 3]);
    expect(at('v1', 81)).toEqual([undefined, { header: 'x-user' }, 10]);
  });
});

describe('pending requests and connections', () => {
  it('admits requests to wait up to http1MaxPendingRequests, and one more once one left', () => {
    const b = breaker(1, 2);
    expect([b.admit(), b.admit(), b.admit()]).toEqual([true, true, false]);
    expect(b.pending).toBe(2);
    b.leave();
    expect(b.admit()).toBe(true);
    expect(b.admit()).toBe(false);
  });

  it('refuses every request that finds no ready connection with http1MaxPendingRequests 0', () => {
    expect(breaker(NO_LIMIT, 0).admit()).toBe(false);
  });

  it.each<[string, number, number, number, boolean]>([
    ['below the limit', 2, 1, 1, true],
    ['at the limit, the endpoint has connections', 2, 2, 1, false],
    ['at the limit, the endpoint has none (it still gets one, as in Envoy)', 2, 2, 0, true],
    ['over the limit (lowered), the endpoint has none', 1, 3, 0, true],
  ])('HTTP may open a connection %s', (_name, max, open, endpointOpen, want) => {
    const b = breaker(max, NO_LIMIT);
    for (let i = 0; i < open; i++) b.connectionOpened();
    expect(b.mayConnect(endpointOpen)).toBe(want);
  });

  it('refuses an opaque TCP connection beyond maxConnections, with no exception', () => {
    const b = breaker(1, NO_LIMIT);
    expect(b.mayConnectTcp()).toBe(true);
    b.connectionOpened();
    expect(b.mayConnectTcp()).toBe(false);
    b.connectionClosed();
    expect(b.mayConnectTcp()).toBe(true);
  });

  it('never counts below zero', () => {
    const b = breaker(1, 1);
    b.leave();
    b.connectionClosed();
    expect([b.pending, b.connections]).toEqual([0, 0]);
  });
});

describe('waiting requests', () => {
  it('hands a freed connection to the first request waiting for that endpoint', () => {
    const b = breaker(1, NO_LIMIT);
    const log: string[] = [];
    b.wait(waiter(b, 'a', log, 'first-a'));
    b.wait(waiter(b, 'b', log, 'first-b'));
    b.wait(waiter(b, 'a', log, 'second-a'));
    expect(b.handOver('a', 'conn-a')).toBe(true);
    expect(b.handOver('a', 'conn-a')).toBe(true);
    expect(b.handOver('a', 'conn-a')).toBe(false);
    expect(log).toEqual(['first-a:conn-a', 'second-a:conn-a']);
    expect(b.waiters()).toBe(1);
  });

  it('lets the first waiting request open a connection when one closes', () => {
    const b = breaker(1, NO_LIMIT);
    const log: string[] = [];
    b.connectionOpened();
    b.wait(waiter(b, 'a', log, 'one'));
    b.wait(waiter(b, 'b', log, 'two'));
    b.pump();
    expect(log).toEqual([]);
    b.connectionClosed();
    b.pump();
    expect(log).toEqual(['one:connect']);
    expect(b.connections).toBe(1);
  });

  it('lets a request waiting for an endpoint left with no connection open one, over the limit', () => {
    const b = breaker(1, NO_LIMIT);
    const log: string[] = [];
    b.connectionOpened();
    b.connectionOpened();
    b.wait(waiter(b, 'a', log, 'for-a'));
    b.wait(waiter(b, 'b', log, 'for-b'));
    // b's one connection closed; a's (over the limit) is still open.
    b.connectionClosed();
    b.pump('b');
    expect(log).toEqual(['for-b:connect']);
    b.pump();
    expect(log).toEqual(['for-b:connect']);
  });

  it('lets as many waiting requests open connections as a raised limit allows', () => {
    const b = breaker(1, NO_LIMIT);
    const log: string[] = [];
    b.connectionOpened();
    for (const n of ['one', 'two', 'three', 'four']) b.wait(waiter(b, 'a', log, n));
    b.limits = { maxConnections: 3, maxPending: NO_LIMIT };
    b.pump();
    expect(log).toEqual(['one:connect', 'two:connect']);
    b.limits = { maxConnections: NO_LIMIT, maxPending: NO_LIMIT };
    b.pump();
    expect(log).toEqual(['one:connect', 'two:connect', 'three:connect', 'four:connect']);
    expect(b.waiters()).toBe(0);
  });

  it('forgets a request that gave up waiting', () => {
    const b = breaker(1, NO_LIMIT);
    const log: string[] = [];
    const w = waiter(b, 'a', log, 'gone');
    b.wait(w);
    b.cancel(w);
    expect(b.handOver('a', 'conn')).toBe(false);
    expect(log).toEqual([]);
  });

  it('pools the connections of a cluster apart, by cluster and endpoint', () => {
    expect(breaker(1, 1).poolKey('10.0.0.1|8080|-')).toBe('default/web|80||10.0.0.1|8080|-');
  });
});

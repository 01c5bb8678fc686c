// Envoy's connection circuit breakers as Istio configures them from a DestinationRule's
// `connectionPool` (pure: counters and decisions; the pools do the I/O).
//
// One breaker per cluster (service, port, subset), kept across configurations so that its counts
// stay true while connections opened under an older rule are still open:
// - `tcp.maxConnections`: connections open or opening to all the cluster's endpoints. A new one
//   beyond it is not opened; but an endpoint the balancer chose that has no connection at all
//   still gets one (Envoy does so, so that no request waits for a connection that never comes).
//   Opaque TCP has no such exception: a new connection beyond the limit is refused (flag UO).
// - `http.http1MaxPendingRequests`: requests waiting for a connection (one being opened, or a busy
//   one becoming free). A request that finds no ready connection and no room to wait is answered
//   at once: 503, flag UO, `x-envoy-overloaded: true`, and it is never retried.
// Unset, both are Istio's 2^32-1: no breaker is made and the request path counts nothing.

import type { ConnectionPoolPolicy } from '../../../api/mesh';

/** Istio's default of both limits (2^32-1): no limit. */
export const NO_LIMIT = 4_294_967_295;

export interface PoolLimits {
  readonly maxConnections: number;
  readonly maxPending: number;
}

/** The limits a policy sets, or null when it sets neither (nothing is counted then). */
export function poolLimits(pool: ConnectionPoolPolicy | undefined): PoolLimits | null {
  const maxConnections = pool?.tcp?.maxConnections;
  const maxPending = pool?.http?.http1MaxPendingRequests;
  if (maxConnections === undefined && maxPending === undefined) return null;
  return {
    maxConnections: maxConnections ?? NO_LIMIT,
    maxPending: maxPending ?? NO_LIMIT,
  };
}

/** The cluster key of a breaker (Envoy's `outbound|port|subset|host`, in Mooring's terms). */
export const clusterKey = (serviceKey: string, port: number, subset: string | undefined): string =>
  `${serviceKey}|${port}|${subset ?? ''}`;

/** A request waiting for a connection to one endpoint (its pool key). */
export interface Waiter<C> {
  readonly key: string;
  /** A connection to its endpoint was freed for it, or (null) it may open one now. */
  wake(handover: C | null): void;
}

/** Envoy's local reply to a request a circuit breaker refused. */
export const OVERFLOW_BODY =
  'upstream connect error or disconnect/reset before headers. reset reason: overflow';
/** The header Envoy adds to a reply it made because a circuit breaker overflowed. */
export const OVERLOADED_HEADER: readonly string[] = ['x-envoy-overloaded', 'true'];

export class CircuitBreaker<C = unknown> {
  /** Connections open or opening (every kind: HTTP/1.1, HTTP/2 sessions, TCP). */
  connections = 0;
  /** Requests waiting for a connection. */
  pending = 0;
  private readonly waiting: Waiter<C>[] = [];

  constructor(
    /** The cluster key: connections under a breaker are pooled apart, under this prefix. */
    readonly key: string,
    public limits: PoolLimits,
  ) {}

  /** The pool key of an endpoint within this cluster. */
  poolKey(endpointKey: string): string {
    return `${this.key}|${endpointKey}`;
  }

  /** A request found no ready connection: it may wait (counted), or overflows (false). */
  admit(): boolean {
    if (this.pending >= this.limits.maxPending) return false;
    this.pending++;
    return true;
  }

  /** A waiting request got its connection, or gave up. */
  leave(): void {
    if (this.pending > 0) this.pending--;
  }

  /** Whether a connection may be opened to an endpoint with `endpointOpen` connections. */
  mayConnect(endpointOpen: number): boolean {
    return this.connections < this.limits.maxConnections || endpointOpen === 0;
  }

  /** Whether an opaque TCP connection may be opened (no exception: beyond the limit, refused). */
  mayConnectTcp(): boolean {
    return this.connections < this.limits.maxConnections;
  }

  connectionOpened(): void {
    this.connections++;
  }

  connectionClosed(): void {
    if (this.connections > 0) this.connections--;
  }

  /** Waits (FIFO) for a connection to its endpoint; `cancel` removes it. */
  wait(w: Waiter<C>): void {
    this.waiting.push(w);
  }

  cancel(w: Waiter<C>): void {
    const i = this.waiting.indexOf(w);
    if (i !== -1) this.waiting.splice(i, 1);
  }

  waiters(): number {
    return this.waiting.length;
  }

  /**
   * A connection to `key` is free: the first request waiting for that endpoint takes it (true),
   * or nobody wants it (false: it goes back to the pool).
   */
  handOver(key: string, conn: C): boolean {
    const i = this.waiting.findIndex((w) => w.key === key);
    if (i === -1) return false;
    const [w] = this.waiting.splice(i, 1);
    (w as Waiter<C>).wake(conn);
    return true;
  }

  /**
   * Room for connections (one closed, or the limit was raised): the first waiting requests open
   * theirs, as many as the limit now allows (each counts its connection when it opens it).
   * `emptyKey`: an endpoint left with no connection at all; its first waiting request opens one
   * whatever the limit (Envoy's exception).
   */
  pump(emptyKey?: string): void {
    if (emptyKey !== undefined) {
      const i = this.waiting.findIndex((w) => w.key === emptyKey);
      if (i !== -1) (this.waiting.splice(i, 1)[0] as Waiter<C>).wake(null);
    }
    while (this.waiting.length > 0 && this.connections < this.limits.maxConnections) {
      (this.waiting.shift() as Waiter<C>).wake(null);
    }
  }
}

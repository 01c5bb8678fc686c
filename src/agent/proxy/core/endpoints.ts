// Upstream endpoints and load balancing (pure; randomness and time come in).
//
// An `UpstreamEndpoint` is the proxy's live record of one endpoint: the mesh's facts (address,
// port, expected identity, workload) plus counters the request path updates (requests in flight,
// outlier-detection state). Records outlive configuration updates: the index reuses the record
// of an unchanged endpoint, so a push does not reset its in-flight count or an ejection.

import type { Endpoint, LoadBalancer, WorkloadInfo } from '../../../api/mesh';

export interface UpstreamEndpoint {
  /** `<address>|<port>|<identity or ->`: one pool and one record per key. */
  readonly key: string;
  readonly address: string;
  readonly port: number;
  /** The SPIFFE ID to require (mutual TLS), or null (plain text). */
  readonly identity: string | null;
  readonly workload: WorkloadInfo | null;
  readonly pod: string | null;
  /** From the EndpointSlice: false while terminating (used only when nothing else is left). */
  ready: boolean;
  /** Requests (or TCP connections) in flight: least-request balancing reads it. */
  active: number;
  /** Attempts (or TCP connections) sent to it, and how many failed before an answer: the
   * config dump's per-host counters, as Envoy's `/clusters` rq_total and cx_connect_fail. */
  attempts: number;
  failures: number;
  /** Outlier detection: ejected until this time (ms, the proxy's clock); 0: not ejected. */
  ejectedUntil: number;
  /** How many times it was ejected (the ejection time grows with it). */
  ejections: number;
  consecutive5xx: number;
  consecutiveGatewayErrors: number;
}

export const endpointKey = (address: string, port: number, identity: string | null): string =>
  `${address}|${port}|${identity ?? '-'}`;

/** The dial address of an endpoint for net.connect (IPv6 without brackets). */
export function newUpstreamEndpoint(
  e: Endpoint,
  port: number,
  plaintext: boolean,
): UpstreamEndpoint {
  const identity = plaintext ? null : e.identity;
  return {
    key: endpointKey(e.address, port, identity),
    address: e.address,
    port,
    identity,
    workload: e.workload,
    pod: e.pod,
    ready: e.ready,
    active: 0,
    attempts: 0,
    failures: 0,
    ejectedUntil: 0,
    ejections: 0,
    consecutive5xx: 0,
    consecutiveGatewayErrors: 0,
  };
}

/** The endpoints of one (service, port, subset), with the balancer's own state. */
export interface EndpointSet {
  readonly endpoints: readonly UpstreamEndpoint[];
  /** Round-robin position. */
  next: number;
}

export type Random = () => number;

const usable = (
  e: UpstreamEndpoint,
  now: number,
  exclude: ReadonlySet<UpstreamEndpoint> | null,
): boolean => e.ready && e.ejectedUntil <= now && (exclude === null || !exclude.has(e));

/**
 * Picks an endpoint: among the ready, non-ejected ones not in `exclude` (a retry avoids the
 * hosts it already tried, as Istio's `previous_hosts` predicate); if none, among the ready ones
 * not excluded (ejection never empties a service: Envoy's panic mode); if none, among all, the
 * terminating included. Returns null for an empty set.
 *
 *   LEAST_REQUEST  Envoy's power of two choices: two random candidates, fewer in flight wins
 *   ROUND_ROBIN    in turn
 *   RANDOM         uniform
 */
export function pickEndpoint(
  set: EndpointSet,
  lb: LoadBalancer,
  random: Random,
  now: number,
  exclude: ReadonlySet<UpstreamEndpoint> | null = null,
): UpstreamEndpoint | null {
  const all = set.endpoints;
  if (all.length === 0) return null;
  let candidates: readonly UpstreamEndpoint[] = all;
  // Fast path: everything usable (the common case) needs no filtering.
  let allUsable = true;
  for (let i = 0; i < all.length; i++) {
    if (!usable(all[i] as UpstreamEndpoint, now, exclude)) {
      allUsable = false;
      break;
    }
  }
  if (!allUsable) {
    candidates = all.filter((e) => usable(e, now, exclude));
    if (candidates.length === 0) {
      candidates = all.filter((e) => e.ready && (exclude === null || !exclude.has(e)));
    }
    if (candidates.length === 0)
      candidates = all.filter((e) => exclude === null || !exclude.has(e));
    if (candidates.length === 0) candidates = all;
  }
  const n = candidates.length;
  if (n === 1) return candidates[0] as UpstreamEndpoint;
  switch (lb) {
    case 'ROUND_ROBIN': {
      const e = candidates[set.next % n] as UpstreamEndpoint;
      set.next = (set.next + 1) % 1_000_000_007;
      return e;
    }
    case 'RANDOM':
      return candidates[Math.floor(random() * n)] as UpstreamEndpoint;
    default: {
      const i = Math.floor(random() * n);
      let j = Math.floor(random() * (n - 1));
      if (j >= i) j++;
      const a = candidates[i] as UpstreamEndpoint;
      const b = candidates[j] as UpstreamEndpoint;
      return b.active < a.active ? b : a;
    }
  }
}

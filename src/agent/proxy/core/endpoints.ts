// Upstream endpoints and load balancing (pure; randomness and time come in).
//
// An `UpstreamEndpoint` is the proxy's live record of one endpoint: the mesh's facts (address,
// port, expected identity, workload) plus counters the request path updates (requests in flight,
// outlier-detection state). Records outlive configuration updates: the index reuses the record
// of an unchanged endpoint, so a push does not reset its in-flight count or an ejection.

import type { Endpoint, LoadBalancer, TlsPolicy, WorkloadInfo } from '../../../api/mesh';

export interface UpstreamEndpoint {
  /** `<address>|<port>|<identity or ->`: one pool and one record per key. */
  readonly key: string;
  readonly address: string;
  readonly port: number;
  /** The SPIFFE ID to require (mutual TLS), or null (plain text, or `originate`). */
  readonly identity: string | null;
  /** TLS the proxy originates to it (a DestinationRule's SIMPLE or MUTUAL). */
  readonly originate?: TlsPolicy;
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

/**
 * How the proxy dials an endpoint: `mesh`, mutual TLS when it is meshed (plain text to a port
 * its PeerAuthentication DISABLEs); `plain`, plain text (a DestinationRule's DISABLE); or TLS the
 * proxy originates (SIMPLE, MUTUAL).
 */
export type DialAs = 'mesh' | 'plain' | TlsPolicy;

/** The SPIFFE ID a dial `as` requires of `e` at `port`: null when it is not mutual TLS. */
function dialIdentity(e: Endpoint, port: number, as: DialAs): string | null {
  if (typeof as === 'object' || as === 'plain') return null;
  return e.plaintextPorts?.includes(port) === true ? null : e.identity;
}

/** The key of an endpoint's record, one per way of dialling it. */
export function recordKey(e: Endpoint, port: number, as: DialAs): string {
  const key = endpointKey(e.address, port, dialIdentity(e, port, as));
  return typeof as === 'object' ? `${key}|tls:${JSON.stringify(as)}` : key;
}

export function newUpstreamEndpoint(e: Endpoint, port: number, as: DialAs): UpstreamEndpoint {
  const originate = typeof as === 'object' ? as : undefined;
  const identity = dialIdentity(e, port, as);
  return {
    key: recordKey(e, port, as),
    address: e.address,
    port,
    identity,
    ...(originate === undefined ? {} : { originate }),
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
  /** Consistent hashing's ring over these endpoints, made at its first use. */
  ring?: HashRing;
  /** Locality balancing: the groups a request is sent to first (locality.ts). */
  readonly groups?: LocalityGroups;
}

/** Locality balancing's groups of a set (locality.ts makes them). */
export interface LocalityGroups {
  readonly kind: 'priority' | 'weighted';
  /** Nearest first (priority), or in the order of their localities (weighted). */
  readonly sets: readonly EndpointSet[];
  /** Weighted: each set's share (any scale). */
  readonly weights?: readonly number[];
  /** The locality of each set, for the config dump. */
  readonly localities: readonly string[];
}

/** Envoy's overprovisioning factor: a group counts as whole while 1/1.4 of it is healthy. */
const OVERPROVISIONING = 1.4;

/** The share of a group that counts as healthy (ready and not ejected), overprovisioned. */
function availability(set: EndpointSet, now: number): number {
  const all = set.endpoints;
  if (all.length === 0) return 0;
  let healthy = 0;
  for (let i = 0; i < all.length; i++) {
    const e = all[i] as UpstreamEndpoint;
    if (e.ready && e.ejectedUntil <= now) healthy++;
  }
  return Math.min(1, (OVERPROVISIONING * healthy) / all.length);
}

/**
 * The group a request goes to. Priority: Envoy's priority load, each level taking its
 * availability of what the nearer ones left (normalized when all together are below whole);
 * weighted: a locality drawn by weight times availability. Null when no group has a healthy
 * endpoint (the whole set is then balanced over, as Envoy's panic mode).
 */
export function chooseGroup(
  groups: LocalityGroups,
  random: () => number,
  now: number,
): EndpointSet | null {
  // Two passes, no array per request: the sum, then the draw.
  const { sets } = groups;
  const weights = groups.weights;
  const share = (i: number): number =>
    availability(sets[i] as EndpointSet, now) * (weights === undefined ? 1 : (weights[i] ?? 0));
  let sum = 0;
  for (let i = 0; i < sets.length; i++) sum += share(i);
  if (sum === 0) return null;
  if (weights !== undefined) {
    let r = random() * sum;
    for (let i = 0; i < sets.length; i++) {
      r -= share(i);
      if (r < 0) return sets[i] as EndpointSet;
    }
  } else {
    const total = Math.min(1, sum);
    let r = random();
    let left = 1;
    for (let i = 0; i < sets.length; i++) {
      const load = Math.min(left, share(i) / total);
      if (r < load) return sets[i] as EndpointSet;
      r -= load;
      left -= load;
    }
  }
  // Rounding: the farthest group with a healthy endpoint.
  for (let i = sets.length - 1; i >= 0; i--) if (share(i) > 0) return sets[i] as EndpointSet;
  return null;
}

/**
 * The group of `set` a request goes to (locality balancing), or the set itself; a retry's group
 * must hold an endpoint it has not tried, or the set is balanced over whole.
 */
function groupOf(
  set: EndpointSet,
  random: Random,
  now: number,
  exclude: ReadonlySet<UpstreamEndpoint> | null,
): EndpointSet {
  if (set.groups === undefined) return set;
  const group = chooseGroup(set.groups, random, now);
  if (group === null) return set;
  if (exclude === null || group.endpoints.some((e) => usable(e, now, exclude))) return group;
  // A retry: the nearest group with an endpoint left to try.
  return set.groups.sets.find((g) => g.endpoints.some((e) => usable(e, now, exclude))) ?? set;
}

/** Points on a 32-bit circle, sorted, each owned by an endpoint (Envoy's ring hash). */
export interface HashRing {
  readonly points: Uint32Array;
  readonly owners: readonly UpstreamEndpoint[];
}

/**
 * Points per endpoint, the same whatever their number (as ketama): an endpoint that comes or goes
 * moves only its own keys. (Envoy's ring shares a minimum size among its hosts instead, so that
 * a change of their number moves some keys between the others too.)
 */
const POINTS_PER_ENDPOINT = 160;

/** A 32-bit hash of a string (FNV-1a, then murmur3's finalizer to spread it). */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function buildRing(endpoints: readonly UpstreamEndpoint[]): HashRing {
  const per = POINTS_PER_ENDPOINT;
  const pairs: [number, UpstreamEndpoint][] = [];
  // By address and port: the same endpoint keeps its points in every configuration.
  for (const e of endpoints) {
    for (let i = 0; i < per; i++) pairs.push([hash32(`${e.address}:${e.port}_${i}`), e]);
  }
  pairs.sort((a, b) => a[0] - b[0]);
  return { points: Uint32Array.from(pairs, (p) => p[0]), owners: pairs.map((p) => p[1]) };
}

/**
 * Consistent hashing: the endpoint owning the first point of the ring at or after `hash`,
 * walking on past endpoints not usable now (ejected, not ready, already tried); when none is,
 * the rules of `pickEndpoint`.
 */
export function pickByHash(
  whole: EndpointSet,
  hash: number,
  random: Random,
  now: number,
  exclude: ReadonlySet<UpstreamEndpoint> | null = null,
): UpstreamEndpoint | null {
  if (whole.endpoints.length === 0) return null;
  const set = groupOf(whole, random, now, exclude);
  const ring = (set.ring ??= buildRing(set.endpoints));
  const { points, owners } = ring;
  let lo = 0;
  let hi = points.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((points[mid] as number) < hash) lo = mid + 1;
    else hi = mid;
  }
  for (let k = 0; k < points.length; k++) {
    const e = owners[(lo + k) % points.length] as UpstreamEndpoint;
    if (usable(e, now, exclude)) return e;
  }
  return pickEndpoint(set, 'RANDOM', random, now, exclude);
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
  whole: EndpointSet,
  lb: LoadBalancer,
  random: Random,
  now: number,
  exclude: ReadonlySet<UpstreamEndpoint> | null = null,
): UpstreamEndpoint | null {
  if (whole.endpoints.length === 0) return null;
  const set = whole.groups === undefined ? whole : groupOf(whole, random, now, exclude);
  const all = set.endpoints;
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

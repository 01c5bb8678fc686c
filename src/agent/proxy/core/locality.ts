// Locality load balancing (pure): which endpoints of a set a caller prefers, as Istio has Envoy
// do it. Two forms, computed once per endpoint set and configuration:
//
//   priority  levels, nearest first (Istio's locality failover, `failoverPriority`, and a
//             Service's trafficDistribution PreferClose): a level takes the traffic its healthy
//             share allows (Envoy's overprovisioning factor, 1.4), the next ones the rest
//   weighted  localities with a share each (`distribute`), scaled by their healthy share
//
// Failover needs outlier detection beside it, as in Istio (without it nothing would ever be seen
// failing); PreferClose does not.

import type { LocalityLbSetting, OutlierDetectionPolicy } from '../../../api/mesh';
import { localityMatches, localityParts, TOPOLOGY_LABELS } from '../../../mesh/locality';
import type { LocalityGroups, UpstreamEndpoint } from './endpoints';

export interface LocalityInput {
  /** The caller's locality; undefined: unknown (no locality balancing). */
  readonly caller: string | undefined;
  readonly setting: LocalityLbSetting | undefined;
  readonly outlierDetection: OutlierDetectionPolicy | undefined;
  readonly preferClose: boolean;
}

/**
 * The groups of `endpoints` (each with its locality, '' when unknown) for a caller, or undefined
 * when locality balancing does not apply (no caller locality, disabled, nothing to tell apart).
 */
export function localityGroups(
  endpoints: readonly { readonly record: UpstreamEndpoint; readonly locality: string }[],
  input: LocalityInput,
): LocalityGroups | undefined {
  const { caller, setting } = input;
  if (caller === undefined || endpoints.length < 2 || setting?.enabled === false) return undefined;
  const distribute = setting?.distribute?.find((d) => localityMatches(d.from, caller));
  if (distribute !== undefined) return weighted(endpoints, distribute.to);
  if (setting?.distribute !== undefined) return undefined;
  const failover = setting?.failover !== undefined || setting?.failoverPriority !== undefined;
  let rank: (locality: string) => number;
  if (input.outlierDetection !== undefined && setting?.failoverPriority !== undefined) {
    rank = byLabels(caller, setting.failoverPriority);
  } else if (input.outlierDetection !== undefined || (input.preferClose && !failover)) {
    // PreferClose is Istio's failover by network, region, zone and subzone: the same levels.
    rank = byLocality(caller, setting?.failover ?? []);
  } else {
    return undefined;
  }
  const levels = new Map<number, { records: UpstreamEndpoint[]; localities: Set<string> }>();
  for (const { record, locality } of endpoints) {
    const level = rank(locality);
    let entry = levels.get(level);
    if (entry === undefined) levels.set(level, (entry = { records: [], localities: new Set() }));
    entry.records.push(record);
    entry.localities.add(locality);
  }
  if (levels.size < 2) return undefined;
  const ordered = [...levels.entries()].sort(([a], [b]) => a - b).map(([, e]) => e);
  return {
    kind: 'priority',
    sets: ordered.map((e) => ({ endpoints: e.records, next: 0 })),
    localities: ordered.map((e) => [...e.localities].sort().join(',')),
  };
}

/**
 * Istio's locality failover: 0 the caller's subzone, 1 its zone, 2 its region, 3 a region a
 * `failover` entry from the caller's names, 4 the rest.
 */
function byLocality(
  caller: string,
  failover: readonly { readonly from: string; readonly to: string }[],
): (locality: string) => number {
  const [region, zone, subzone] = localityParts(caller);
  const next = new Set(failover.filter((f) => f.from === region).map((f) => f.to));
  return (locality) => {
    const [r, z, s] = localityParts(locality);
    if (r !== region) return next.has(r) ? 3 : 4;
    if (z !== zone) return 2;
    return s === subzone ? 0 : 1;
  };
}

/** `failoverPriority`: how many of the labels, in order, an endpoint shares with the caller. */
function byLabels(caller: string, labels: readonly string[]): (locality: string) => number {
  const mine = localityParts(caller);
  const part = { region: 0, zone: 1, subzone: 2 } as const;
  return (locality) => {
    const theirs = localityParts(locality);
    let matched = 0;
    for (const label of labels) {
      const which = TOPOLOGY_LABELS[label];
      if (which !== 'mesh' && which !== undefined && mine[part[which]] !== theirs[part[which]]) {
        break;
      }
      matched++;
    }
    return labels.length - matched;
  };
}

/**
 * `distribute`: each locality gets the weight of the most specific `to` pattern naming it,
 * shared evenly among the localities that pattern names; a locality none names gets nothing.
 */
function weighted(
  endpoints: readonly { readonly record: UpstreamEndpoint; readonly locality: string }[],
  to: Readonly<Record<string, number>>,
): LocalityGroups | undefined {
  const patterns = Object.keys(to).sort((a, b) => b.length - a.length || (a < b ? -1 : 1));
  const byLocality = new Map<string, UpstreamEndpoint[]>();
  for (const { record, locality } of endpoints) {
    const list = byLocality.get(locality);
    if (list === undefined) byLocality.set(locality, [record]);
    else list.push(record);
  }
  const owner = new Map<string, string>();
  const shared = new Map<string, number>();
  for (const locality of byLocality.keys()) {
    const pattern = patterns.find((p) => localityMatches(p, locality));
    if (pattern === undefined) continue;
    owner.set(locality, pattern);
    shared.set(pattern, (shared.get(pattern) ?? 0) + 1);
  }
  const localities = [...owner.keys()].sort();
  if (localities.length === 0) return undefined;
  return {
    kind: 'weighted',
    sets: localities.map((l) => ({ endpoints: byLocality.get(l) ?? [], next: 0 })),
    weights: localities.map((l) => {
      const pattern = owner.get(l) as string;
      return (to[pattern] as number) / (shared.get(pattern) as number);
    }),
    localities,
  };
}

// Localities (`region/zone/subzone`) and the patterns of Istio's `localityLbSetting` that name
// them. Pure: the server validates with it, the proxy matches with it.

import type { Fields } from './fields';

/** A workload's `locality` field (`region/zone/subzone`, no `*`), or null when unset. */
export function readLocality(f: Fields, value: unknown, field: string): string | null {
  const locality = f.string(value, field) ?? '';
  if (locality === '') return null;
  if (locality.split('/').length > 3 || locality.includes('*')) {
    f.problem(field, `${JSON.stringify(locality)} is not region/zone/subzone`);
  }
  return locality;
}

/** The topology labels `failoverPriority` may name, and the part of a locality each is. */
export const TOPOLOGY_LABELS: Readonly<Record<string, 'region' | 'zone' | 'subzone' | 'mesh'>> = {
  'topology.kubernetes.io/region': 'region',
  'topology.kubernetes.io/zone': 'zone',
  'topology.istio.io/subzone': 'subzone',
  // One network and one cluster: every endpoint shares the caller's.
  'topology.istio.io/network': 'mesh',
  'topology.istio.io/cluster': 'mesh',
};

/** `region/zone/subzone` as its three parts (missing ones empty). */
export function localityParts(locality: string): [string, string, string] {
  const [region = '', zone = '', subzone = ''] = locality.split('/');
  return [region, zone, subzone];
}

/**
 * Why `pattern` is not a locality pattern (`region`, `region/zone`, `region/zone/subzone`, each
 * part possibly `*` as the last one), or null.
 */
export function localityPatternProblem(pattern: string): string | null {
  const parts = pattern.split('/');
  if (pattern === '' || parts.length > 3) {
    return `${JSON.stringify(pattern)} is not a locality (region/zone/subzone)`;
  }
  for (const [i, part] of parts.entries()) {
    if (part === '') return `${JSON.stringify(pattern)} has an empty part`;
    if (part.includes('*') && (part !== '*' || i !== parts.length - 1)) {
      return `${JSON.stringify(pattern)}: a "*" must be a whole part and the last one`;
    }
  }
  return null;
}

/**
 * True when `locality` is in `pattern`: each part given equal, a `*` taking any value of its part
 * and of the parts after it.
 */
export function localityMatches(pattern: string, locality: string): boolean {
  const want = pattern.split('/');
  const have = localityParts(locality);
  for (const [i, part] of want.entries()) {
    if (part === '*') return true;
    if (part !== have[i]) return false;
  }
  return true;
}

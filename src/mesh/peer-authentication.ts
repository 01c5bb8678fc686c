// The mutual-TLS mode of a workload from PeerAuthentication, with Istio's rules
// (pilot/pkg/security/authn/policy_applier.go, ComposePeerAuthentication):
//
// - a policy without selector in the root namespace (Mooring's namespace) is mesh-wide; one
//   without selector elsewhere applies to its namespace; one with `selector.matchLabels` applies
//   to the Pods of its namespace that carry those labels (in the root namespace, such a policy
//   is ignored, as Istio ignores it);
// - at each level the oldest policy wins (creationTimestamp; objects without one, from files,
//   come after those with one; then by name);
// - the narrowest level that sets a mode decides: workload > namespace > mesh-wide > the
//   configuration's `mesh.mtlsMode`; UNSET inherits from the level above;
// - `portLevelMtls` (workload policies only) sets the mode of single container ports; an UNSET
//   port takes the workload's resolved mode.
// Pure.

import type { MtlsMode } from '../api/mesh';
import { nameKey, selectorMatches, type PeerAuthenticationObject } from './objects';

export interface ResolvedMtls {
  readonly mode: MtlsMode;
  /** By container port; absent when the workload policy has no portLevelMtls. */
  readonly portMtls?: Readonly<Record<string, MtlsMode>>;
  /** Which setting decided the mode, for the config dump. */
  readonly source: string;
}

/** Older first; then objects without a creation time; then by namespace and name. */
function older(a: PeerAuthenticationObject, b: PeerAuthenticationObject): boolean {
  const ta = a.meta.creationTimestamp === null ? Infinity : Date.parse(a.meta.creationTimestamp);
  const tb = b.meta.creationTimestamp === null ? Infinity : Date.parse(b.meta.creationTimestamp);
  if (ta !== tb) return ta < tb;
  return nameKey(a.meta) < nameKey(b.meta);
}

const describe = (pa: PeerAuthenticationObject, level: string): string =>
  `PeerAuthentication ${nameKey(pa.meta)} (${level})`;

/**
 * The mode of a Pod in `namespace` with `labels`, from the PeerAuthentications of the root
 * namespace and of its own namespace (`candidates` may hold others: they are skipped).
 */
export function resolvePeerAuthentication(
  workload: { readonly namespace: string; readonly labels: Readonly<Record<string, string>> },
  candidates: Iterable<PeerAuthenticationObject>,
  rootNamespace: string,
  defaultMode: MtlsMode,
): ResolvedMtls {
  let mesh: PeerAuthenticationObject | null = null;
  let namespace: PeerAuthenticationObject | null = null;
  let selected: PeerAuthenticationObject | null = null;
  for (const pa of candidates) {
    const ns = pa.meta.namespace;
    if (ns !== rootNamespace && ns !== workload.namespace) continue;
    if (pa.selector === null) {
      if (ns === rootNamespace) {
        if (mesh === null || older(pa, mesh)) mesh = pa;
      } else if (namespace === null || older(pa, namespace)) {
        namespace = pa;
      }
    } else if (ns !== rootNamespace && selectorMatches(pa.selector, workload.labels)) {
      if (selected === null || older(pa, selected)) selected = pa;
    }
  }
  let mode: MtlsMode = defaultMode;
  let source = 'mesh.mtlsMode';
  const levels: [PeerAuthenticationObject | null, string][] = [
    [mesh, 'mesh-wide'],
    [namespace, 'namespace'],
    [selected, 'workload'],
  ];
  for (const [pa, level] of levels) {
    if (pa !== null && pa.mode !== 'UNSET') {
      mode = pa.mode;
      source = describe(pa, level);
    }
  }
  if (selected === null || Object.keys(selected.portLevel).length === 0) return { mode, source };
  const portMtls: Record<string, MtlsMode> = {};
  for (const [port, portMode] of Object.entries(selected.portLevel)) {
    portMtls[port] = portMode === 'UNSET' ? mode : portMode;
  }
  return { mode, portMtls, source };
}

/** The mode of one container port. */
export const modeOfPort = (resolved: ResolvedMtls, port: number): MtlsMode =>
  resolved.portMtls?.[String(port)] ?? resolved.mode;

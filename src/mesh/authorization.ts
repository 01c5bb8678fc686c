// The AuthorizationPolicies that apply to one workload, with Istio's scoping: a policy in the
// root namespace (Mooring's) applies to the whole mesh, or with `selector.matchLabels` to the
// Pods of any namespace that carry those labels; a policy elsewhere applies to its namespace, or
// to the Pods of its namespace its selector matches. AUDIT policies decide nothing and are left
// out. Pure.

import type { AuthorizationPolicyRules } from '../api/mesh';
import { nameKey, selectorMatches, type AuthorizationPolicyObject } from './objects';

export function resolveAuthorization(
  workload: { readonly namespace: string; readonly labels: Readonly<Record<string, string>> },
  candidates: Iterable<AuthorizationPolicyObject>,
  rootNamespace: string,
): AuthorizationPolicyRules[] {
  const out: AuthorizationPolicyRules[] = [];
  for (const p of candidates) {
    const ns = p.meta.namespace;
    if (ns !== rootNamespace && ns !== workload.namespace) continue;
    if (p.selector !== null && !selectorMatches(p.selector, workload.labels)) continue;
    if (p.action === 'AUDIT') continue;
    out.push({ name: nameKey(p.meta), action: p.action, rules: p.rules });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

// The AuthorizationPolicies that apply to one workload, with Istio's scoping: a policy in the
// root namespace (Mooring's) applies to the whole mesh, or with `selector.matchLabels` to the
// Pods of any namespace that carry those labels; a policy elsewhere applies to its namespace, or
// to the Pods of its namespace its selector matches. AUDIT policies decide nothing and are left
// out. Pure.

import type { AuthorizationPolicyRules } from '../api/mesh';
import { nameKey, selectorMatches, type AuthorizationPolicyObject } from './objects';

/** Istio's scoping of a policy (AuthorizationPolicy, RequestAuthentication) to a workload. */
export function appliesTo(
  policy: {
    readonly meta: { readonly namespace: string };
    readonly selector: Readonly<Record<string, string>> | null;
  },
  workload: { readonly namespace: string; readonly labels: Readonly<Record<string, string>> },
  rootNamespace: string,
): boolean {
  const ns = policy.meta.namespace;
  if (ns !== rootNamespace && ns !== workload.namespace) return false;
  return policy.selector === null || selectorMatches(policy.selector, workload.labels);
}

export function resolveAuthorization(
  workload: { readonly namespace: string; readonly labels: Readonly<Record<string, string>> },
  candidates: Iterable<AuthorizationPolicyObject>,
  rootNamespace: string,
): AuthorizationPolicyRules[] {
  const out: AuthorizationPolicyRules[] = [];
  for (const p of candidates) {
    if (!appliesTo(p, workload, rootNamespace) || p.action === 'AUDIT') continue;
    out.push({ name: nameKey(p.meta), action: p.action, rules: p.rules });
  }
  return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

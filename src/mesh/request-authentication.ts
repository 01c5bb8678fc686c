// The RequestAuthentications that apply to one workload (Istio's scoping, as AuthorizationPolicy's:
// the root namespace mesh-wide or by selector, a namespace, a selector), their rules merged into
// one list of JWT providers, one per issuer (the first by policy name wins). Where the keys come
// from: the rule's inline `jwks`, else what the server fetched from `jwksSource(rule)`. Pure.

import type { JwtProvider } from '../api/mesh';
import { appliesTo } from './authorization';
import { nameKey, type JwtRuleSpec, type RequestAuthenticationObject } from './objects';

/** Where the server fetches a rule's keys: its `jwksUri`, or the issuer's OpenID configuration. */
export const jwksSource = (rule: JwtRuleSpec): string | null =>
  rule.jwks !== null ? null : (rule.jwksUri ?? `openid:${rule.issuer}`);

export function resolveJwt(
  workload: { readonly namespace: string; readonly labels: Readonly<Record<string, string>> },
  candidates: Iterable<RequestAuthenticationObject>,
  rootNamespace: string,
  fetched: (source: string) => string | null,
): JwtProvider[] {
  const policies = [...candidates]
    .filter((p) => appliesTo(p, workload, rootNamespace))
    .sort((a, b) => (nameKey(a.meta) < nameKey(b.meta) ? -1 : 1));
  const out: JwtProvider[] = [];
  for (const p of policies) {
    for (const rule of p.jwtRules) {
      if (out.some((o) => o.issuer === rule.issuer)) continue;
      const source = jwksSource(rule);
      out.push({
        source: nameKey(p.meta),
        issuer: rule.issuer,
        ...(rule.audiences.length === 0 ? {} : { audiences: rule.audiences }),
        jwks: source === null ? rule.jwks : fetched(source),
        ...(rule.locations === null ? {} : { locations: rule.locations }),
        ...(rule.forwardOriginalToken ? { forwardOriginalToken: true as const } : {}),
        ...(rule.outputPayloadToHeader === null
          ? {}
          : { outputPayloadToHeader: rule.outputPayloadToHeader }),
        ...(rule.outputClaimToHeaders.length === 0
          ? {}
          : { outputClaimToHeaders: rule.outputClaimToHeaders }),
      });
    }
  }
  return out;
}

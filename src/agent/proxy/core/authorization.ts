// Istio's AuthorizationPolicy on the inbound side (pure). A request (or, for opaque TCP, a
// connection) is refused when a DENY policy matches it; else, when the workload has ALLOW
// policies, it is let through only if one of them matches; with none, everything is. A rule
// matches when its `from` (any source), `to` (any operation) and `when` (every condition) do.
//
// Fields that only HTTP has (hosts, methods, paths, request headers) on a TCP connection: an
// ALLOW rule that uses one matches nothing, and a DENY rule is taken without them (so it denies
// more), as Istio does; either way the policy errs on the side of refusing. Paths are matched
// normalized (RFC 3986: the query cut off, percent-encoded unreserved characters decoded, dot
// segments removed), so that `/public/../admin` is `/admin` to a DENY of `/admin*`.

import type {
  AuthorizationCondition,
  AuthorizationOperation,
  AuthorizationPolicyRules,
  AuthorizationRule,
  AuthorizationSource,
} from '../../../api/mesh';
import { inCidr } from '../../../ip';
import type { RequestView } from './route';

export interface AuthorizationFacts {
  /** The verified peer's SPIFFE ID (`spiffe://...`), or null for plain text. */
  readonly peer: string | null;
  /** The connection's source address. */
  readonly sourceIp: string;
  /** The original destination: the app's address and port. */
  readonly destinationIp: string;
  readonly destinationPort: number;
  /** The HTTP request; null for an opaque TCP connection. */
  readonly request: RequestView | null;
}

export type AuthorizationDecision =
  | { readonly allowed: true }
  /** `policy`: the DENY policy that matched, or null when no ALLOW policy did. */
  | { readonly allowed: false; readonly policy: string | null };

const ALLOWED: AuthorizationDecision = { allowed: true };

/** An Istio string match: exact, `prefix*`, `*suffix`, or `*` (any value but none or empty). */
export function stringMatches(pattern: string, value: string | null): boolean {
  if (value === null) return false;
  if (pattern === '*') return value !== '';
  if (pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  if (pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  return value === pattern;
}

const isUnreserved = (c: number): boolean =>
  (c >= 0x30 && c <= 0x39) ||
  (c >= 0x41 && c <= 0x5a) ||
  (c >= 0x61 && c <= 0x7a) ||
  c === 0x2d ||
  c === 0x2e ||
  c === 0x5f ||
  c === 0x7e;

/** A request target's path as a policy sees it (RFC 3986 6.2.2 and 5.2.4). */
export function normalizedPath(target: string): string {
  let end = target.length;
  for (let i = 0; i < end; i++) {
    const c = target.charCodeAt(i);
    if (c === 0x3f || c === 0x23) end = i;
  }
  const path = target.slice(0, end).replace(/%([0-9a-fA-F]{2})/g, (m, hex: string) => {
    const c = parseInt(hex, 16);
    return isUnreserved(c) ? String.fromCharCode(c) : m.toUpperCase();
  });
  const segments = path.split('/');
  const out: string[] = [];
  for (let i = 1; i < segments.length; i++) {
    const s = segments[i] as string;
    const last = i === segments.length - 1;
    if (s === '.' || s === '..') {
      if (s === '..') out.pop();
      if (last) out.push('');
      continue;
    }
    out.push(s);
  }
  return `/${out.join('/')}`;
}

/** The principal Istio matches: the SPIFFE ID without its scheme. */
const principalOf = (peer: string | null): string | null =>
  peer === null ? null : peer.startsWith('spiffe://') ? peer.slice(9) : peer;

/** The namespace a principal names (`<trust domain>/ns/<namespace>/sa/<account>`). */
function namespaceOf(principal: string | null): string | null {
  if (principal === null) return null;
  const m = /\/ns\/([^/]+)\/sa\//.exec(principal);
  return m === null ? null : (m[1] as string);
}

/** The facts of one check, derived once. */
interface Seen {
  readonly principal: string | null;
  readonly namespace: string | null;
  readonly facts: AuthorizationFacts;
  /** Normalized path, lowercase host: only made for HTTP, and once. */
  path?: string;
  host?: string | null;
}

/** A field given (`list`) matches: any of it (`not`: none of it). Absent: matches. */
function field<T>(
  list: readonly T[] | undefined,
  not: readonly T[] | undefined,
  test: (item: T) => boolean,
): boolean {
  if (list !== undefined && !list.some(test)) return false;
  if (not !== undefined && not.some(test)) return false;
  return true;
}

function sourceMatches(s: AuthorizationSource, seen: Seen): boolean {
  const ip = seen.facts.sourceIp;
  const inBlock = (c: string): boolean => inCidr(ip, c);
  return (
    field(s.principals, s.notPrincipals, (p) => stringMatches(p, seen.principal)) &&
    field(s.namespaces, s.notNamespaces, (n) => stringMatches(n, seen.namespace)) &&
    field(s.ipBlocks, s.notIpBlocks, inBlock) &&
    field(s.remoteIpBlocks, s.notRemoteIpBlocks, inBlock)
  );
}

const pathOf = (seen: Seen, request: RequestView): string =>
  (seen.path ??= normalizedPath(request.path));

const hostOf = (seen: Seen, request: RequestView): string | null => {
  if (seen.host === undefined) seen.host = request.header('host')?.toLowerCase() ?? null;
  return seen.host;
};

/** HTTP-only fields, on a TCP connection: false in an ALLOW rule, ignored (true) in a DENY one. */
function httpField(
  given: boolean,
  seen: Seen,
  deny: boolean,
  test: (request: RequestView) => boolean,
): boolean {
  if (!given) return true;
  const request = seen.facts.request;
  return request === null ? deny : test(request);
}

function operationMatches(o: AuthorizationOperation, seen: Seen, deny: boolean): boolean {
  const port = seen.facts.destinationPort;
  if (!field(o.ports, o.notPorts, (p) => p === port)) return false;
  return (
    httpField(o.methods !== undefined || o.notMethods !== undefined, seen, deny, (r) =>
      field(o.methods, o.notMethods, (m) => stringMatches(m, r.method)),
    ) &&
    httpField(o.paths !== undefined || o.notPaths !== undefined, seen, deny, (r) =>
      field(o.paths, o.notPaths, (p) => stringMatches(p, pathOf(seen, r))),
    ) &&
    httpField(o.hosts !== undefined || o.notHosts !== undefined, seen, deny, (r) =>
      field(o.hosts, o.notHosts, (h) => stringMatches(h.toLowerCase(), hostOf(seen, r))),
    )
  );
}

const HEADER_KEY = /^request\.headers\[(.+)\]$/;

function conditionMatches(c: AuthorizationCondition, seen: Seen, deny: boolean): boolean {
  const f = seen.facts;
  const header = HEADER_KEY.exec(c.key);
  if (header !== null) {
    return httpField(true, seen, deny, (r) => {
      const value = r.header(header[1] as string);
      return field(c.values, c.notValues, (v) => stringMatches(v, value));
    });
  }
  switch (c.key) {
    case 'source.ip':
    case 'remote.ip':
      return field(c.values, c.notValues, (v) => inCidr(f.sourceIp, v));
    case 'destination.ip':
      return field(c.values, c.notValues, (v) => inCidr(f.destinationIp, v));
    case 'destination.port':
      return field(c.values, c.notValues, (v) => v === String(f.destinationPort));
    case 'source.principal':
      return field(c.values, c.notValues, (v) => stringMatches(v, seen.principal));
    case 'source.namespace':
      return field(c.values, c.notValues, (v) => stringMatches(v, seen.namespace));
    default:
      // A key the validator would have refused: an ALLOW rule with it matches nothing, a DENY
      // rule is taken without it.
      return deny;
  }
}

function ruleMatches(rule: AuthorizationRule, seen: Seen, deny: boolean): boolean {
  if (rule.from !== undefined && !rule.from.some((s) => sourceMatches(s, seen))) return false;
  if (rule.to !== undefined && !rule.to.some((o) => operationMatches(o, seen, deny))) return false;
  if (rule.when !== undefined && !rule.when.every((c) => conditionMatches(c, seen, deny))) {
    return false;
  }
  return true;
}

/** The decision of a workload's policies on one request or connection. */
export function authorize(
  policies: readonly AuthorizationPolicyRules[],
  facts: AuthorizationFacts,
): AuthorizationDecision {
  const principal = principalOf(facts.peer);
  const seen: Seen = { principal, namespace: namespaceOf(principal), facts };
  let allowPolicies = false;
  for (const p of policies) {
    if (p.action !== 'DENY') continue;
    if (p.rules.some((r) => ruleMatches(r, seen, true))) return { allowed: false, policy: p.name };
  }
  for (const p of policies) {
    if (p.action !== 'ALLOW') continue;
    allowPolicies = true;
    if (p.rules.some((r) => ruleMatches(r, seen, false))) return ALLOWED;
  }
  return allowPolicies ? { allowed: false, policy: null } : ALLOWED;
}

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
import { addressBytes, inNetwork, parseNetwork, type AddressBytes } from '../../../ip';
import { asStrings, claimAt, type RequestAuth } from './jwt';
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
  /** The request's verified JWT (RequestAuthentication); absent or null: none. */
  readonly auth?: RequestAuth | null;
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
  /** The source and destination addresses' bytes, parsed once for every address block. */
  sourceBytes?: AddressBytes | null;
  destinationBytes?: AddressBytes | null;
}

/** One compiled check of a request or connection. */
type Test = (seen: Seen) => boolean;
type ValueTest = (value: string | null) => boolean;

/**
 * Istio's string matches of a list, compiled: exact values in a set, then prefixes, suffixes and
 * `*` (`stringMatches` of any pattern). `lower`: the patterns are lowercased (hosts).
 */
function anyString(patterns: readonly string[], lower = false): ValueTest {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  const suffixes: string[] = [];
  let any = false;
  for (const raw of patterns) {
    const p = lower ? raw.toLowerCase() : raw;
    if (p === '*') any = true;
    else if (p.endsWith('*')) prefixes.push(p.slice(0, -1));
    else if (p.startsWith('*')) suffixes.push(p.slice(1));
    else exact.add(p);
  }
  return (value) => {
    if (value === null) return false;
    if (exact.has(value) || (any && value !== '')) return true;
    for (const p of prefixes) if (value.startsWith(p)) return true;
    for (const s of suffixes) if (value.endsWith(s)) return true;
    return false;
  };
}

/**
 * A field and its `not` form: any of `list` matches, none of `not` does. null: neither given
 * (matches anything, nothing to run).
 */
function field<T>(
  list: readonly T[] | undefined,
  not: readonly T[] | undefined,
  make: (items: readonly T[]) => Test,
): Test | null {
  const yes = list === undefined ? null : make(list);
  const no = not === undefined ? null : make(not);
  if (yes === null && no === null) return null;
  if (no === null) return yes;
  if (yes === null) return (seen) => !no(seen);
  return (seen) => yes(seen) && !no(seen);
}

const strings =
  (of: (seen: Seen) => string | null, lower = false) =>
  (patterns: readonly string[]): Test => {
    const test = anyString(patterns, lower);
    return (seen) => test(of(seen));
  };

/** Address blocks, parsed once; the address (`of`) parsed once per check. */
const cidrs =
  (of: (seen: Seen) => AddressBytes | null) =>
  (blocks: readonly string[]): Test => {
    const networks = blocks.map(parseNetwork);
    return (seen) => {
      const address = of(seen);
      return networks.some((n) => inNetwork(address, n));
    };
  };

/** Every test given passes (null: none given, matches). */
function all(tests: readonly (Test | null)[]): Test | null {
  const given = tests.filter((t): t is Test => t !== null);
  if (given.length === 0) return null;
  if (given.length === 1) return given[0] as Test;
  return (seen) => given.every((t) => t(seen));
}

/** HTTP-only fields, on a TCP connection: false in an ALLOW rule, ignored (true) in a DENY one. */
const httpOnly = (test: Test | null, deny: boolean): Test | null =>
  test === null ? null : (seen) => (seen.facts.request === null ? deny : test(seen));

const principal = (seen: Seen): string | null => seen.principal;
const requestPrincipal = (seen: Seen): string | null => seen.facts.auth?.principal ?? null;
const namespace = (seen: Seen): string | null => seen.namespace;
const sourceIp = (seen: Seen): AddressBytes | null =>
  seen.sourceBytes === undefined
    ? (seen.sourceBytes = addressBytes(seen.facts.sourceIp))
    : seen.sourceBytes;
const destinationIp = (seen: Seen): AddressBytes | null =>
  seen.destinationBytes === undefined
    ? (seen.destinationBytes = addressBytes(seen.facts.destinationIp))
    : seen.destinationBytes;
const method = (seen: Seen): string | null => seen.facts.request?.method ?? null;
const path = (seen: Seen): string | null => {
  const request = seen.facts.request;
  return request === null ? null : (seen.path ??= normalizedPath(request.path));
};
const host = (seen: Seen): string | null => {
  const request = seen.facts.request;
  if (request === null) return null;
  if (seen.host === undefined) seen.host = request.header('host')?.toLowerCase() ?? null;
  return seen.host;
};

function sourceTest(s: AuthorizationSource, deny: boolean): Test | null {
  return all([
    field(s.principals, s.notPrincipals, strings(principal)),
    httpOnly(field(s.requestPrincipals, s.notRequestPrincipals, strings(requestPrincipal)), deny),
    field(s.namespaces, s.notNamespaces, strings(namespace)),
    field(s.ipBlocks, s.notIpBlocks, cidrs(sourceIp)),
    field(s.remoteIpBlocks, s.notRemoteIpBlocks, cidrs(sourceIp)),
  ]);
}

function operationTest(o: AuthorizationOperation, deny: boolean): Test | null {
  return all([
    field(o.ports, o.notPorts, (ports) => {
      const set = new Set(ports);
      return (seen) => set.has(seen.facts.destinationPort);
    }),
    httpOnly(field(o.methods, o.notMethods, strings(method)), deny),
    httpOnly(field(o.paths, o.notPaths, strings(path)), deny),
    httpOnly(field(o.hosts, o.notHosts, strings(host, true)), deny),
  ]);
}

const HEADER_KEY = /^request\.headers\[(.+)\]$/;
const CLAIM_KEY = /^request\.auth\.claims((?:\[[^\]]+\])+)$/;

/** Any of the values (a list claim's items, the audiences) matches a pattern. */
const anyOf =
  (of: (seen: Seen) => readonly string[]) =>
  (patterns: readonly string[]): Test => {
    const test = anyString(patterns);
    return (seen) => of(seen).some((v) => test(v));
  };

function conditionTest(c: AuthorizationCondition, deny: boolean): Test | null {
  const header = HEADER_KEY.exec(c.key);
  if (header !== null) {
    const name = header[1] as string;
    const value = (seen: Seen): string | null => seen.facts.request?.header(name) ?? null;
    return httpOnly(field(c.values, c.notValues, strings(value)), deny);
  }
  const claim = CLAIM_KEY.exec(c.key);
  if (claim !== null) {
    const path = [...(claim[1] as string).matchAll(/\[([^\]]+)\]/g)].map((m) => m[1] as string);
    return httpOnly(
      field(
        c.values,
        c.notValues,
        anyOf((seen) => asStrings(claimAt(seen.facts.auth?.claims ?? {}, path))),
      ),
      deny,
    );
  }
  switch (c.key) {
    case 'request.auth.principal':
      return httpOnly(field(c.values, c.notValues, strings(requestPrincipal)), deny);
    case 'request.auth.presenter':
      return httpOnly(
        field(
          c.values,
          c.notValues,
          strings((seen) => seen.facts.auth?.presenter ?? null),
        ),
        deny,
      );
    case 'request.auth.audiences':
      return httpOnly(
        field(
          c.values,
          c.notValues,
          anyOf((seen) => seen.facts.auth?.audiences ?? []),
        ),
        deny,
      );
    case 'source.ip':
    case 'remote.ip':
      return field(c.values, c.notValues, cidrs(sourceIp));
    case 'destination.ip':
      return field(c.values, c.notValues, cidrs(destinationIp));
    case 'destination.port':
      return field(c.values, c.notValues, (values) => {
        const set = new Set(values);
        return (seen) => set.has(String(seen.facts.destinationPort));
      });
    case 'source.principal':
      return field(c.values, c.notValues, strings(principal));
    case 'source.namespace':
      return field(c.values, c.notValues, strings(namespace));
    default:
      // A key the validator would have refused: an ALLOW rule with it matches nothing, a DENY
      // rule is taken without it.
      return deny ? null : () => false;
  }
}

/** Any of the tests passes; a list given empty matches nothing, one absent anything. */
function some<T>(list: readonly T[] | undefined, make: (item: T) => Test | null): Test | null {
  if (list === undefined) return null;
  const tests = list.map(make);
  // An entry with no field matches anything: so does the list.
  if (tests.includes(null)) return null;
  const given = tests as Test[];
  return (seen) => given.some((t) => t(seen));
}

function ruleTest(rule: AuthorizationRule, deny: boolean): Test {
  return (
    all([
      some(rule.from, (s) => sourceTest(s, deny)),
      some(rule.to, (o) => operationTest(o, deny)),
      all((rule.when ?? []).map((c) => conditionTest(c, deny))),
    ]) ?? (() => true)
  );
}

interface CompiledPolicy {
  readonly name: string;
  /** Any rule matches (none: the policy matches nothing). */
  readonly rules: readonly Test[];
}

/** A workload's AuthorizationPolicies compiled once per configuration: no work per request but the checks. */
export interface CompiledAuthorization {
  readonly deny: readonly CompiledPolicy[];
  readonly allow: readonly CompiledPolicy[];
}

/** null when the workload has no policy (every request goes on, and needs no facts). */
export function compileAuthorization(
  policies: readonly AuthorizationPolicyRules[] | undefined,
): CompiledAuthorization | null {
  if (policies === undefined || policies.length === 0) return null;
  const compile = (p: AuthorizationPolicyRules): CompiledPolicy => ({
    name: p.name,
    rules: p.rules.map((r) => ruleTest(r, p.action === 'DENY')),
  });
  return {
    deny: policies.filter((p) => p.action === 'DENY').map(compile),
    allow: policies.filter((p) => p.action === 'ALLOW').map(compile),
  };
}

/** The decision of a workload's compiled policies on one request or connection. */
export function decide(
  compiled: CompiledAuthorization,
  facts: AuthorizationFacts,
): AuthorizationDecision {
  const principal = principalOf(facts.peer);
  const seen: Seen = { principal, namespace: namespaceOf(principal), facts };
  for (const p of compiled.deny) {
    for (const rule of p.rules) if (rule(seen)) return { allowed: false, policy: p.name };
  }
  for (const p of compiled.allow) {
    for (const rule of p.rules) if (rule(seen)) return ALLOWED;
  }
  return compiled.allow.length > 0 ? { allowed: false, policy: null } : ALLOWED;
}

/** The decision of a workload's policies (compiled for this one check). */
export function authorize(
  policies: readonly AuthorizationPolicyRules[],
  facts: AuthorizationFacts,
): AuthorizationDecision {
  const compiled = compileAuthorization(policies);
  return compiled === null ? ALLOWED : decide(compiled, facts);
}

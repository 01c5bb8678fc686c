// Istio's AuthorizationPolicy (security.istio.io), read into the wire form the proxy enforces
// (api/mesh.ts "Authorization"). What Mooring cannot enforce is a problem that names the field:
// CUSTOM (no external authorizer), `targetRef(s)` (no Gateway), path templates, and keys of
// `when` it does not know. Request principals and `request.auth.*` come from the request's JWT
// (RequestAuthentication). A policy with a problem is refused by the admission webhook; one that reaches the
// mesh anyway (no webhook, or a file) is not dropped, which would open what it closes: it stands
// in closed, as Istio's own fallbacks do: a DENY (or CUSTOM) policy denies every request of the
// workloads it selects, an ALLOW policy allows none by itself (an AUDIT one decides nothing).
// Pure.

import type {
  AuthorizationCondition,
  AuthorizationOperation,
  AuthorizationRule,
  AuthorizationSource,
} from '../api/mesh';
import { parseCidr } from '../ip';
import { Fields, isObject, type Json } from './fields';
import type { AuthorizationPolicyObject, Meta } from './objects';

const ACTIONS = ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'] as const;

/** `source` fields: strings, or CIDRs. */
const SOURCE_STRINGS = [
  'principals',
  'notPrincipals',
  'requestPrincipals',
  'notRequestPrincipals',
  'namespaces',
  'notNamespaces',
] as const;
const SOURCE_CIDRS = ['ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks'] as const;
const OPERATION_STRINGS = [
  'hosts',
  'notHosts',
  'methods',
  'notMethods',
  'paths',
  'notPaths',
] as const;
const OPERATION_PORTS = ['ports', 'notPorts'] as const;

/** `when` keys whose values are CIDRs; then the others Mooring knows. */
const CIDR_KEYS = new Set(['source.ip', 'remote.ip', 'destination.ip']);
const PLAIN_KEYS = new Set([
  'source.namespace',
  'source.principal',
  'destination.port',
  'request.auth.principal',
  'request.auth.audiences',
  'request.auth.presenter',
]);
const HEADER_KEY = /^request\.headers\[([^\]]+)\]$/;
/** `request.auth.claims[name]`, `[a][b]` for a nested claim. */
const CLAIM_KEY = /^request\.auth\.claims(\[[^\]]+\])+$/;

/** An Istio string match: `*` only at one end (or alone), never in the middle. */
function stringMatch(f: Fields, value: unknown, field: string): string | undefined {
  const text = f.string(value, field);
  if (text === undefined) return undefined;
  if (text === '') {
    f.problem(field, 'must not be empty');
    return undefined;
  }
  const inner = text.length > 1 ? text.slice(1, -1) : '';
  if (inner.includes('*')) {
    f.problem(field, `${JSON.stringify(text)} has "*" inside: only "*", "prefix*" and "*suffix"`);
    return undefined;
  }
  if (text.length > 1 && text.startsWith('*') && text.endsWith('*')) {
    f.problem(field, `${JSON.stringify(text)} has "*" at both ends: only one`);
    return undefined;
  }
  return text;
}

function cidr(f: Fields, value: unknown, field: string): string | undefined {
  const text = f.string(value, field);
  if (text === undefined) return undefined;
  const parsed = parseCidr(text);
  if (parsed === undefined) {
    f.problem(field, `${JSON.stringify(text)} is not an IPv4 or IPv6 address or CIDR`);
  }
  return parsed;
}

function port(f: Fields, value: unknown, field: string): number | undefined {
  // Istio's ports are strings; a number is taken as well.
  const text = typeof value === 'number' ? String(value) : f.string(value, field);
  if (text === undefined) return undefined;
  const n = /^[0-9]{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 65535)) {
    f.problem(field, `${JSON.stringify(text)} is not a port number from 1 to 65535`);
    return undefined;
  }
  return n;
}

/** A list field: each entry read by `read`; an empty list is absent (Istio: not set). */
function list<T>(
  f: Fields,
  value: unknown,
  field: string,
  read: (f: Fields, v: unknown, at: string) => T | undefined,
): T[] | undefined {
  const out: T[] = [];
  for (const [i, v] of f.array(value, field).entries()) {
    const item = read(f, v, `${field}[${i}]`);
    if (item !== undefined) out.push(item);
  }
  return out.length === 0 ? undefined : out;
}

function readPaths(f: Fields, value: unknown, field: string): string | undefined {
  if (typeof value === 'string' && (value.includes('{*}') || value.includes('{**}'))) {
    f.problem(field, `${JSON.stringify(value)}: path templates ({*}, {**}) are not supported`);
    return undefined;
  }
  return stringMatch(f, value, field);
}

function readSource(f: Fields, raw: unknown, field: string): AuthorizationSource | undefined {
  const s = f.object(raw, field);
  if (s === undefined) return undefined;
  const out: Record<string, readonly string[]> = {};
  for (const key of SOURCE_STRINGS) {
    const v = list(f, s[key], `${field}.${key}`, stringMatch);
    if (v !== undefined) out[key] = v;
  }
  for (const key of SOURCE_CIDRS) {
    const v = list(f, s[key], `${field}.${key}`, cidr);
    if (v !== undefined) out[key] = v;
  }
  return out;
}

function readOperation(f: Fields, raw: unknown, field: string): AuthorizationOperation | undefined {
  const o = f.object(raw, field);
  if (o === undefined) return undefined;
  const out: Record<string, readonly (string | number)[]> = {};
  for (const key of OPERATION_STRINGS) {
    const read = key === 'paths' || key === 'notPaths' ? readPaths : stringMatch;
    const v = list(f, o[key], `${field}.${key}`, read);
    if (v !== undefined) out[key] = v;
  }
  for (const key of OPERATION_PORTS) {
    const v = list(f, o[key], `${field}.${key}`, port);
    if (v !== undefined) out[key] = v;
  }
  return out;
}

function readCondition(f: Fields, raw: unknown, field: string): AuthorizationCondition | undefined {
  const c = f.object(raw, field);
  if (c === undefined) return undefined;
  const key = f.string(c.key, `${field}.key`);
  if (key === undefined || key === '') {
    f.problem(`${field}.key`, 'is required');
    return undefined;
  }
  const header = HEADER_KEY.exec(key);
  const read = CIDR_KEYS.has(key)
    ? cidr
    : key === 'destination.port'
      ? (g: Fields, v: unknown, at: string) => {
          const n = port(g, v, at);
          return n === undefined ? undefined : String(n);
        }
      : stringMatch;
  if (!CIDR_KEYS.has(key) && !PLAIN_KEYS.has(key) && header === null && !CLAIM_KEY.test(key)) {
    f.problem(
      `${field}.key`,
      `${JSON.stringify(key)} is not a key Mooring reads: source.ip, remote.ip, source.namespace, source.principal, destination.ip, destination.port, request.headers[<name>], request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[<name>]`,
    );
    return undefined;
  }
  const values = list(f, c.values, `${field}.values`, read);
  const notValues = list(f, c.notValues, `${field}.notValues`, read);
  if (values === undefined && notValues === undefined) {
    f.problem(field, 'needs values or notValues');
    return undefined;
  }
  return {
    key: header === null ? key : `request.headers[${(header[1] as string).toLowerCase()}]`,
    ...(values === undefined ? {} : { values }),
    ...(notValues === undefined ? {} : { notValues }),
  };
}

function readRule(f: Fields, raw: unknown, field: string): AuthorizationRule | undefined {
  const r = f.object(raw, field);
  if (r === undefined) return undefined;
  const wrapped = <T>(
    name: 'from' | 'to',
    inner: 'source' | 'operation',
    read: (g: Fields, v: unknown, at: string) => T | undefined,
  ): T[] | undefined =>
    list(f, r[name], `${field}.${name}`, (g, v, at) => {
      if (!isObject(v) || v[inner] === undefined || v[inner] === null) {
        g.problem(at, `must be an object with "${inner}"`);
        return undefined;
      }
      return read(g, v[inner], `${at}.${inner}`);
    });
  const from = wrapped('from', 'source', readSource);
  const to = wrapped('to', 'operation', readOperation);
  const when = list(f, r.when, `${field}.when`, readCondition);
  return {
    ...(from === undefined ? {} : { from }),
    ...(to === undefined ? {} : { to }),
    ...(when === undefined ? {} : { when }),
  };
}

/** `targetRef(s)`: a policy attached to a Gateway or Service, which Mooring does not do. */
export function refuseTargetRefs(f: Fields, spec: Json): void {
  for (const key of ['targetRef', 'targetRefs'] as const) {
    if (spec[key] !== undefined && spec[key] !== null) {
      f.problem(
        `spec.${key}`,
        'attaches a policy to a Gateway or Service, which Mooring does not do: use spec.selector',
      );
    }
  }
}

/** spec.selector.matchLabels, or null (none, or empty). */
export function readSelector(f: Fields, spec: Json): Record<string, string> | null {
  const selector = f.object(spec.selector, 'spec.selector');
  const labels =
    selector === undefined ? {} : f.stringMap(selector.matchLabels, 'spec.selector.matchLabels');
  return Object.keys(labels).length > 0 ? labels : null;
}

export function readAuthorizationPolicy(
  raw: Json,
  f: Fields,
  meta: Meta,
): AuthorizationPolicyObject {
  const spec = f.object(raw.spec, 'spec') ?? {};
  const selector = readSelector(f, spec);
  refuseTargetRefs(f, spec);
  const actionText = spec.action ?? 'ALLOW';
  const action = ACTIONS.find((a) => a === actionText);
  if (action === undefined) {
    f.problem(
      'spec.action',
      `must be one of ${ACTIONS.join(', ')}, not ${JSON.stringify(actionText)}`,
    );
  } else if (action === 'CUSTOM') {
    f.problem(
      'spec.action',
      'CUSTOM needs an external authorizer (an extension provider), which Mooring does not have',
    );
  }
  if (spec.provider !== undefined && action !== 'CUSTOM') {
    f.problem('spec.provider', 'is only for action CUSTOM');
  }
  const rules = list(f, spec.rules, 'spec.rules', readRule) ?? [];
  return {
    kind: 'AuthorizationPolicy',
    meta,
    selector,
    action: action === undefined || action === 'CUSTOM' ? 'DENY' : action,
    rules,
  };
}

/**
 * What stands in for a policy with problems: the workloads it selects (all of its namespace when
 * the selector itself cannot be read) get a DENY of every request, or an ALLOW of none.
 */
export function failClosedPolicy(
  raw: Json,
  meta: Meta,
  problems: readonly { readonly field: string; readonly message: string }[],
): AuthorizationPolicyObject {
  const spec = isObject(raw.spec) ? raw.spec : {};
  const f = new Fields();
  const selector = readSelector(f, spec);
  const allow = spec.action === undefined || spec.action === null || spec.action === 'ALLOW';
  const action = allow ? 'ALLOW' : spec.action === 'AUDIT' ? 'AUDIT' : 'DENY';
  const first = problems[0];
  return {
    kind: 'AuthorizationPolicy',
    meta,
    selector: f.problems.length > 0 ? null : selector,
    action,
    rules: action === 'DENY' ? [{}] : [],
    failClosed: first === undefined ? 'invalid' : `${first.field}: ${first.message}`,
  };
}

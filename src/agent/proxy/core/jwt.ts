// Istio's RequestAuthentication on the inbound side: the request's JWT, if it has one, is verified
// against the provider of its issuer (signature by the provider's JWKS, `exp` and `nbf` with
// Envoy's 60 s of leeway, `aud` when the provider names audiences). A request without a token
// goes on with no request principal; one whose token fails is refused (401) with Envoy's
// message. The providers are compiled once per configuration (keys imported, locations merged);
// a verified token is kept (up to its `exp`) so that a client sending the same one again costs
// no signature check. Signatures are node:crypto's.

import { constants, createPublicKey, verify, type KeyObject } from 'node:crypto';
import type { JwtProvider } from '../../../api/mesh';
import { queryParam, type RequestView } from './route';

/** What a verified token says, for AuthorizationPolicy (`request.auth.*`, `requestPrincipals`). */
export interface RequestAuth {
  /** `<iss>/<sub>`. */
  readonly principal: string;
  readonly audiences: readonly string[];
  /** `azp`, or null. */
  readonly presenter: string | null;
  readonly claims: Readonly<Record<string, unknown>>;
}

export type JwtOutcome =
  | { readonly kind: 'none' }
  | {
      readonly kind: 'verified';
      readonly auth: RequestAuth;
      /** The header the token came in, when it is not forwarded to the app. */
      readonly remove: string | null;
      /** Header lines (name, value, ...) for the app: the payload, claims. */
      readonly add: readonly string[];
    }
  | { readonly kind: 'failed'; readonly message: string };

/** Envoy's jwt_authn leeway on `exp` and `nbf`. */
const CLOCK_SKEW_S = 60;
/** Verified tokens kept per configuration. */
const CACHE_SIZE = 256;

type Location =
  | { readonly kind: 'header'; readonly name: string; readonly prefix: string }
  | { readonly kind: 'param'; readonly name: string }
  | { readonly kind: 'cookie'; readonly name: string };

const DEFAULT_LOCATIONS: readonly Location[] = [
  { kind: 'header', name: 'authorization', prefix: 'Bearer ' },
  { kind: 'param', name: 'access_token' },
];

interface Key {
  readonly kid: string | null;
  readonly alg: string | null;
  readonly kty: string;
  readonly key: KeyObject;
}

interface Provider {
  readonly spec: JwtProvider;
  /** null: the JWKS could not be had (every token of this issuer fails). */
  readonly keys: readonly Key[] | null;
}

interface Verified {
  readonly auth: RequestAuth;
  readonly add: readonly string[];
  readonly issuer: string;
  /** `exp` in seconds, or Infinity. */
  readonly exp: number;
}

export interface CompiledJwt {
  readonly byIssuer: ReadonlyMap<string, Provider>;
  readonly locations: readonly Location[];
  readonly cache: Map<string, Verified>;
  /**
   * The headers the providers write (payload, claims): removed from every request first, so that
   * a client cannot send one of its own making.
   */
  readonly outputs: readonly string[];
}

function importKeys(jwks: string | null): Key[] | null {
  if (jwks === null) return null;
  try {
    const parsed = JSON.parse(jwks) as { keys?: unknown };
    if (!Array.isArray(parsed.keys)) return null;
    const out: Key[] = [];
    for (const k of parsed.keys as Record<string, unknown>[]) {
      try {
        out.push({
          kid: typeof k.kid === 'string' ? k.kid : null,
          alg: typeof k.alg === 'string' ? k.alg : null,
          kty: typeof k.kty === 'string' ? k.kty : '',
          key: createPublicKey({ key: k, format: 'jwk' }),
        });
      } catch {
        // A key that cannot be used verifies nothing.
      }
    }
    return out;
  } catch {
    return null;
  }
}

/** null when the workload has no RequestAuthentication. */
export function compileJwt(providers: readonly JwtProvider[] | undefined): CompiledJwt | null {
  if (providers === undefined || providers.length === 0) return null;
  const byIssuer = new Map<string, Provider>();
  const locations: Location[] = [];
  const seen = new Set<string>();
  for (const spec of providers) {
    byIssuer.set(spec.issuer, { spec, keys: importKeys(spec.jwks) });
    const own: Location[] =
      spec.locations === undefined
        ? [...DEFAULT_LOCATIONS]
        : [
            ...spec.locations.headers.map((h) => ({ kind: 'header' as const, ...h })),
            ...spec.locations.params.map((name) => ({ kind: 'param' as const, name })),
            ...spec.locations.cookies.map((name) => ({ kind: 'cookie' as const, name })),
          ];
    for (const l of own) {
      const key = `${l.kind}|${l.name}|${l.kind === 'header' ? l.prefix : ''}`;
      if (seen.has(key)) continue;
      seen.add(key);
      locations.push(l);
    }
  }
  const outputs = new Set<string>();
  for (const spec of providers) {
    if (spec.outputPayloadToHeader !== undefined) outputs.add(spec.outputPayloadToHeader);
    for (const o of spec.outputClaimToHeaders ?? []) outputs.add(o.header);
  }
  return { byIssuer, locations, cache: new Map(), outputs: [...outputs] };
}

function decoded(value: string | null): string | null {
  if (value === null) return null;
  try {
    return decodeURIComponent(value);
  } catch {
    return null;
  }
}

function cookie(header: string | null, name: string): string | null {
  if (header === null) return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return null;
}

/** The first token the locations find, and the header it came in. */
function extract(
  view: RequestView,
  locations: readonly Location[],
): { token: string; header: string | null } | null {
  for (const l of locations) {
    if (l.kind === 'header') {
      const value = view.header(l.name);
      if (value === null || !value.startsWith(l.prefix)) continue;
      const token = value.slice(l.prefix.length).trim();
      if (token !== '') return { token, header: l.name };
    } else {
      const token =
        l.kind === 'param'
          ? decoded(queryParam(view.path, l.name))
          : cookie(view.header('cookie'), l.name);
      if (token !== null && token !== '') return { token, header: null };
    }
  }
  return null;
}

const b64url = (part: string): Buffer => Buffer.from(part, 'base64url');

function json(part: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(b64url(part).toString('utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : null;
  } catch {
    return null;
  }
}

const KTY: Readonly<Record<string, string>> = { RS: 'RSA', PS: 'RSA', ES: 'EC', Ed: 'OKP' };
const HASH: Readonly<Record<string, string>> = {
  '256': 'sha256',
  '384': 'sha384',
  '512': 'sha512',
};

function signatureOk(alg: string, key: KeyObject, data: Buffer, sig: Buffer): boolean {
  try {
    if (alg === 'EdDSA') return verify(null, data, key, sig);
    const hash = HASH[alg.slice(2)];
    if (hash === undefined) return false;
    switch (alg.slice(0, 2)) {
      case 'RS':
        return verify(hash, data, { key, padding: constants.RSA_PKCS1_PADDING }, sig);
      case 'PS':
        return verify(
          hash,
          data,
          {
            key,
            padding: constants.RSA_PKCS1_PSS_PADDING,
            saltLength: constants.RSA_PSS_SALTLEN_DIGEST,
          },
          sig,
        );
      case 'ES':
        return verify(hash, data, { key, dsaEncoding: 'ieee-p1363' }, sig);
      default:
        return false;
    }
  } catch {
    return false;
  }
}

/** A claim by its path (`['a', 'b']`: nested), or undefined. */
export function claimAt(
  claims: Readonly<Record<string, unknown>>,
  path: readonly string[],
): unknown {
  let v: unknown = claims;
  for (const part of path) {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

/** A claim's value as strings: a string, or a list's strings. */
export const asStrings = (v: unknown): string[] =>
  typeof v === 'string'
    ? [v]
    : Array.isArray(v)
      ? v.filter((x): x is string => typeof x === 'string')
      : [];

function check(c: CompiledJwt, token: string, nowS: number): Verified | string {
  const parts = token.split('.');
  if (parts.length !== 3) {
    return 'Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections';
  }
  const [h, p, s] = parts as [string, string, string];
  const header = json(h);
  const payload = json(p);
  if (header === null || payload === null) return 'Jwt header or payload is an invalid JSON';
  const issuer = typeof payload.iss === 'string' ? payload.iss : '';
  const provider = c.byIssuer.get(issuer);
  if (provider === undefined) return 'Jwt issuer is not configured';
  if (provider.keys === null) return 'Jwks remote fetch is failed';
  const alg = typeof header.alg === 'string' ? header.alg : '';
  const kty = KTY[alg === 'EdDSA' ? 'Ed' : alg.slice(0, 2)];
  if (kty === undefined) return 'Jwt verification fails';
  const kid = typeof header.kid === 'string' ? header.kid : null;
  const candidates = provider.keys.filter(
    (k) => k.kty === kty && (k.alg === null || k.alg === alg) && (kid === null || k.kid === kid),
  );
  if (candidates.length === 0) return "Jwks doesn't have key to match kid or alg from Jwt";
  const data = Buffer.from(`${h}.${p}`, 'latin1');
  const sig = b64url(s);
  if (!candidates.some((k) => signatureOk(alg, k.key, data, sig))) return 'Jwt verification fails';
  const exp = typeof payload.exp === 'number' ? payload.exp : Infinity;
  if (exp + CLOCK_SKEW_S < nowS) return 'Jwt is expired';
  if (typeof payload.nbf === 'number' && payload.nbf - CLOCK_SKEW_S > nowS) {
    return 'Jwt not yet valid';
  }
  const audiences = asStrings(payload.aud);
  const allowed = provider.spec.audiences;
  if (allowed !== undefined && !audiences.some((a) => allowed.includes(a))) {
    return 'Audiences in Jwt are not allowed';
  }
  const add: string[] = [];
  if (provider.spec.outputPayloadToHeader !== undefined)
    add.push(provider.spec.outputPayloadToHeader, p);
  for (const o of provider.spec.outputClaimToHeaders ?? []) {
    const v = claimAt(payload, o.claim.split('.'));
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')
      add.push(o.header, String(v));
  }
  const sub = typeof payload.sub === 'string' ? payload.sub : '';
  return {
    auth: {
      principal: `${issuer}/${sub}`,
      audiences,
      presenter: typeof payload.azp === 'string' ? payload.azp : null,
      claims: payload,
    },
    add,
    issuer,
    exp,
  };
}

/** The request's JWT, verified by the workload's compiled providers. */
export function authenticate(c: CompiledJwt, view: RequestView, nowMs: number): JwtOutcome {
  const found = extract(view, c.locations);
  if (found === null) return { kind: 'none' };
  const nowS = nowMs / 1000;
  let verified = c.cache.get(found.token);
  if (verified !== undefined && verified.exp + CLOCK_SKEW_S < nowS) {
    c.cache.delete(found.token);
    verified = undefined;
  }
  if (verified === undefined) {
    const result = check(c, found.token, nowS);
    if (typeof result === 'string') return { kind: 'failed', message: result };
    verified = result;
    if (c.cache.size >= CACHE_SIZE) c.cache.delete(c.cache.keys().next().value as string);
    c.cache.set(found.token, verified);
  }
  const provider = c.byIssuer.get(verified.issuer);
  const remove =
    found.header !== null && provider?.spec.forwardOriginalToken !== true ? found.header : null;
  return { kind: 'verified', auth: verified.auth, remove, add: verified.add };
}

// Istio's RequestAuthentication (security.istio.io v1, v1beta1): the JWTs a workload's proxy
// verifies. Each of `jwtRules` names an issuer and where its keys are (`jwks` inline, `jwksUri`,
// or, with neither, the issuer's OpenID configuration); the server fetches them and pushes them
// inline. Every field is checked and named when wrong. Pure (the keys of an inline `jwks` are
// parsed with node:crypto to refuse one the proxy could not use).

import { createPublicKey } from 'node:crypto';
import type { JwtLocations } from '../api/mesh';
import { readSelector, refuseTargetRefs } from './authorization-validate';
import { isObject, type Fields, type Json } from './fields';
import type { JwtRuleSpec, Meta, RequestAuthenticationObject } from './objects';
import { headerName, parseDuration } from './traffic-validate';

/** A JSON Web Key Set's text: a problem names the key that cannot be used. */
export function jwksProblem(text: string): string | null {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return 'is not JSON';
  }
  if (!isObject(parsed) || !Array.isArray(parsed.keys)) return 'is not a JWKS: no "keys" list';
  for (const [i, key] of parsed.keys.entries()) {
    if (!isObject(key)) return `keys[${i}] is not an object`;
    try {
      createPublicKey({ key: key, format: 'jwk' });
    } catch (err) {
      return `keys[${i}] is not a public key Mooring can use (${(err as Error).message})`;
    }
  }
  return null;
}

function url(f: Fields, value: unknown, field: string): string | null {
  const text = f.string(value, field);
  if (text === undefined || text === '') return null;
  let parsed: URL;
  try {
    parsed = new URL(text);
  } catch {
    f.problem(field, `${JSON.stringify(text)} is not a URL`);
    return null;
  }
  if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') {
    f.problem(field, `${JSON.stringify(text)} must be an http or https URL`);
    return null;
  }
  return text;
}

function strings(f: Fields, value: unknown, field: string): string[] {
  const out: string[] = [];
  for (const [i, v] of f.array(value, field).entries()) {
    const text = f.string(v, `${field}[${i}]`);
    if (text === undefined) continue;
    if (text === '') f.problem(`${field}[${i}]`, 'must not be empty');
    else out.push(text);
  }
  return out;
}

function readLocations(f: Fields, rule: Json, field: string): JwtLocations | null {
  const headers: { name: string; prefix: string }[] = [];
  for (const [i, h] of f.array(rule.fromHeaders, `${field}.fromHeaders`).entries()) {
    const at = `${field}.fromHeaders[${i}]`;
    const header = f.object(h, at);
    if (header === undefined) continue;
    const name = f.string(header.name, `${at}.name`);
    if (name === undefined || name === '') {
      f.problem(`${at}.name`, 'is required');
      continue;
    }
    const lower = headerName(f, name, `${at}.name`, true);
    if (lower !== null)
      headers.push({ name: lower, prefix: f.string(header.prefix, `${at}.prefix`) ?? '' });
  }
  const params = strings(f, rule.fromParams, `${field}.fromParams`);
  const cookies = strings(f, rule.fromCookies, `${field}.fromCookies`);
  if (headers.length === 0 && params.length === 0 && cookies.length === 0) return null;
  return { headers, params, cookies };
}

function readRule(f: Fields, raw: unknown, field: string): JwtRuleSpec | null {
  const rule = f.object(raw, field);
  if (rule === undefined) return null;
  const issuer = f.string(rule.issuer, `${field}.issuer`);
  if (issuer === undefined || issuer === '') {
    f.problem(`${field}.issuer`, 'is required');
    return null;
  }
  const jwksUri = url(f, rule.jwksUri, `${field}.jwksUri`);
  let jwks = f.string(rule.jwks, `${field}.jwks`) ?? null;
  if (jwks === '') jwks = null;
  if (jwks !== null) {
    const problem = jwksProblem(jwks);
    if (problem !== null) f.problem(`${field}.jwks`, problem);
    if (jwksUri !== null) f.warn(`${field}.jwksUri`, 'is not used: jwks is given inline');
  }
  if (jwks === null && jwksUri === null) {
    // The keys come from the issuer's OpenID configuration: the issuer must be a URL then.
    const protocol = URL.canParse(issuer) ? new URL(issuer).protocol : '';
    if (protocol !== 'https:' && protocol !== 'http:') {
      f.problem(
        `${field}.jwksUri`,
        `is required when the issuer ${JSON.stringify(issuer)} is not a URL (its keys cannot be discovered): give jwksUri or jwks`,
      );
    }
  }
  const locations = readLocations(f, rule, field);
  const outputPayloadText = f.string(rule.outputPayloadToHeader, `${field}.outputPayloadToHeader`);
  const outputPayloadToHeader =
    outputPayloadText === undefined || outputPayloadText === ''
      ? null
      : headerName(f, outputPayloadText, `${field}.outputPayloadToHeader`, true);
  const outputClaimToHeaders: { header: string; claim: string }[] = [];
  for (const [i, o] of f
    .array(rule.outputClaimToHeaders, `${field}.outputClaimToHeaders`)
    .entries()) {
    const at = `${field}.outputClaimToHeaders[${i}]`;
    const out = f.object(o, at);
    if (out === undefined) continue;
    const header = f.string(out.header, `${at}.header`) ?? '';
    const claim = f.string(out.claim, `${at}.claim`) ?? '';
    if (header === '') f.problem(`${at}.header`, 'is required');
    if (claim === '') f.problem(`${at}.claim`, 'is required');
    const name = header === '' ? null : headerName(f, header, `${at}.header`, true);
    if (name !== null && claim !== '') outputClaimToHeaders.push({ header: name, claim });
  }
  let timeoutMs: number | null = null;
  const timeoutText = f.string(rule.timeout, `${field}.timeout`);
  if (timeoutText !== undefined) {
    timeoutMs = parseDuration(timeoutText);
    if (timeoutMs === null || timeoutMs <= 0) {
      f.problem(
        `${field}.timeout`,
        `${JSON.stringify(timeoutText)} is not a positive duration such as "5s"`,
      );
      timeoutMs = null;
    }
  }
  return {
    issuer,
    audiences: strings(f, rule.audiences, `${field}.audiences`),
    jwks,
    jwksUri: jwks === null ? jwksUri : null,
    locations,
    forwardOriginalToken:
      f.boolean(rule.forwardOriginalToken, `${field}.forwardOriginalToken`) ?? false,
    outputPayloadToHeader,
    outputClaimToHeaders,
    timeoutMs,
  };
}

export function readRequestAuthentication(
  raw: Json,
  f: Fields,
  meta: Meta,
): RequestAuthenticationObject {
  const spec = f.object(raw.spec, 'spec') ?? {};
  const selector = readSelector(f, spec);
  refuseTargetRefs(f, spec);
  const jwtRules: JwtRuleSpec[] = [];
  for (const [i, r] of f.array(spec.jwtRules, 'spec.jwtRules').entries()) {
    const rule = readRule(f, r, `spec.jwtRules[${i}]`);
    if (rule === null) continue;
    if (jwtRules.some((o) => o.issuer === rule.issuer)) {
      f.problem(`spec.jwtRules[${i}].issuer`, `${JSON.stringify(rule.issuer)} has a rule already`);
      continue;
    }
    jwtRules.push(rule);
  }
  return { kind: 'RequestAuthentication', meta, selector, jwtRules };
}

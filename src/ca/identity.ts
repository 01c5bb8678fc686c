// SPIFFE IDs (https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md):
// `spiffe://<trust-domain>/<path>`, trust domain of lowercase letters, digits, `.`, `-`, `_`
// (no port, no userinfo), path segments non-empty, not `.` or `..`, of letters, digits, `.`,
// `-`, `_`; no query, no fragment, no percent-encoding, no trailing slash. Workloads are
// `spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`.

import { MooringError } from '../errors';
import type { WorkloadIdentity } from './ports';

export interface SpiffeId {
  readonly trustDomain: string;
  /** The path with its leading slash, `` for the trust domain's own ID. */
  readonly path: string;
  readonly segments: readonly string[];
}

const SCHEME = 'spiffe://';
const TRUST_DOMAIN = /^[a-z0-9._-]+$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;
const MAX_LENGTH = 2048;
const MAX_TRUST_DOMAIN_LENGTH = 255;

const invalid = (id: string, reason: string): MooringError =>
  new MooringError('CA_ERR_SPIFFE_ID', `invalid SPIFFE ID "${id.slice(0, 300)}": ${reason}`);

/** Why a trust domain name is invalid, or null. */
export function trustDomainProblem(td: string): string | null {
  if (td === '') return 'the trust domain is empty';
  if (td.length > MAX_TRUST_DOMAIN_LENGTH) return 'the trust domain is longer than 255 characters';
  if (td.includes('@')) return 'a trust domain has no userinfo';
  if (td.includes(':')) return 'a trust domain has no port';
  if (!TRUST_DOMAIN.test(td)) {
    return 'the trust domain may only hold lowercase letters, digits, ".", "-" and "_"';
  }
  return null;
}

/** Why a path segment is invalid, or null. */
export function segmentProblem(segment: string): string | null {
  if (segment === '') return 'a path segment is empty';
  if (segment === '.' || segment === '..') return 'a path segment is "." or ".."';
  if (!SEGMENT.test(segment)) {
    return `path segment "${segment.slice(0, 64)}" may only hold letters, digits, ".", "-" and "_"`;
  }
  return null;
}

/** Parses a SPIFFE ID; throws CA_ERR_SPIFFE_ID naming the rule it breaks. */
export function parseSpiffeId(id: string): SpiffeId {
  if (id.length > MAX_LENGTH) throw invalid(id, 'longer than 2048 bytes');
  if (!id.startsWith(SCHEME)) throw invalid(id, 'the scheme must be "spiffe://"');
  const rest = id.slice(SCHEME.length);
  if (rest.includes('?')) throw invalid(id, 'a SPIFFE ID has no query');
  if (rest.includes('#')) throw invalid(id, 'a SPIFFE ID has no fragment');
  if (rest.includes('%')) throw invalid(id, 'a SPIFFE ID has no percent-encoding');
  const slash = rest.indexOf('/');
  const trustDomain = slash === -1 ? rest : rest.slice(0, slash);
  const tdProblem = trustDomainProblem(trustDomain);
  if (tdProblem !== null) throw invalid(id, tdProblem);
  if (slash === -1) return { trustDomain, path: '', segments: [] };
  const path = rest.slice(slash);
  if (path === '/') throw invalid(id, 'a SPIFFE ID has no trailing slash');
  const segments = path.slice(1).split('/');
  for (const segment of segments) {
    const problem = segmentProblem(segment);
    if (problem !== null) throw invalid(id, problem);
  }
  return { trustDomain, path, segments };
}

export const formatSpiffeId = (id: SpiffeId): string => `${SCHEME}${id.trustDomain}${id.path}`;

/**
 * The SPIFFE ID of a workload to be certified: valid, in `trustDomain`, and naming a workload
 * (a path), not the trust domain itself.
 */
export function workloadSpiffeId(id: string, trustDomain: string): SpiffeId {
  const parsed = parseSpiffeId(id);
  if (parsed.trustDomain !== trustDomain) {
    throw invalid(id, `it is outside the trust domain "${trustDomain}"`);
  }
  if (parsed.segments.length === 0) throw invalid(id, 'it names the trust domain, not a workload');
  return parsed;
}

/** `spiffe://<td>/ns/<namespace>/sa/<serviceAccount>`. */
export function spiffeIdOf(trustDomain: string, who: WorkloadIdentity): string {
  const id = `${SCHEME}${trustDomain}/ns/${who.namespace}/sa/${who.serviceAccount}`;
  for (const segment of [who.namespace, who.serviceAccount]) {
    const problem = segmentProblem(segment);
    if (problem !== null) throw invalid(id, problem);
  }
  parseSpiffeId(id);
  return id;
}

/** The namespace and service account of a `/ns/<ns>/sa/<sa>` ID, or null for other paths. */
export function workloadOf(id: SpiffeId): WorkloadIdentity | null {
  const [ns, namespace, sa, serviceAccount, ...rest] = id.segments;
  if (ns !== 'ns' || sa !== 'sa' || namespace === undefined || serviceAccount === undefined) {
    return null;
  }
  return rest.length === 0 ? { namespace, serviceAccount } : null;
}

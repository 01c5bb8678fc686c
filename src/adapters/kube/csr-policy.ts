// What the Kubernetes CSR signer (signerName mooring.dev/workload) does with one
// CertificateSigningRequest, as pure functions: ignore it, sign it (for which SPIFFE ID and how
// long), or mark it Failed with a reason. And whether the optional auto-approver approves it.
// The identity is the requester's (spec.username), never anything the CSR asks for.

import type { RequestedNames } from '../../ca/csr';
import { CSR_SIGNER_NAME } from '../../constants';
import type { ErrorCode } from '../../errors';
import type { KubeObject } from './api';
import { spiffeIdOf } from '../../ca/identity';
import { serviceAccountOfUsername } from './identity';

export interface CsrCondition {
  readonly type: string;
  readonly status?: string;
  readonly reason?: string;
  readonly message?: string;
  readonly lastUpdateTime?: string;
  readonly lastTransitionTime?: string;
}

export interface CertificateSigningRequest extends KubeObject {
  readonly spec?: {
    readonly request?: string;
    readonly signerName?: string;
    readonly username?: string;
    readonly uid?: string;
    readonly groups?: readonly string[];
    readonly usages?: readonly string[];
    readonly expirationSeconds?: number;
  };
  readonly status?: {
    readonly certificate?: string;
    readonly conditions?: readonly CsrCondition[];
  };
}

/** Usages a workload certificate may carry (what the CA puts in it anyway). */
export const ALLOWED_USAGES: readonly string[] = [
  'digital signature',
  'key encipherment',
  'client auth',
  'server auth',
];

export interface CsrPolicy {
  readonly trustDomain: string;
  readonly defaultTtlSeconds: number;
  readonly maxTtlSeconds: number;
}

/** Reasons of the Failed condition, stable: users and alerts match on them. */
export const FAILED_REASON = {
  requester: 'MooringRequesterNotServiceAccount',
  usages: 'MooringUsageNotAllowed',
  expiration: 'MooringExpirationTooLong',
  request: 'MooringInvalidRequest',
  keyType: 'MooringKeyTypeNotAllowed',
  names: 'MooringNamesNotAllowed',
  identity: 'MooringInvalidIdentity',
} as const;

export type CsrDecision =
  | { readonly action: 'ignore'; readonly why: string }
  | {
      readonly action: 'sign';
      readonly csrPem: string;
      readonly spiffeId: string;
      readonly ttlSeconds: number;
    }
  | { readonly action: 'fail'; readonly reason: string; readonly message: string };

const hasCondition = (csr: CertificateSigningRequest, type: string): boolean =>
  (csr.status?.conditions ?? []).some((c) => c.type === type && (c.status ?? 'True') === 'True');

export const isApproved = (csr: CertificateSigningRequest): boolean =>
  hasCondition(csr, 'Approved');
export const isDenied = (csr: CertificateSigningRequest): boolean => hasCondition(csr, 'Denied');
export const isFailed = (csr: CertificateSigningRequest): boolean => hasCondition(csr, 'Failed');
export const isIssued = (csr: CertificateSigningRequest): boolean =>
  (csr.status?.certificate ?? '') !== '';

/** A CSR this signer has nothing more to do with, and why; null if it still needs work. */
export function finishedOrForeign(csr: CertificateSigningRequest): string | null {
  if (csr.spec?.signerName !== CSR_SIGNER_NAME) return 'another signer';
  if (isIssued(csr)) return 'already issued';
  if (isFailed(csr)) return 'already failed';
  if (isDenied(csr)) return 'denied';
  return null;
}

/** The signer's decision for one CSR. */
export function decideSigning(csr: CertificateSigningRequest, policy: CsrPolicy): CsrDecision {
  const finished = finishedOrForeign(csr);
  if (finished !== null) return { action: 'ignore', why: finished };
  if (!isApproved(csr)) return { action: 'ignore', why: 'not approved' };
  const spec = csr.spec ?? {};

  const identity = serviceAccountOfUsername(spec.username);
  if (identity === null) {
    return {
      action: 'fail',
      reason: FAILED_REASON.requester,
      message: `the requester "${spec.username ?? ''}" is not a service account; ${CSR_SIGNER_NAME} signs only for service accounts (system:serviceaccount:<namespace>:<name>)`,
    };
  }
  const usages = spec.usages ?? [];
  const refused = usages.filter((u) => !ALLOWED_USAGES.includes(u));
  if (refused.length > 0) {
    return {
      action: 'fail',
      reason: FAILED_REASON.usages,
      message: `usages ${refused.map((u) => `"${u}"`).join(', ')} are not allowed; allowed: ${ALLOWED_USAGES.join(', ')}`,
    };
  }
  const requested = spec.expirationSeconds;
  if (requested !== undefined && requested > policy.maxTtlSeconds) {
    return {
      action: 'fail',
      reason: FAILED_REASON.expiration,
      message: `expirationSeconds ${requested} is above the maximum ${policy.maxTtlSeconds}`,
    };
  }
  const request = spec.request ?? '';
  const csrPem = Buffer.from(request, 'base64').toString('utf8');
  if (!csrPem.includes('CERTIFICATE REQUEST')) {
    return {
      action: 'fail',
      reason: FAILED_REASON.request,
      message: 'spec.request is not a PEM PKCS#10 certificate request',
    };
  }
  return {
    action: 'sign',
    csrPem,
    spiffeId: spiffeIdOf(policy.trustDomain, identity),
    ttlSeconds: requested ?? policy.defaultTtlSeconds,
  };
}

/** The Failed reason for an error the CA refused the CSR with; null: retry later instead. */
export function failedReasonOfError(code: ErrorCode): string | null {
  switch (code) {
    case 'CA_ERR_CSR':
    case 'CA_ERR_CSR_SIGNATURE':
      return FAILED_REASON.request;
    case 'CA_ERR_KEY_TYPE':
      return FAILED_REASON.keyType;
    case 'CA_ERR_SAN':
      return FAILED_REASON.names;
    case 'CA_ERR_TTL':
      return FAILED_REASON.expiration;
    case 'CA_ERR_SPIFFE_ID':
      return FAILED_REASON.identity;
    default:
      return null;
  }
}

/**
 * Whether the auto-approver approves a pending CSR: our signer, requested by a service account,
 * usages within policy, and the CSR names exactly that account's SPIFFE ID and nothing else.
 * `names` is what the (verified) CSR asks for; null when it could not be parsed or verified.
 */
export function decideApproval(
  csr: CertificateSigningRequest,
  names: RequestedNames | null,
  policy: CsrPolicy,
):
  | { readonly approve: true; readonly spiffeId: string }
  | { readonly approve: false; readonly why: string } {
  const finished = finishedOrForeign(csr);
  if (finished !== null) return { approve: false, why: finished };
  if (isApproved(csr)) return { approve: false, why: 'already approved' };
  const identity = serviceAccountOfUsername(csr.spec?.username);
  if (identity === null) return { approve: false, why: 'the requester is not a service account' };
  if ((csr.spec?.usages ?? []).some((u) => !ALLOWED_USAGES.includes(u))) {
    return { approve: false, why: 'usages outside policy' };
  }
  const expiration = csr.spec?.expirationSeconds;
  if (expiration !== undefined && expiration > policy.maxTtlSeconds) {
    return { approve: false, why: 'expirationSeconds above the maximum' };
  }
  if (names === null) return { approve: false, why: 'the CSR does not parse or verify' };
  const spiffeId = spiffeIdOf(policy.trustDomain, identity);
  const exact =
    names.uris.length === 1 &&
    names.uris[0] === spiffeId &&
    names.dnsNames.length === 0 &&
    names.ipAddresses.length === 0 &&
    names.emails.length === 0 &&
    names.otherCount === 0;
  if (!exact) return { approve: false, why: `the CSR does not name exactly ${spiffeId}` };
  return { approve: true, spiffeId };
}

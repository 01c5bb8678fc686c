// The CA's policy: what it issues and how it rotates, in its own terms. The server's
// configuration (the `ca` section of src/config/types.ts) has these fields under the same names,
// so that `config.ca` can be handed over as it is; the CA needs nothing else of the
// configuration.

import { MooringError } from '../errors';
import type { RootKeyType } from './keys';
import type { LifetimePolicy } from './profile';
import type { RotationPolicy } from './rotation';

export interface CAPolicy {
  /** Key type of a new self-signed root. */
  readonly rootKeyType: RootKeyType;
  readonly rootLifetimeSeconds: number;
  /** Common name of a new root. */
  readonly rootSubject: string;
  readonly workloadDefaultTtlSeconds: number;
  readonly workloadMaxTtlSeconds: number;
  /** notBefore is this much in the past, for clock skew. */
  readonly backdateSeconds: number;
  readonly rotation: {
    readonly auto: boolean;
    /** A rotation starts when the active root has less than this left. */
    readonly beforeExpirySeconds: number;
    /** Time between a new root joining the trust bundle and issuance moving to it. */
    readonly propagationDelaySeconds: number;
    /** How often the shell calls tick(): the slack allowed on every transition. */
    readonly checkIntervalSeconds: number;
  };
  /** Lifetime of the server's own HTTPS certificate. */
  readonly servingCertLifetimeSeconds: number;
}

/**
 * An automatic rotation that would start again right after it starts: throws CFG_ERR_INVALID
 * naming the fields (they are the `ca.*` keys of the configuration).
 */
export function checkCAPolicy(policy: CAPolicy): void {
  if (!policy.rotation.auto) return;
  const needed = policy.rotation.beforeExpirySeconds + policy.rotation.propagationDelaySeconds;
  if (policy.rootLifetimeSeconds <= needed) {
    throw new MooringError(
      'CFG_ERR_INVALID',
      `ca.rootLifetimeSeconds (${policy.rootLifetimeSeconds}) must exceed ca.rotation.beforeExpirySeconds + ` +
        `ca.rotation.propagationDelaySeconds (${needed}), or every new root would be rotated at once`,
    );
  }
}

/** The rotation policy. */
export function rotationPolicyOf(policy: CAPolicy): RotationPolicy {
  return {
    auto: policy.rotation.auto,
    beforeExpirySeconds: policy.rotation.beforeExpirySeconds,
    propagationDelaySeconds: policy.rotation.propagationDelaySeconds,
    maxIssuedLifetimeSeconds: Math.max(
      policy.workloadMaxTtlSeconds,
      policy.servingCertLifetimeSeconds,
    ),
    graceSeconds: policy.rotation.checkIntervalSeconds,
  };
}

/** Lifetimes of workload certificates. */
export const workloadLifetimes = (policy: CAPolicy): LifetimePolicy => ({
  defaultTtlSeconds: policy.workloadDefaultTtlSeconds,
  maxTtlSeconds: policy.workloadMaxTtlSeconds,
  backdateSeconds: policy.backdateSeconds,
});

/** Lifetimes of the server's serving certificate: always its configured lifetime. */
export const servingLifetimes = (policy: CAPolicy): LifetimePolicy => ({
  defaultTtlSeconds: policy.servingCertLifetimeSeconds,
  maxTtlSeconds: policy.servingCertLifetimeSeconds,
  backdateSeconds: policy.backdateSeconds,
});

// When a certificate is renewed: one rule for every holder of a certificate the CA issued (the
// workload agent, src/agent/identity/lifecycle.ts; the server's own HTTPS certificate,
// src/adapters/tls-reloader.ts). Pure functions of times and a random number in [0, 1).

export interface RenewalPolicy {
  /** Fraction of the lifetime after which the certificate is renewed (the agent's default 0.5). */
  readonly renewFraction: number;
  /** Jitter: ± this fraction of the window between the renewal time and expiry. */
  readonly jitterFraction: number;
}

/** The agent's jitter: Pods of one Deployment, started together, do not renew together. */
export const DEFAULT_JITTER_FRACTION = 0.1;

/**
 * The start of a certificate's useful life for renewal purposes: the time it was received,
 * clamped to its validity. The CA backdates notBefore (a minute, for clock skew); counting from
 * notBefore would renew a 2-minute certificate almost at once.
 */
export function effectiveStart(notBefore: Date, notAfter: Date, receivedAt: Date): Date {
  const t = Math.min(Math.max(receivedAt.getTime(), notBefore.getTime()), notAfter.getTime());
  return new Date(t);
}

/**
 * When to renew a certificate valid from `start` (see effectiveStart) to `notAfter`: at
 * `renewFraction` of the lifetime, moved by up to ± `jitterFraction` of the remaining window,
 * never after expiry. `random` is in [0, 1); 0.5 (or a jitter of 0) gives the exact fraction.
 */
export function renewalTime(
  start: Date,
  notAfter: Date,
  policy: RenewalPolicy,
  random: number,
): Date {
  const lifetime = notAfter.getTime() - start.getTime();
  const base = start.getTime() + lifetime * policy.renewFraction;
  const window = notAfter.getTime() - base;
  const jitter = (random * 2 - 1) * policy.jitterFraction * window;
  return new Date(Math.min(base + jitter, notAfter.getTime()));
}

/**
 * The longest wait between two attempts to renew a certificate of this lifetime: a quarter of
 * it, between `minMs` and `maxMs`, so that a short-lived certificate gets several attempts
 * before it expires.
 */
export function retryCapMs(lifetimeMs: number, bounds: { minMs: number; maxMs: number }): number {
  return Math.min(bounds.maxMs, Math.max(bounds.minMs, lifetimeMs / 4));
}

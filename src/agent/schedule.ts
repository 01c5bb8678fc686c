// When to renew and how long to back off: pure functions of times and a random number in [0, 1).

export interface RenewalPolicy {
  /** Fraction of the lifetime after which the certificate is renewed (default 0.5). */
  readonly renewFraction: number;
  /** Jitter: ± this fraction of the window between the renewal time and expiry (default 0.1). */
  readonly jitterFraction: number;
}

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
 * When to renew a certificate valid from `start` to `notAfter`: at `renewFraction` of the
 * lifetime, moved by up to ± `jitterFraction` of the remaining window (so that the Pods of one
 * Deployment, started together, do not renew together), never after expiry.
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

export interface BackoffPolicy {
  readonly initialMs: number;
  readonly maxMs: number;
  /** ± this fraction of the delay, random (default 0.2). */
  readonly jitterFraction: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = {
  initialMs: 1000,
  maxMs: 60_000,
  jitterFraction: 0.2,
};

/**
 * The cap of the backoff for a certificate lifetime: a quarter of it, between 1 s and the
 * policy's maximum, so that a short-lived certificate gets several attempts before it expires.
 */
export function backoffCapMs(lifetimeMs: number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  return Math.min(policy.maxMs, Math.max(policy.initialMs, lifetimeMs / 4));
}

/** Delay before retry number `attempt` (1 for the first retry): doubling, capped, jittered. */
export function backoffDelayMs(
  attempt: number,
  capMs: number,
  random: number,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
): number {
  const exponent = Math.max(0, Math.min(attempt - 1, 30));
  const delay = Math.min(capMs, policy.initialMs * 2 ** exponent);
  const jitter = (random * 2 - 1) * policy.jitterFraction * delay;
  return Math.max(0, Math.min(capMs, Math.round(delay + jitter)));
}

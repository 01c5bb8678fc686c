// Exponential backoff, one rule for every retry and restart: the first retry after `initialMs`,
// doubling with each further failure, never above `maxMs`, moved by up to ± `jitterFraction` of
// the delay (a random number in [0, 1) comes in; 0.5 gives the exact delay). Pure.

export interface BackoffPolicy {
  readonly initialMs: number;
  readonly maxMs: number;
  /** ± this fraction of the delay, random; 0 for none. */
  readonly jitterFraction: number;
}

/** Delay before retry number `attempt` (1 for the first retry). */
export function backoffDelayMs(attempt: number, policy: BackoffPolicy, random = 0.5): number {
  const exponent = Math.max(0, Math.min(attempt - 1, 30));
  const delay = Math.min(policy.maxMs, policy.initialMs * 2 ** exponent);
  const jitter = (random * 2 - 1) * policy.jitterFraction * delay;
  return Math.max(0, Math.min(policy.maxMs, Math.round(delay + jitter)));
}

/** Replacing a process or thread that died: 1 s, doubling with each recent failure, at most 30 s. */
export const RESTART_BACKOFF: BackoffPolicy = { initialMs: 1000, maxMs: 30_000, jitterFraction: 0 };

/** How long to wait before replacing a process or thread after `recentFailures` failures. */
export const restartDelayMs = (recentFailures: number): number =>
  backoffDelayMs(recentFailures, RESTART_BACKOFF);

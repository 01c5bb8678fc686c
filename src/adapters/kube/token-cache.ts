// The cache in front of TokenReview: a mass rollout (hundreds of Pods asking for certificates,
// each agent renewing with the same token) must not become as many TokenReviews. Bounded (LRU),
// keyed by the SHA-256 of the token (the token itself is never kept), and an entry lives at most
// min(maxSeconds, the token's own `exp`). The `exp` is read from the JWT without verifying it:
// it only shortens the cache, it never authenticates anything.

import { createHash } from 'node:crypto';
import type { Clock } from '../../ca/ports';

/** SHA-256 of the token, hex: the cache key. */
export function tokenKey(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/**
 * The `exp` claim of a JWT (seconds since the epoch), or null when the token is not a JWT or has
 * no numeric `exp`. The signature is NOT checked: use this only to bound a cache.
 */
export function unverifiedJwtExpiry(token: string): Date | null {
  const parts = token.split('.');
  if (parts.length !== 3 || parts[1] === undefined || parts[1] === '') return null;
  try {
    const payload = JSON.parse(Buffer.from(parts[1], 'base64url').toString('utf8')) as unknown;
    if (typeof payload !== 'object' || payload === null) return null;
    const exp = (payload as { exp?: unknown }).exp;
    if (typeof exp !== 'number' || !Number.isFinite(exp)) return null;
    return new Date(exp * 1000);
  } catch {
    return null;
  }
}

/** How long a positive review may be kept: min(maxSeconds, exp - now), 0 if not at all. */
export function cacheLifetimeMs(now: Date, maxSeconds: number, expiry: Date | null): number {
  const cap = Math.max(0, maxSeconds) * 1000;
  if (expiry === null) return cap;
  return Math.max(0, Math.min(cap, expiry.getTime() - now.getTime()));
}

interface Entry<V> {
  readonly value: V;
  readonly expiresAt: number;
}

export interface TokenCacheOptions {
  readonly clock: Clock;
  /** Upper bound of an entry's life (config.cluster.tokenReviewCacheSeconds, at most 60). */
  readonly maxSeconds: number;
  /** Entries kept at most; the least recently used goes first. 0 turns the cache off. */
  readonly maxEntries: number;
}

/** An LRU of reviewed tokens. Only positive results go in (see TokenReviewAuthenticator). */
export class TokenCache<V> {
  // A Map iterates in insertion order: re-inserting on a hit makes it an LRU.
  private readonly entries = new Map<string, Entry<V>>();

  constructor(private readonly options: TokenCacheOptions) {}

  get size(): number {
    return this.entries.size;
  }

  get(token: string): V | undefined {
    const key = tokenKey(token);
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (this.options.clock.now().getTime() >= entry.expiresAt) {
      this.entries.delete(key);
      return undefined;
    }
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry.value;
  }

  /** Keeps `value` for the token's allowed lifetime (not at all if it is 0). */
  set(token: string, value: V): void {
    const now = this.options.clock.now();
    const lifetime = cacheLifetimeMs(now, this.options.maxSeconds, unverifiedJwtExpiry(token));
    if (lifetime <= 0 || this.options.maxEntries <= 0) return;
    const key = tokenKey(token);
    this.entries.delete(key);
    this.entries.set(key, { value, expiresAt: now.getTime() + lifetime });
    while (this.entries.size > this.options.maxEntries) {
      const oldest = this.entries.keys().next();
      if (oldest.done === true) break;
      this.entries.delete(oldest.value);
    }
  }

  clear(): void {
    this.entries.clear();
  }
}

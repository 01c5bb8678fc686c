// The workload certificate's lifecycle: obtain one (fresh key, CSR, token re-read, CA call,
// chain verified against the root file), write it out, renew it at a fraction of its lifetime
// with jitter, back off on failure while keeping the current certificate until it expires, and
// follow changes of the root file. Time, timers, randomness, the CA call and the files are
// injected, so that tests drive it with a fake clock.

import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import type { Logger } from 'pino';
import type { Clock, KeyAlgorithm } from '../../ca/ports';
import type { CertificateResponse } from '../../api/certificates';
import { RenewalError, type FailureReason } from './ca-client';
import { ChainError, splitPemCertificates, verifyChain, type VerifiedChain } from './chain';
import { keyTypeOf, type KeyPair } from '../../ca/keys';
import { buildCsr } from '../../ca/csr-writer';
import { privateKeyPem } from './keys';
import type { DirectoryContent } from './cert-dir';
import type { AgentMetrics } from './metrics';
import { backoffDelayMs, type BackoffPolicy } from '../../backoff';
import { DEFAULT_JITTER_FRACTION, effectiveStart, renewalTime, retryCapMs } from '../../ca/renewal';

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface IssueCall {
  readonly csrPem: string;
  readonly token: string;
  readonly roots: readonly string[];
  /** Aborted when the lifecycle stops. */
  readonly signal: AbortSignal;
}

export interface LifecycleDeps {
  readonly clock: Clock;
  readonly timers: Timers;
  /** A number in [0, 1): jitter of renewal times and backoff delays. */
  readonly random: () => number;
  readonly log: Logger;
  readonly metrics: AgentMetrics;
  readonly directory: {
    write(content: DirectoryContent): Promise<string>;
    read(): Promise<DirectoryContent | null>;
  };
  /** Reads the service-account token from its file, at every call (the kubelet rotates it). */
  readonly readToken: () => Promise<string>;
  /** POST /v1/certificates; rejects with RenewalError. */
  readonly issue: (call: IssueCall) => Promise<CertificateResponse>;
  readonly generateKey: (type: KeyAlgorithm) => Promise<KeyPair>;
  /** Called each time a certificate has been written out (issued or restored). */
  readonly onCertificate?: () => void;
}

export interface LifecycleOptions {
  readonly keyType: KeyAlgorithm;
  readonly renewFraction: number;
  readonly ttlSeconds: number | undefined;
  readonly jitterFraction?: number;
  readonly backoff?: BackoffPolicy;
}

interface Current {
  readonly chainPem: string;
  readonly keyPem: string;
  readonly publicKey: KeyObject;
  readonly verified: VerifiedChain;
  /** Start of the useful life, for renewal times (see effectiveStart). */
  readonly start: Date;
}

/**
 * Retries of a failed renewal: 1 s doubling, ± 20%, at most 60 s and at most a quarter of the
 * certificate's lifetime (retryCapMs).
 */
export const RENEWAL_BACKOFF: BackoffPolicy = {
  initialMs: 1000,
  maxMs: 60_000,
  jitterFraction: 0.2,
};

/** setTimeout's largest delay (about 24.8 days); longer waits are chained. */
const MAX_TIMER_MS = 2 ** 31 - 1;
const DAY_MS = 86_400_000;
/** How much longer than asked a kept certificate may live: the CA's backdating, and some. */
const LIFETIME_SLACK_MS = 5 * 60_000;

const rootsText = (roots: readonly string[]): string => roots.join('');

export class CertificateLifecycle {
  private roots: readonly string[] = [];
  private current: Current | null = null;
  private timer: unknown = undefined;
  private failures = 0;
  private inFlight: Promise<void> | null = null;
  private writes: Promise<unknown> = Promise.resolve();
  private stopped = false;
  private readonly abort = new AbortController();
  private lastFailure: { reason: FailureReason; message: string } | null = null;

  constructor(
    private readonly deps: LifecycleDeps,
    private readonly options: LifecycleOptions,
  ) {}

  /**
   * Starts with the given roots: adopts a still-valid certificate left in the output directory
   * (a restarted container) or requests one at once.
   */
  async start(roots: readonly string[]): Promise<void> {
    this.roots = [...roots];
    const restored = await this.restore();
    if (restored) {
      this.scheduleRenewal();
    } else {
      await this.enqueueWrite().catch((err: Error) =>
        this.deps.log.warn({ err: err.message }, 'writing root-cert.pem failed'),
      );
      await this.renewNow();
    }
  }

  stop(): void {
    this.stopped = true;
    this.clearTimer();
    this.abort.abort();
  }

  /** Ready: a certificate is on disk and valid now. */
  hasValidCertificate(): boolean {
    const c = this.current;
    if (c === null) return false;
    const now = this.deps.clock.now().getTime();
    return now >= c.verified.notBefore.getTime() && now <= c.verified.notAfter.getTime();
  }

  certificate(): VerifiedChain | null {
    return this.current?.verified ?? null;
  }

  /**
   * The current certificate chain and its private key (PEM), for the built-in proxy's TLS; null
   * before the first certificate. Never logged.
   */
  credentials(): {
    readonly chainPem: string;
    readonly keyPem: string;
    readonly spiffeId: string | null;
  } | null {
    const c = this.current;
    return c === null
      ? null
      : { chainPem: c.chainPem, keyPem: c.keyPem, spiffeId: c.verified.spiffeId };
  }

  lastError(): { reason: FailureReason; message: string } | null {
    return this.lastFailure;
  }

  /** Resolves once the current attempt (if any) has settled. For tests and shutdown. */
  async settled(): Promise<void> {
    await this.inFlight;
    await this.writes;
  }

  /**
   * A new content of the root file: written out, and used from now on to verify the CA and
   * every chain. When the current certificate no longer chains to a trusted root (its root was
   * removed after a rotation), it is renewed at once; so is a certificate still missing after
   * failures (the new roots may be what it lacked: no need to wait out the backoff).
   */
  async updateRoots(roots: readonly string[]): Promise<void> {
    if (rootsText(roots) === rootsText(this.roots)) return;
    this.roots = [...roots];
    this.deps.log.info({ roots: roots.length }, 'root file changed');
    await this.enqueueWrite().catch((err: Error) =>
      this.deps.log.error({ err: err.message }, 'writing root-cert.pem failed'),
    );
    const c = this.current;
    if (this.stopped) return;
    if (c === null) {
      if (this.failures > 0) {
        this.clearTimer();
        void this.renewNow();
      }
      return;
    }
    try {
      verifyChain(splitPemCertificates(c.chainPem), this.roots, c.publicKey, this.deps.clock.now());
    } catch (err) {
      this.deps.log.warn(
        { reason: (err as Error).message, serial: c.verified.serialNumber },
        'the current certificate does not verify against the new roots; renewing now',
      );
      this.clearTimer();
      void this.renewNow();
    }
  }

  /** Runs one attempt now unless one is running; resolves when it has settled. */
  renewNow(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.inFlight ??= this.attempt().finally(() => {
      this.inFlight = null;
    });
    return this.inFlight;
  }

  private async attempt(): Promise<void> {
    const started = this.deps.clock.now();
    try {
      const token = await this.readToken();
      if (this.roots.length === 0)
        throw new RenewalError('roots', 'the root file holds no certificate');
      const key = await this.deps.generateKey(this.options.keyType);
      const response = await this.deps.issue({
        csrPem: buildCsr(key),
        token,
        roots: this.roots,
        signal: this.abort.signal,
      });
      const now = this.deps.clock.now();
      const verified = this.verify(response.certificateChain, key.publicKey, now);
      const next: Current = {
        chainPem: response.certificateChain.map((p) => (p.endsWith('\n') ? p : `${p}\n`)).join(''),
        keyPem: privateKeyPem(key),
        publicKey: key.publicKey,
        verified,
        start: effectiveStart(verified.notBefore, verified.notAfter, now),
      };
      await this.enqueueWrite(next).catch((err: Error) => {
        throw new RenewalError('write', `writing the certificate failed: ${err.message}`);
      });
      this.failures = 0;
      this.lastFailure = null;
      this.deps.metrics.renewals.inc();
      const renewAt = this.scheduleRenewal();
      this.deps.log.info(
        {
          serial: verified.serialNumber,
          spiffeId: verified.spiffeId,
          notAfter: verified.notAfter.toISOString(),
          renewAt: renewAt?.toISOString() ?? null,
          tookMs: now.getTime() - started.getTime(),
        },
        'certificate issued',
      );
    } catch (err) {
      this.onFailure(err);
    }
  }

  private async readToken(): Promise<string> {
    let token: string;
    try {
      token = (await this.deps.readToken()).trim();
    } catch (err) {
      throw new RenewalError('token', `the token file cannot be read: ${(err as Error).message}`);
    }
    if (token === '') throw new RenewalError('token', 'the token file is empty');
    return token;
  }

  private verify(chain: readonly string[], publicKey: KeyObject, now: Date): VerifiedChain {
    try {
      return verifyChain(chain.flatMap(splitPemCertificates), this.roots, publicKey, now);
    } catch (err) {
      if (err instanceof ChainError) {
        throw new RenewalError('verification', `the returned chain was refused: ${err.message}`);
      }
      throw err;
    }
  }

  private onFailure(err: unknown): void {
    const failure =
      err instanceof RenewalError ? err : new RenewalError('unreachable', (err as Error).message);
    this.failures += 1;
    this.lastFailure = { reason: failure.reason, message: failure.message };
    this.deps.metrics.renewalFailures.inc({ reason: failure.reason });
    if (this.stopped) return;
    const backoff = this.options.backoff ?? RENEWAL_BACKOFF;
    const cap = retryCapMs(this.lifetimeMs(), { minMs: backoff.initialMs, maxMs: backoff.maxMs });
    const delay = backoffDelayMs(this.failures, { ...backoff, maxMs: cap }, this.deps.random());
    const c = this.current;
    const fields = {
      reason: failure.reason,
      err: failure.message,
      ...failure.detail,
      attempt: this.failures,
      retryInMs: delay,
      currentNotAfter: c?.verified.notAfter.toISOString() ?? null,
      currentValid: this.hasValidCertificate(),
    };
    if (c === null) {
      // A refusal will not go away by itself (a --ttl above the CA's maximum, an unknown token):
      // an error, not a warning, while the workload has no certificate at all.
      const log = failure.reason === 'rejected' ? this.deps.log.error : this.deps.log.warn;
      log.call(this.deps.log, fields, 'certificate request failed; no certificate yet, retrying');
    } else {
      this.deps.log.warn(
        fields,
        'certificate request failed; keeping the current certificate and retrying',
      );
    }
    this.setTimer(delay);
  }

  private lifetimeMs(): number {
    const c = this.current;
    if (c !== null) return c.verified.notAfter.getTime() - c.start.getTime();
    return (this.options.ttlSeconds ?? 0) * 1000 || DAY_MS;
  }

  /** Sets the renewal timer for the current certificate; returns when it fires. */
  private scheduleRenewal(): Date | null {
    const c = this.current;
    if (c === null || this.stopped) return null;
    const policy = {
      renewFraction: this.options.renewFraction,
      jitterFraction: this.options.jitterFraction ?? DEFAULT_JITTER_FRACTION,
    };
    const at = renewalTime(c.start, c.verified.notAfter, policy, this.deps.random());
    const delay = Math.max(0, at.getTime() - this.deps.clock.now().getTime());
    this.setTimer(delay);
    return at;
  }

  private setTimer(delayMs: number): void {
    this.clearTimer();
    if (this.stopped) return;
    if (delayMs > MAX_TIMER_MS) {
      this.timer = this.deps.timers.setTimeout(
        () => this.setTimer(delayMs - MAX_TIMER_MS),
        MAX_TIMER_MS,
      );
      return;
    }
    this.timer = this.deps.timers.setTimeout(() => {
      this.timer = undefined;
      void this.renewNow();
    }, delayMs);
  }

  private clearTimer(): void {
    if (this.timer !== undefined) this.deps.timers.clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * Writes the output directory, serialised: each write takes the latest roots, and `next` (a
   * new certificate) becomes current only once it is on disk.
   */
  private enqueueWrite(next?: Current): Promise<void> {
    const run = async (): Promise<void> => {
      const cert = next ?? this.current;
      await this.deps.directory.write({
        'cert-chain.pem': cert?.chainPem,
        'key.pem': cert?.keyPem,
        'root-cert.pem': this.roots.length > 0 ? rootsText(this.roots) : undefined,
      });
      if (next !== undefined) {
        this.current = next;
        this.deps.metrics.certificateExpiry.set(
          Math.floor(next.verified.notAfter.getTime() / 1000),
        );
        this.deps.onCertificate?.();
      }
    };
    const result = this.writes.then(run, run);
    this.writes = result.catch(() => undefined);
    return result;
  }

  /** Adopts the certificate of the output directory when it is still valid against the roots. */
  private async restore(): Promise<boolean> {
    let content: DirectoryContent | null;
    try {
      content = await this.deps.directory.read();
    } catch {
      return false;
    }
    const chainPem = content?.['cert-chain.pem'];
    const keyPem = content?.['key.pem'];
    if (chainPem === undefined || keyPem === undefined) return false;
    try {
      const publicKey = createPublicKey(createPrivateKey(keyPem));
      // A restart with another --key-type or a shorter --ttl gets a certificate that follows
      // them at once, not at the next renewal.
      const keyType = keyTypeOf(publicKey);
      if (keyType !== this.options.keyType) {
        throw new Error(
          `its key is ${keyType ?? 'of another type'}, --key-type asks for ${this.options.keyType}`,
        );
      }
      const verified = verifyChain(
        splitPemCertificates(chainPem),
        this.roots,
        publicKey,
        this.deps.clock.now(),
      );
      const ttlMs = (this.options.ttlSeconds ?? 0) * 1000;
      const lifetimeMs = verified.notAfter.getTime() - verified.notBefore.getTime();
      // The CA backdates by a minute or two; anything longer than that was asked for otherwise.
      if (ttlMs > 0 && lifetimeMs > ttlMs + LIFETIME_SLACK_MS) {
        throw new Error(
          `it lives ${Math.round(lifetimeMs / 1000)} s, --ttl asks for ${ttlMs / 1000} s`,
        );
      }
      const restored: Current = {
        chainPem,
        keyPem,
        publicKey,
        verified,
        start: verified.notBefore,
      };
      await this.enqueueWrite(restored);
      this.deps.log.info(
        { serial: verified.serialNumber, notAfter: verified.notAfter.toISOString() },
        'kept the certificate already in the output directory',
      );
      return true;
    } catch (err) {
      this.deps.log.info(
        { reason: (err as Error).message },
        'the certificate in the output directory is not usable',
      );
      return false;
    }
  }
}

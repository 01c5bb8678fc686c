// The route's policies around one request, for either HTTP version: the fault filter's delay,
// the route timeout, each attempt (its endpoint, its in-flight count, its per-try timeout, its
// outcome for outlier detection), a retry's wait, and what a failed attempt answers. The
// exchanges (HTTP/1.1 in http1-proxy.ts, HTTP/2 in http2-proxy.ts) own one each and do the I/O.

import { OVERFLOW_BODY } from '../core/circuit-breaker';
import type { UpstreamEndpoint } from '../core/endpoints';
import type { AttemptFailure } from '../core/retry';
import type { AttemptOutcome, ExchangePlan, ResponseFlag } from './exchange-plan';

/** What the policy tells its exchange. */
export interface PolicyEvents {
  /** The route timeout passed. */
  onTimeout(): void;
  /** The current attempt's per-try timeout passed. */
  onTryTimeout(): void;
  /** The request is answered by the proxy, with this flag. */
  fail(status: number, text: string, flag: ResponseFlag): void;
}

/** Envoy's local reply to a request whose attempt failed before any response. */
export const resetReply = (why: string): string =>
  `upstream connect error or disconnect/reset before headers. reset reason: ${why}`;

/** The response flag of an answer to a failed attempt. */
export const failureFlag = (reason: AttemptFailure): ResponseFlag =>
  reason === 'reset' || reason === 'refused-stream'
    ? 'UC'
    : reason === 'timeout'
      ? 'UT'
      : reason === 'protocol-error'
        ? 'UPE'
        : 'UF';

const NONE_TRIED: ReadonlySet<UpstreamEndpoint> = new Set();

export class ExchangePolicy {
  /**
   * The endpoints of the attempts so far, made when a second attempt is planned (most requests
   * make one): before, the only endpoint tried is `endpoint`.
   */
  private tried: Set<UpstreamEndpoint> | null = null;
  /** The endpoint of the current (or last) attempt. */
  endpoint: UpstreamEndpoint | null = null;
  attempts = 0;
  /** The current attempt counts in `endpoint.active`. */
  attemptOpen = false;
  private routeTimer: NodeJS.Timeout | null = null;
  /** The current attempt's own timeout (the route's per-try timeout). */
  private tryTimer: NodeJS.Timeout | null = null;
  /** A fault delay or a retry's backoff, before the next attempt. */
  private waitTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly plan: ExchangePlan,
    private readonly events: PolicyEvents,
  ) {}

  /**
   * The fault filter holds the request before the router (flag DI): after its delay the route
   * timeout starts and `first` (the first attempt) runs, unless the exchange is over by then.
   */
  begin(flags: ResponseFlag[], over: () => boolean, first: () => void): void {
    const plan = this.plan;
    const start = (): void => {
      if (over()) return;
      if (plan.timeoutMs !== null && plan.timeoutMs > 0) {
        this.routeTimer = setTimeout(() => {
          this.routeTimer = null;
          this.events.onTimeout();
        }, plan.timeoutMs);
      }
      first();
    };
    if (plan.delayMs !== undefined && plan.delayMs > 0) {
      flags.push('DI');
      this.after(plan.delayMs, start);
      return;
    }
    start();
  }

  /** Runs `next` after `ms` (a fault delay, a retry's backoff); cleared with the others. */
  after(ms: number, next: () => void): void {
    this.waitTimer = setTimeout(() => {
      this.waitTimer = null;
      next();
    }, ms);
  }

  /**
   * The endpoint of the next attempt (another than those tried when it can); null when there is
   * none, the request then answered 503 (UH, or URX after attempts).
   */
  next(): UpstreamEndpoint | null {
    const endpoint = this.plan.pick(this.attempts === 0 ? NONE_TRIED : this.triedSet());
    if (endpoint === null) {
      this.events.fail(503, 'no healthy upstream', this.attempts === 0 ? 'UH' : 'URX');
    }
    return endpoint;
  }

  /**
   * With no ready connection to `endpoint`, the circuit breaker's word: false when the request
   * overflows, answered at once 503 UO (Envoy's overflow, never retried; the endpoint is noted
   * for the records, no attempt is made).
   */
  admit(endpoint: UpstreamEndpoint, ready: boolean): boolean {
    const breaker = this.plan.breaker;
    if (ready || breaker === undefined || breaker.admit()) return true;
    this.endpoint = endpoint;
    this.events.fail(503, OVERFLOW_BODY, 'UO');
    return false;
  }

  /** An attempt starts on `endpoint`: in flight, its per-try timeout running. Its number. */
  open(endpoint: UpstreamEndpoint): number {
    this.attempts++;
    this.endpoint = endpoint;
    this.tried?.add(endpoint);
    endpoint.active++;
    endpoint.attempts++;
    this.attemptOpen = true;
    const perTry = this.plan.retries.perTryTimeoutMs;
    if (perTry !== undefined && perTry > 0) {
      this.tryTimer = setTimeout(() => {
        this.tryTimer = null;
        this.events.onTryTimeout();
      }, perTry);
    }
    return this.attempts;
  }

  /** The current attempt is over: no longer in flight; outlier detection learns its outcome. */
  close(outcome: AttemptOutcome): void {
    if (this.tryTimer !== null) {
      clearTimeout(this.tryTimer);
      this.tryTimer = null;
    }
    if (!this.attemptOpen) return;
    this.attemptOpen = false;
    const endpoint = this.endpoint as UpstreamEndpoint;
    endpoint.active--;
    if (outcome.kind === 'failure') endpoint.failures++;
    this.plan.onAttempt?.(endpoint, outcome);
  }

  /**
   * Whether one more attempt may follow: attempts left under the route's policy, then the retry
   * budget's and maxRetries' word (counted when yes: ask last).
   */
  mayRetry(): boolean {
    return this.attempts <= this.plan.retries.attempts && (this.plan.canRetry?.() ?? true);
  }

  /** `endpoint` may be picked again (its attempt failed on a connection the peer was closing). */
  untry(endpoint: UpstreamEndpoint): void {
    this.triedSet().delete(endpoint);
  }

  /** `tried`, made from the one endpoint tried so far if it is not made yet. */
  private triedSet(): Set<UpstreamEndpoint> {
    return (this.tried ??= new Set([this.endpoint as UpstreamEndpoint]));
  }

  /** Stops every timer (the exchange is over). */
  clear(): void {
    for (const t of [this.routeTimer, this.tryTimer, this.waitTimer])
      if (t !== null) clearTimeout(t);
    this.routeTimer = null;
    this.tryTimer = null;
    this.waitTimer = null;
  }
}

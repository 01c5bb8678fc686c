// The retry budget (pure; time comes in), after Linkerd's: retries may add at most
// `ratio` (20%) to the requests of the last `windowMs` (10 s), plus `minPerSecond` (10) retries a
// second so that a quiet service can still retry. Beyond it a retry is not made and the failure
// goes to the client (Envoy's URX flag, `retry budget exhausted` in the flags' detail): during an
// outage retries cannot multiply the load. One budget per destination service of a proxy.
//
// Counting is in one-second buckets over the window: O(1) per request.

export interface RetryBudgetOptions {
  readonly ratio: number;
  readonly minPerSecond: number;
  readonly windowMs: number;
}

export const DEFAULT_RETRY_BUDGET: RetryBudgetOptions = {
  ratio: 0.2,
  minPerSecond: 10,
  windowMs: 10_000,
};

export class RetryBudget {
  private readonly requests: number[];
  private readonly retries: number[];
  private readonly slots: number;
  /** The second of the newest bucket. */
  private head = -1;

  constructor(private readonly options: RetryBudgetOptions = DEFAULT_RETRY_BUDGET) {
    this.slots = Math.max(1, Math.ceil(options.windowMs / 1000));
    this.requests = new Array<number>(this.slots).fill(0);
    this.retries = new Array<number>(this.slots).fill(0);
  }

  private advance(now: number): number {
    const second = Math.floor(now / 1000);
    if (this.head < 0) this.head = second;
    if (second > this.head) {
      const steps = Math.min(second - this.head, this.slots);
      for (let i = 1; i <= steps; i++) {
        const slot = (this.head + i) % this.slots;
        this.requests[slot] = 0;
        this.retries[slot] = 0;
      }
      this.head = second;
    }
    return this.head % this.slots;
  }

  /** A first try of a request. */
  request(now: number): void {
    const slot = this.advance(now);
    this.requests[slot] = (this.requests[slot] ?? 0) + 1;
  }

  /** Whether one more retry fits; if so it is counted. */
  tryRetry(now: number): boolean {
    const slot = this.advance(now);
    let requests = 0;
    let retries = 0;
    for (let i = 0; i < this.slots; i++) {
      requests += this.requests[i] ?? 0;
      retries += this.retries[i] ?? 0;
    }
    const allowed =
      this.options.ratio * requests + (this.options.minPerSecond * this.options.windowMs) / 1000;
    if (retries + 1 > allowed) return false;
    this.retries[slot] = (this.retries[slot] ?? 0) + 1;
    return true;
  }
}

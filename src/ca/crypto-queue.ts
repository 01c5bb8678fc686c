// Public-key operations run back to back. The requests that arrive in one turn of the event loop
// queue their CSR checks and signatures here; one flush (the Schedule: setImmediate in the shell) then runs them
// one after the other. P-256 arithmetic uses precomputed tables of about 150 KB: run between two
// requests' JavaScript (HTTP, JSON, DER), each operation finds them evicted from the core's caches
// and costs about twice what it costs warm; run in a row, they share warm caches, and the process
// handles every request that is ready in one wake-up. bench/RESULTS-ca.md measures it.

/** Runs `flush` soon, after the work already queued on the event loop (setImmediate). */
export type Schedule = (flush: () => void) => void;

export class CryptoQueue {
  private pending: (() => void)[] = [];

  constructor(private readonly schedule: Schedule) {}

  /** Runs `op` in the next flush, in order; its result or error settles the promise. */
  run<T>(op: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.pending.length === 0) this.schedule(() => this.flush());
      this.pending.push(() => {
        try {
          resolve(op());
        } catch (err) {
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      });
    });
  }

  /** Operations waiting for the next flush. */
  get size(): number {
    return this.pending.length;
  }

  private flush(): void {
    const jobs = this.pending;
    this.pending = [];
    for (const job of jobs) job();
  }
}

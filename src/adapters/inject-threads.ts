// Inject threads: the CPU-bound part of an admission review (JSON parse, injection, patch,
// serialization: about half of a review's CPU, bench/RESULTS-webhook.md) runs in worker_threads,
// so that the event loop is left with TLS and HTTP and the second core does the rest. Text goes
// in, text comes out (answerReview in src/admission/answer.ts, the same code the event loop
// runs with no threads).
//
// A thread that dies fails the reviews it held (the route answers them as internal errors) and
// is replaced after a backoff; the others keep serving. A thread that holds a review longer than
// the deadline (a review takes well under a millisecond; the API server gives up after the
// webhook's timeoutSeconds, 10 s) is stopped and replaced the same way, so that the API server
// gets an answer, not a timeout.

import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { ErrorRecord, ReviewAnswer } from '../admission/answer';
import { restartDelayMs } from '../backoff';

/** Main thread to inject thread. */
export interface ReviewMessage {
  readonly id: number;
  readonly text: string | undefined;
}

/** Inject thread to main thread: ready once, then one answer (or failure) per review. */
export type ThreadMessage =
  | { readonly type: 'ready' }
  | { readonly type: 'answer'; readonly id: number; readonly answer: ReviewAnswer }
  | { readonly type: 'failed'; readonly id: number; readonly error: ErrorRecord };

export interface ThreadsLogger {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface InjectThreadsOptions {
  readonly size: number;
  /** Handed to each thread (the thread script reads its configuration from it). */
  readonly workerData: unknown;
  readonly logger: ThreadsLogger;
  /** The thread's script: the compiled src/adapters/inject-thread.js by default. */
  readonly script?: string;
  /** Called each time a dead thread is replaced (the restart counter). */
  readonly onRestart?: () => void;
  /** Backoff before a dead thread is replaced, by how many died in the last minute. */
  readonly restartDelayMs?: (recentFailures: number) => number;
  /** A thread that holds a review this long is replaced (default REVIEW_DEADLINE_MS). */
  readonly reviewDeadlineMs?: number;
}

/** Below the webhook's timeoutSeconds (10 s), so that the answer reaches the API server. */
export const REVIEW_DEADLINE_MS = 8000;

interface Pending {
  resolve(answer: ReviewAnswer): void;
  reject(err: Error): void;
  /** performance.now() when the review was handed to the thread. */
  readonly since: number;
}

interface Slot {
  readonly index: number;
  worker: Worker | null;
  ready: boolean;
  readonly pending: Map<number, Pending>;
  /** Exit times of the last minute, for the backoff. */
  failures: number[];
  timer: NodeJS.Timeout | null;
  /** Why the pool stopped this thread itself (a review past the deadline). */
  stopCause: string | null;
}

/** The error of a review whose thread died or failed: the route answers an internal error. */
export class InjectThreadError extends Error {
  override readonly name = 'InjectThreadError';
}

const FAILURE_WINDOW_MS = 60_000;

export class InjectThreads {
  private readonly slots: Slot[];
  private readonly script: string;
  private readonly deadlineMs: number;
  private nextId = 1;
  private closing = false;
  private watchdog: NodeJS.Timeout | null = null;

  constructor(private readonly options: InjectThreadsOptions) {
    if (!Number.isInteger(options.size) || options.size < 1) {
      throw new RangeError(`inject threads: size must be a positive integer, got ${options.size}`);
    }
    this.script = options.script ?? join(__dirname, 'inject-thread.js');
    this.deadlineMs = options.reviewDeadlineMs ?? REVIEW_DEADLINE_MS;
    this.slots = Array.from({ length: options.size }, (_, index) => ({
      index,
      worker: null,
      ready: false,
      pending: new Map<number, Pending>(),
      failures: [],
      timer: null,
      stopCause: null,
    }));
  }

  get size(): number {
    return this.slots.length;
  }

  /** Threads that have loaded and answer reviews. */
  readyCount(): number {
    return this.slots.filter((slot) => slot.ready).length;
  }

  /**
   * Starts every thread; resolves when each has loaded, rejects (and stops the others) when one
   * fails before that.
   */
  async start(): Promise<void> {
    try {
      await Promise.all(this.slots.map((slot) => this.spawn(slot)));
      this.watchdog = setInterval(
        () => this.stopStuckThreads(),
        Math.min(1000, this.deadlineMs / 4),
      );
      this.watchdog.unref();
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  /** The answer to one review, from the thread with the fewest reviews in hand. */
  answer(text: string | undefined): Promise<ReviewAnswer> {
    let best: Slot | null = null;
    for (const slot of this.slots) {
      if (slot.worker !== null && (best === null || slot.pending.size < best.pending.size)) {
        best = slot;
      }
    }
    const worker = best?.worker;
    if (best === null || worker === null || worker === undefined || this.closing) {
      return Promise.reject(new InjectThreadError('no inject thread is running'));
    }
    const id = this.nextId++;
    const slot = best;
    return new Promise<ReviewAnswer>((resolve, reject) => {
      slot.pending.set(id, { resolve, reject, since: performance.now() });
      const message: ReviewMessage = { id, text };
      worker.postMessage(message);
    });
  }

  /** Stops every thread; reviews still in hand fail. Idempotent. */
  async close(): Promise<void> {
    this.closing = true;
    if (this.watchdog !== null) clearInterval(this.watchdog);
    this.watchdog = null;
    const exits: Promise<number>[] = [];
    for (const slot of this.slots) {
      if (slot.timer !== null) clearTimeout(slot.timer);
      slot.timer = null;
      if (slot.worker !== null) exits.push(slot.worker.terminate());
      slot.worker = null;
      slot.ready = false;
      this.failAll(slot, new InjectThreadError('the inject threads are stopping'));
    }
    await Promise.allSettled(exits);
  }

  private spawn(slot: Slot): Promise<void> {
    return new Promise<void>((resolveStarted, rejectStarted) => {
      const worker = new Worker(this.script, { workerData: this.options.workerData });
      slot.worker = worker;
      slot.ready = false;
      let lastError: Error | null = null;

      worker.on('message', (message: ThreadMessage) => {
        if (message.type === 'ready') {
          slot.ready = true;
          resolveStarted();
          return;
        }
        const pending = slot.pending.get(message.id);
        if (pending === undefined) return;
        slot.pending.delete(message.id);
        if (message.type === 'answer') pending.resolve(message.answer);
        else pending.reject(new InjectThreadError(`inject thread: ${message.error.message}`));
      });
      worker.on('error', (err: Error) => {
        lastError = err;
      });
      worker.on('exit', (code) => {
        if (slot.worker !== worker) return; // terminated by close()
        const cause = slot.stopCause ?? lastError?.message ?? `exit code ${code}`;
        slot.stopCause = null;
        slot.worker = null;
        const wasReady = slot.ready;
        slot.ready = false;
        this.failAll(slot, new InjectThreadError(`the inject thread exited: ${cause}`));
        if (!wasReady) {
          rejectStarted(new InjectThreadError(`an inject thread failed to start: ${cause}`));
        }
        if (this.closing || !wasReady) return;
        this.replace(slot, code, cause);
      });
    });
  }

  /** Stops each thread whose oldest review is past the deadline; its exit replaces it. */
  private stopStuckThreads(): void {
    const now = performance.now();
    for (const slot of this.slots) {
      const oldest = slot.pending.values().next();
      if (oldest.done === true || slot.worker === null || slot.stopCause !== null) continue;
      if (now - oldest.value.since < this.deadlineMs) continue;
      slot.stopCause = `held a review for more than ${this.deadlineMs} ms`;
      void slot.worker.terminate();
    }
  }

  private replace(slot: Slot, code: number, cause: string): void {
    const now = Date.now();
    slot.failures = [...slot.failures.filter((t) => now - t < FAILURE_WINDOW_MS), now];
    const delayMs = (this.options.restartDelayMs ?? restartDelayMs)(slot.failures.length);
    this.options.onRestart?.();
    this.options.logger.error(
      { thread: slot.index, code, cause, restartInMs: delayMs },
      'an inject thread exited unexpectedly: starting a new one',
    );
    slot.timer = setTimeout(() => {
      slot.timer = null;
      if (this.closing) return;
      this.spawn(slot).then(
        () => this.options.logger.info({ thread: slot.index }, 'inject thread replaced'),
        // The new thread died before it was ready: its exit handler logged nothing; retry.
        (err: Error) => {
          if (!this.closing) this.replace(slot, -1, err.message);
        },
      );
    }, delayMs);
    slot.timer.unref();
  }

  private failAll(slot: Slot, err: Error): void {
    const pending = [...slot.pending.values()];
    slot.pending.clear();
    for (const p of pending) p.reject(err);
  }
}

// A full collection of V8's heap when the proxy has gone quiet. V8 collects the old generation
// when it reaches a limit set at the last collection; after a load, a sidecar's old generation
// sits near that limit (what the load's requests left there), and the next load's first
// allocations (its code compiled again, its connections) pass it: measured on loopback
// (bench/RESULTS.md, 2026-12-07, morning), a full collection in one sidecar in the first 100 ms
// of the 1,000 requests/s that came 30 s after the saturated run, 20-30 ms on the event loop
// (marking steps up to 16 ms, the concurrent marker sharing the loop's CPU, and a 4-8 ms pause),
// the slowest requests of those 10 s. V8's "memory reducer", which collects once an isolate
// allocates little, never starts in a sidecar: each of its looks over 30 s without a request
// found a "high alloc" rate (`--trace-memory-reducer`). The proxy does its work: every
// IDLE_GC_LOOK_MS it looks at how busy its event loop was since the last look and at the old
// generation; when the loop was quiet the whole time (under IDLE_UTILIZATION) and the old
// generation holds IDLE_GC_GROWTH_BYTES more than after the last collection, it collects then
// (15-33 ms measured), when no traffic waits, and the next load starts with room before the
// limit. A proxy under steady load is never quiet for 2 s and is left to V8. Pure but for the
// functions it is given (processIdleCollector gives this process's).

import { performance, type EventLoopUtilization } from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** How often the event loop's utilization and the old generation are looked at. */
export const IDLE_GC_LOOK_MS = 2_000;
/** The event loop's utilization over a look's interval under which the proxy counts as quiet. */
export const IDLE_UTILIZATION = 0.02;
/** Growth of the old generation since the last collection that a quiet proxy collects. */
export const IDLE_GC_GROWTH_BYTES = 2 * 1024 * 1024;

export interface IdleGcDeps {
  /** The event loop's utilization (0-1) since the previous call. */
  utilization(): number;
  /** The bytes the old generation (every space but the young one) holds now. */
  oldBytes(): number;
  /** A full collection. */
  collect(): void;
  nowMs(): number;
}

export interface IdleGcStats {
  readonly collections: number;
  /** Old generation bytes the collections freed, summed. */
  readonly freedBytes: number;
  /** How long the last collection took, in ms. */
  readonly lastCollectionMs: number;
  /** The old generation after the last collection (or its lowest since): growth is measured from it. */
  readonly baselineBytes: number;
}

export class IdleCollector {
  private baseline: number;
  private collections = 0;
  private freed = 0;
  private lastMs = 0;

  constructor(
    private readonly deps: IdleGcDeps,
    private readonly growthBytes: number = IDLE_GC_GROWTH_BYTES,
    private readonly idleUtilization: number = IDLE_UTILIZATION,
  ) {
    this.baseline = deps.oldBytes();
    deps.utilization();
  }

  /** One look: collects when the loop was quiet since the last look and the heap grew; true then. */
  check(): boolean {
    const busy = this.deps.utilization();
    const old = this.deps.oldBytes();
    // V8's own collections lower the mark growth is measured from.
    if (old < this.baseline) this.baseline = old;
    if (busy >= this.idleUtilization || old - this.baseline < this.growthBytes) return false;
    const start = this.deps.nowMs();
    this.deps.collect();
    this.lastMs = this.deps.nowMs() - start;
    const after = this.deps.oldBytes();
    this.collections++;
    this.freed += Math.max(0, old - after);
    this.baseline = after;
    // The collection's own time is not traffic: the next look measures from here.
    this.deps.utilization();
    return true;
  }

  stats(): IdleGcStats {
    return {
      collections: this.collections,
      freedBytes: this.freed,
      lastCollectionMs: this.lastMs,
      baselineBytes: this.baseline,
    };
  }
}

/** V8's full collection, taken from a context made while `--expose-gc` is set, then unset. */
export function v8FullCollection(): () => void {
  setFlagsFromString('--expose-gc');
  try {
    return runInNewContext('gc') as () => void;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}

/** The bytes of every space of V8's heap but the young generation's. */
export function oldGenerationBytes(): number {
  let bytes = 0;
  for (const space of getHeapSpaceStatistics()) {
    if (space.space_name !== 'new_space' && space.space_name !== 'new_large_object_space') {
      bytes += space.space_used_size;
    }
  }
  return bytes;
}

/** This process's collector, looking every IDLE_GC_LOOK_MS from now (an unref'd timer). */
export function processIdleCollector(): { collector: IdleCollector; timer: NodeJS.Timeout } {
  let last: EventLoopUtilization = performance.eventLoopUtilization();
  const collector = new IdleCollector({
    utilization: () => {
      const now = performance.eventLoopUtilization();
      const u = performance.eventLoopUtilization(now, last).utilization;
      last = now;
      return u;
    },
    oldBytes: oldGenerationBytes,
    collect: v8FullCollection(),
    nowMs: () => performance.now(),
  });
  const timer = setInterval(() => collector.check(), IDLE_GC_LOOK_MS);
  timer.unref();
  return { collector, timer };
}

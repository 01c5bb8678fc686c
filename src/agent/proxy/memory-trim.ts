// Giving freed C heap memory back to the system. A proxy's connections come and go in bursts
// (a client opening dozens for a moment, the pool to a sidecar growing and shrinking with them);
// what each one allocated outside V8 (TLS state, socket buffers) is freed when it closes, but
// glibc keeps freed memory in the middle of its heap: measured in real Pods at 1,000 requests/s,
// 22-32 MiB of a sidecar's resident memory were such free pages (bench/RESULTS.md). Every
// TRIM_INTERVAL_MS the trimmer looks at the resident size and, when it has grown by
// TRIM_GROWTH_BYTES since the last trim, calls malloc_trim(0), which returns those pages (a few
// milliseconds at most, at most once per interval). Pure but for the two functions it is given.

/** How often the resident size is looked at. */
export const TRIM_INTERVAL_MS = 10_000;
/** Growth of the resident size since the last trim (or the start) that calls for one. */
export const TRIM_GROWTH_BYTES = 8 * 1024 * 1024;

export interface TrimDeps {
  /** malloc_trim(0): true when pages were given back. */
  trim(): boolean;
  /** The resident size now, in bytes. */
  rss(): number;
  nowMs(): number;
}

export interface TrimStats {
  readonly trims: number;
  /** Resident bytes the trims gave back, summed. */
  readonly releasedBytes: number;
  /** How long the last trim took, in ms. */
  readonly lastTrimMs: number;
  /** The resident size after the last trim (or at the start): what growth is measured from. */
  readonly baselineBytes: number;
}

export class MemoryTrimmer {
  private baseline: number;
  private trims = 0;
  private released = 0;
  private lastTrimMs = 0;

  constructor(
    private readonly deps: TrimDeps,
    private readonly growthBytes: number = TRIM_GROWTH_BYTES,
  ) {
    this.baseline = deps.rss();
  }

  /** One look: trims when the resident size grew enough; true when it trimmed. */
  check(): boolean {
    const before = this.deps.rss();
    // Memory the process gave back by itself lowers the mark growth is measured from.
    if (before < this.baseline) this.baseline = before;
    if (before - this.baseline < this.growthBytes) return false;
    const start = this.deps.nowMs();
    this.deps.trim();
    this.lastTrimMs = this.deps.nowMs() - start;
    const after = this.deps.rss();
    this.trims++;
    this.released += Math.max(0, before - after);
    this.baseline = after;
    return true;
  }

  stats(): TrimStats {
    return {
      trims: this.trims,
      releasedBytes: this.released,
      lastTrimMs: this.lastTrimMs,
      baselineBytes: this.baseline,
    };
  }
}

// Giving freed C heap memory back to the system. A proxy's connections come and go in bursts
// (a client opening dozens for a moment, the pool to a sidecar growing and shrinking with them);
// what each one allocated outside V8 (TLS state, socket buffers, V8's compilers' zones on their
// own threads, each with its glibc arena) is freed when it is done, but glibc keeps freed memory
// in the middle of its heaps: measured in real Pods at 1,000 requests/s, 22-32 MiB of a
// sidecar's resident memory were such free pages, and 5-8 MiB of a loaded sidecar's on loopback
// (bench/RESULTS.md). Every TRIM_INTERVAL_MS the trimmer looks at the resident size and at the
// bytes glibc holds free (mallinfo2, where the C library tells) and, when either has grown by
// TRIM_GROWTH_BYTES since the last trim, calls malloc_trim(0), which returns those pages (0.2-1.5
// ms measured under load, at most once per interval). The free bytes tell of memory freed
// without the process growing, as when a burst's connections close; a process at rest neither
// grows nor frees and is not trimmed. Pure but for the functions it is given (processTrimmer
// gives this process's).

/**
 * How often the resident size and the free bytes are looked at. 2 s and 512 KiB against 5 s and
 * 1 MiB (bench/RESULTS.md, 2026-12-07): a loaded sidecar's peak resident size about 1 MiB lower,
 * trims of 0.14-0.35 ms twice as often, the CPU per request within the runs' spread.
 */
export const TRIM_INTERVAL_MS = 2_000;
/** Growth of the resident size, or of the free bytes, since the last trim (or start) that trims. */
export const TRIM_GROWTH_BYTES = 512 * 1024;

export interface TrimDeps {
  /** malloc_trim(0): true when pages were given back. */
  trim(): boolean;
  /** The resident size now, in bytes. */
  rss(): number;
  /** The bytes the C heap holds free now (absent where the C library cannot tell). */
  freeBytes?: () => number;
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
  /** The free bytes after the last trim (or at the start), or their lowest since. */
  private freeBaseline: number;
  private trims = 0;
  private released = 0;
  private lastTrimMs = 0;

  constructor(
    private readonly deps: TrimDeps,
    private readonly growthBytes: number = TRIM_GROWTH_BYTES,
  ) {
    this.baseline = deps.rss();
    this.freeBaseline = deps.freeBytes?.() ?? 0;
  }

  /** One look: trims when the resident size or the free bytes grew enough; true when it trimmed. */
  check(): boolean {
    const before = this.deps.rss();
    // Memory the process gave back by itself lowers the mark growth is measured from; free
    // memory used again, the mark new frees are measured from.
    if (before < this.baseline) this.baseline = before;
    const free = this.deps.freeBytes?.();
    if (free !== undefined && free < this.freeBaseline) this.freeBaseline = free;
    const grew = before - this.baseline >= this.growthBytes;
    const freed = free !== undefined && free - this.freeBaseline >= this.growthBytes;
    if (!grew && !freed) return false;
    const start = this.deps.nowMs();
    this.deps.trim();
    this.lastTrimMs = this.deps.nowMs() - start;
    const after = this.deps.rss();
    this.trims++;
    this.released += Math.max(0, before - after);
    this.baseline = after;
    // A trim leaves the free chunks free (their pages given back): new frees count from here.
    this.freeBaseline = this.deps.freeBytes?.() ?? 0;
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

/** This process's trimmer, from the addon's functions (null: no malloc_trim here). */
export function processTrimmer(
  trim: (() => boolean) | null,
  freeBytes: (() => number) | null,
): MemoryTrimmer | null {
  if (trim === null) return null;
  return new MemoryTrimmer({
    trim,
    rss: () => process.memoryUsage.rss(),
    nowMs: () => performance.now(),
    ...(freeBytes === null ? {} : { freeBytes }),
  });
}

// Pages of Node's binary that only the start used. A Node process maps its 100 MiB binary, and
// starting (bootstrap, loading modules, the first handshakes) touches about 50 MiB of it, which
// stay in its resident set whether used again or not: measured on loopback, half of a loaded
// sidecar's VmRSS. Once the proxy has started, COLD_PAGES_AFTER_MS after it listens, the agent
// takes those pages out of its address space (madvise MADV_DONTNEED): a page used again comes
// back at its next touch from the page cache, which keeps them all (shared with every other Node
// process of the node). What stays resident is what the traffic uses (about 25 MiB under load).
// It saves the node no page of memory (the page cache holds them, reclaimable as before); it
// makes the sidecar's resident size say what it uses.
//
// Only ranges that lose nothing are given: read-only mappings of a file (no `w`) holding no
// private copy of a page (`Anonymous: 0 kB` in /proc/self/smaps). A mapping made read-only after
// the loader relocated it (RELRO) holds private copies and is left alone; so are the heap, the
// stacks, V8's spaces and every writable mapping.

/** How long after the listeners open the pages only the start used are dropped. */
export const COLD_PAGES_AFTER_MS = 10_000;

/** One mapping whose resident pages can be dropped without losing anything. */
export interface ColdMapping {
  readonly start: number;
  readonly length: number;
  /** Its resident bytes when /proc/self/smaps was read. */
  readonly residentBytes: number;
  readonly path: string;
}

const SMAPS_HEADER = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/;

/** The droppable mappings of a /proc/<pid>/smaps text (read-only, of a file, no private page). */
export function coldFileMappings(smaps: string): ColdMapping[] {
  const out: ColdMapping[] = [];
  let current: {
    start: number;
    end: number;
    perms: string;
    path: string;
    anonymousKiB: number | null;
    rssKiB: number;
  } | null = null;
  const flush = (): void => {
    const c = current;
    if (c === null) return;
    if (
      c.path.startsWith('/') &&
      !c.path.endsWith(' (deleted)') &&
      c.perms[0] === 'r' &&
      c.perms[1] === '-' &&
      c.anonymousKiB === 0 &&
      c.rssKiB > 0
    ) {
      out.push({
        start: c.start,
        length: c.end - c.start,
        residentBytes: c.rssKiB * 1024,
        path: c.path,
      });
    }
  };
  for (const line of smaps.split('\n')) {
    const header = SMAPS_HEADER.exec(line);
    if (header !== null) {
      flush();
      current = {
        start: parseInt(header[1] as string, 16),
        end: parseInt(header[2] as string, 16),
        perms: header[3] as string,
        path: header[4] as string,
        anonymousKiB: null,
        rssKiB: 0,
      };
      continue;
    }
    if (current === null) continue;
    const field = /^(Rss|Anonymous):\s+(\d+) kB$/.exec(line);
    if (field === null) continue;
    if (field[1] === 'Rss') current.rssKiB = Number(field[2]);
    else current.anonymousKiB = Number(field[2]);
  }
  flush();
  return out;
}

export interface ColdPagesReport {
  readonly mappings: number;
  /** Resident bytes of those mappings before the drop. */
  readonly droppedBytes: number;
  /** Mappings madvise refused (with its errno, negative). */
  readonly failed: number;
  readonly tookMs: number;
}

/**
 * Drops the resident pages of the droppable mappings in `smaps` with `dropPages` (the addon's
 * madvise: 0 or a negative errno).
 */
export function dropColdPages(
  smaps: string,
  dropPages: (start: number, length: number) => number,
  nowMs: () => number = () => performance.now(),
): ColdPagesReport {
  const start = nowMs();
  let mappings = 0;
  let dropped = 0;
  let failed = 0;
  for (const m of coldFileMappings(smaps)) {
    if (dropPages(m.start, m.length) === 0) {
      mappings++;
      dropped += m.residentBytes;
    } else {
      failed++;
    }
  }
  return { mappings, droppedBytes: dropped, failed, tookMs: nowMs() - start };
}

/**
 * Drops them `afterMs` from now (an unref'd timer): `readSmaps` (/proc/self/smaps) is read and
 * the pages dropped in one go, so that no mapping changes in between; `done` gets the report, or
 * null and the error when smaps cannot be read.
 */
export function dropColdPagesLater(
  dropPages: (start: number, length: number) => number,
  readSmaps: () => string,
  done: (report: ColdPagesReport | null, err?: unknown) => void,
  afterMs: number = COLD_PAGES_AFTER_MS,
): NodeJS.Timeout {
  const timer = setTimeout(() => {
    let smaps: string;
    try {
      smaps = readSmaps();
    } catch (err) {
      done(null, err);
      return;
    }
    done(dropColdPages(smaps, dropPages));
  }, afterMs);
  timer.unref();
  return timer;
}

import {
  coldFileMappings,
  dropColdPages,
  dropColdPagesLater,
  type ColdPagesReport,
  MemoryTrimmer,
  TRIM_GROWTH_BYTES,
} from '../../../src/agent/proxy/memory-trim';

const MIB = 1024 * 1024;

/** A process whose resident size the test sets; a trim gives back `freed` of it. */
function fakeProcess(startMiB: number) {
  const p = { rss: startMiB * MIB, freed: 0, now: 0, trims: 0 };
  return {
    p,
    deps: {
      rss: () => p.rss,
      nowMs: () => p.now,
      trim: () => {
        p.trims++;
        p.now += 3;
        p.rss -= p.freed;
        return p.freed > 0;
      },
    },
  };
}

describe('the C heap trimmer', () => {
  it('trims only once the resident size grew by the threshold since the start, then from the last trim', () => {
    const { p, deps } = fakeProcess(30);
    const t = new MemoryTrimmer(deps);
    p.rss += TRIM_GROWTH_BYTES - 1;
    expect(t.check()).toBe(false);
    p.rss += 1;
    p.freed = 20 * MIB;
    expect(t.check()).toBe(true);
    expect(p.trims).toBe(1);
    expect(t.stats()).toEqual({
      trims: 1,
      releasedBytes: 20 * MIB,
      lastTrimMs: 3,
      baselineBytes: 30 * MIB + TRIM_GROWTH_BYTES - 20 * MIB,
    });
    // Growth is measured from what the trim left.
    p.freed = 0;
    p.rss += TRIM_GROWTH_BYTES - 1;
    expect(t.check()).toBe(false);
    expect(p.trims).toBe(1);
  });

  it('measures growth from a lower mark when the process gave memory back by itself', () => {
    const { p, deps } = fakeProcess(60);
    const t = new MemoryTrimmer(deps);
    p.rss = 40 * MIB;
    expect(t.check()).toBe(false);
    p.rss = 40 * MIB + TRIM_GROWTH_BYTES;
    expect(t.check()).toBe(true);
  });

  it('trims once the C heap holds the threshold more free bytes, the resident size unchanged (a burst gone)', () => {
    const { p, deps } = fakeProcess(30);
    let free = 2 * MIB;
    const t = new MemoryTrimmer({ ...deps, freeBytes: () => free });
    free += TRIM_GROWTH_BYTES - 1;
    expect(t.check()).toBe(false);
    free += 1;
    p.freed = 1 * MIB;
    expect(t.check()).toBe(true);
    expect(t.stats()).toMatchObject({ trims: 1, releasedBytes: MIB, baselineBytes: 29 * MIB });
    // The chunks stay free after the trim (their pages given back): only new frees count.
    p.freed = 0;
    expect(t.check()).toBe(false);
    // Free memory used again, then as much freed: measured from the lowest mark.
    free -= 3 * MIB;
    expect(t.check()).toBe(false);
    free += TRIM_GROWTH_BYTES;
    expect(t.check()).toBe(true);
    expect(p.trims).toBe(2);
  });

  it('counts no bytes released when a trim found nothing to give back', () => {
    const { p, deps } = fakeProcess(30);
    const t = new MemoryTrimmer(deps, MIB);
    p.rss += 2 * MIB;
    expect(t.check()).toBe(true);
    expect(t.stats()).toMatchObject({ trims: 1, releasedBytes: 0, baselineBytes: 32 * MIB });
  });
});

/** A mapping's lines as /proc/self/smaps writes them (the fields that matter here). */
const mapping = (
  range: string,
  perms: string,
  path: string,
  rssKiB: number,
  anonKiB: number,
): string =>
  [
    `${range} ${perms} 00000000 fd:00 1234                       ${path}`.trimEnd(),
    `Size:              ${rssKiB * 2} kB`,
    `Rss:               ${rssKiB} kB`,
    `Pss:               ${rssKiB} kB`,
    `Anonymous:         ${anonKiB} kB`,
    'VmFlags: rd mr mw me sd',
  ].join('\n');

describe("the pages of Node's binary only the start used", () => {
  const SMAPS = [
    mapping('00400000-00500000', 'r--p', '/usr/bin/node', 800, 0),
    mapping('00500000-02500000', 'r-xp', '/usr/bin/node', 30_000, 0),
    // RELRO: made read-only after the loader relocated it: private copies, kept.
    mapping('02500000-02600000', 'r--p', '/usr/bin/node', 900, 900),
    mapping('02600000-02700000', 'rw-p', '/usr/bin/node', 100, 60),
    mapping('02700000-02800000', 'rw-p', '[heap]', 9_000, 9_000),
    mapping('7f0000000000-7f0000100000', 'rw-p', '', 20_000, 20_000),
    mapping('7f0000100000-7f0000200000', 'r-xp', '/usr/lib/libc.so.6', 700, 0),
    // Not resident: nothing to drop.
    mapping('7f0000200000-7f0000300000', 'r--p', '/usr/share/zoneinfo/UTC', 0, 0),
    mapping('7f0000300000-7f0000301000', '---p', '/usr/lib/libc.so.6', 0, 0),
    mapping('7ffd00000000-7ffd00002000', 'r-xp', '[vdso]', 8, 0),
    mapping('7f0000400000-7f0000500000', 'r--p', '/tmp/gone.node (deleted)', 40, 0),
  ].join('\n');

  it('are the resident read-only mappings of files that hold no private copy of a page', () => {
    expect(coldFileMappings(SMAPS)).toEqual([
      { start: 0x400000, length: 0x100000, residentBytes: 800 * 1024, path: '/usr/bin/node' },
      { start: 0x500000, length: 0x2000000, residentBytes: 30_000 * 1024, path: '/usr/bin/node' },
      {
        start: 0x7f0000100000,
        length: 0x100000,
        residentBytes: 700 * 1024,
        path: '/usr/lib/libc.so.6',
      },
    ]);
  });

  it('are dropped once, that long after, smaps read then; an unreadable smaps drops nothing', async () => {
    const got: [ColdPagesReport | null, unknown][] = [];
    const dropped: number[] = [];
    dropColdPagesLater(
      (start) => dropped.push(start) && 0,
      () => SMAPS,
      (r, err) => got.push([r, err]),
      30,
    );
    dropColdPagesLater(
      () => 0,
      () => {
        throw new Error('EACCES');
      },
      (r, err) => got.push([r, err]),
      30,
    );
    expect(got).toEqual([]);
    await new Promise((r) => setTimeout(r, 80));
    expect(dropped).toHaveLength(3);
    expect(got).toEqual([
      [expect.objectContaining({ mappings: 3, failed: 0 }), undefined],
      [null, new Error('EACCES')],
    ]);
  });

  it('are dropped range by range, a refused range counted apart', () => {
    const asked: number[] = [];
    let now = 0;
    const report = dropColdPages(
      SMAPS,
      (start) => {
        asked.push(start);
        now += 2;
        return start === 0x400000 ? -22 : 0;
      },
      () => now,
    );
    expect(asked).toEqual([0x400000, 0x500000, 0x7f0000100000]);
    expect(report).toEqual({
      mappings: 2,
      droppedBytes: (30_000 + 700) * 1024,
      failed: 1,
      tookMs: 6,
    });
  });
});

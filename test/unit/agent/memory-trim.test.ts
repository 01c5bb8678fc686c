import { MemoryTrimmer, TRIM_GROWTH_BYTES } from '../../../src/agent/proxy/memory-trim';

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

  it('counts no bytes released when a trim found nothing to give back', () => {
    const { p, deps } = fakeProcess(30);
    const t = new MemoryTrimmer(deps, MIB);
    p.rss += 2 * MIB;
    expect(t.check()).toBe(true);
    expect(t.stats()).toMatchObject({ trims: 1, releasedBytes: 0, baselineBytes: 32 * MIB });
  });
});

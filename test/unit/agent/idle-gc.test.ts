import { runInNewContext } from 'node:vm';
import {
  IDLE_GC_GROWTH_BYTES,
  IDLE_UTILIZATION,
  IdleCollector,
  oldGenerationBytes,
  v8FullCollection,
} from '../../../src/agent/proxy/idle-gc';

const MIB = 1024 * 1024;

/**
 * A process whose loop's busy share since the last look and old generation the test sets; a
 * collection frees `garbage` and makes the loop busy for its own time.
 */
function fakeHeap(startMiB: number) {
  const p = { busy: 0, oldMiB: startMiB, garbageMiB: 0, now: 0, collections: 0 };
  return {
    p,
    deps: {
      utilization: () => {
        const u = p.busy;
        p.busy = 0;
        return u;
      },
      oldBytes: () => p.oldMiB * MIB,
      collect: () => {
        p.collections++;
        p.now += 20;
        p.busy = 1;
        p.oldMiB -= p.garbageMiB;
        p.garbageMiB = 0;
      },
      nowMs: () => p.now,
    },
  };
}

describe('the collection of a quiet proxy', () => {
  it('collects once the loop was quiet since the last look and the old generation grew by the threshold', () => {
    const { p, deps } = fakeHeap(9);
    const c = new IdleCollector(deps);
    // Grown, but busy.
    p.oldMiB += IDLE_GC_GROWTH_BYTES / MIB;
    p.garbageMiB = 1.5;
    p.busy = 0.3;
    expect(c.check()).toBe(false);
    // Busy at the threshold is busy.
    p.busy = IDLE_UTILIZATION;
    expect(c.check()).toBe(false);
    expect(p.collections).toBe(0);
    // Quiet: collected.
    p.busy = 0.001;
    expect(c.check()).toBe(true);
    expect(c.stats()).toEqual({
      collections: 1,
      freedBytes: 1.5 * MIB,
      lastCollectionMs: 20,
      baselineBytes: 9.5 * MIB,
    });
    // The collection's own time is not the next look's: grown again and quiet, collected again.
    p.oldMiB += IDLE_GC_GROWTH_BYTES / MIB;
    expect(c.check()).toBe(true);
    expect(p.collections).toBe(2);
  });

  it('measures growth from after the last collection, or from where V8 left the heap lower', () => {
    const { p, deps } = fakeHeap(9);
    const c = new IdleCollector(deps);
    // Quiet, 2 MiB less one byte over the start: not collected.
    p.oldMiB = 9 + 2 - 1 / MIB;
    expect(c.check()).toBe(false);
    // V8 collected by itself (down to 8): from there, 2 MiB more is enough.
    p.oldMiB = 8;
    expect(c.check()).toBe(false);
    p.oldMiB = 10;
    p.garbageMiB = 1;
    expect(c.check()).toBe(true);
    expect(c.stats().baselineBytes).toBe(9 * MIB);
    // A collection that freed nothing counts no freed bytes.
    p.busy = 0;
    p.oldMiB = 11;
    expect(c.check()).toBe(true);
    expect(c.stats()).toMatchObject({
      collections: 2,
      freedBytes: 1 * MIB,
      baselineBytes: 11 * MIB,
    });
  });

  it("V8's full collection frees the old generation's dead objects, and leaves no `gc` to later contexts", () => {
    const collect = v8FullCollection();
    expect(runInNewContext('typeof gc')).toBe('undefined');
    // About 8 MiB of objects that outlive a collection (moved to the old generation).
    const holder: { kept: { i: number; s: string }[][] | null } = { kept: [] };
    for (let j = 0; j < 40; j++) {
      holder.kept?.push(Array.from({ length: 5_000 }, (_, i) => ({ i, s: `item ${j} ${i}` })));
    }
    collect();
    const withThem = oldGenerationBytes();
    expect(holder.kept?.length).toBe(40);
    holder.kept = null;
    collect();
    const after = oldGenerationBytes();
    expect(withThem - after).toBeGreaterThan(4 * MIB);
  });
});

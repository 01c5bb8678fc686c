import { CryptoQueue } from '../../../src/ca/crypto-queue';

/** A schedule that keeps the flushes for the test to run. */
function manualSchedule() {
  const flushes: (() => void)[] = [];
  return {
    schedule: (flush: () => void) => {
      flushes.push(flush);
    },
    flushes,
  };
}

describe('the crypto queue', () => {
  it('runs what was queued before a flush in one flush, in order, and nothing before it', async () => {
    const { schedule, flushes } = manualSchedule();
    const queue = new CryptoQueue(schedule);
    const ran: number[] = [];
    const results = [1, 2, 3].map((n) => queue.run(() => (ran.push(n), n * 10)));
    expect({ flushes: flushes.length, ran, waiting: queue.size }).toEqual({
      flushes: 1,
      ran: [],
      waiting: 3,
    });
    flushes[0]?.();
    expect(await Promise.all(results)).toEqual([10, 20, 30]);
    expect(ran).toEqual([1, 2, 3]);
    expect(queue.size).toBe(0);
  });

  it('settles an operation that throws on its own, and runs the others', async () => {
    const { schedule, flushes } = manualSchedule();
    const queue = new CryptoQueue(schedule);
    const first = queue.run(() => 'a');
    const failing = queue.run(() => {
      throw new RangeError('bad key');
    });
    const last = queue.run(() => 'c');
    flushes[0]?.();
    await expect(failing).rejects.toThrow('bad key');
    expect(await Promise.all([first, last])).toEqual(['a', 'c']);
  });

  it('schedules a new flush for what is queued after one', async () => {
    const { schedule, flushes } = manualSchedule();
    const queue = new CryptoQueue(schedule);
    const a = queue.run(() => 1);
    flushes[0]?.();
    const b = queue.run(() => 2);
    expect(flushes).toHaveLength(2);
    flushes[1]?.();
    expect(await Promise.all([a, b])).toEqual([1, 2]);
  });
});

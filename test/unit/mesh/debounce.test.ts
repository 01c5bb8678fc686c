import { debounceWait } from '../../../src/mesh/debounce';

describe('the push debounce (Istio: 100 ms of quiet, at most 10 s)', () => {
  it.each([
    ['waits 100 ms after a single change', { firstAt: 0, lastAt: 0 }, 0, 100],
    ['waits the rest of the quiet period', { firstAt: 0, lastAt: 0 }, 60, 40],
    ['pushes once 100 ms passed without a change', { firstAt: 0, lastAt: 0 }, 100, 0],
    ['starts the quiet period again at each change', { firstAt: 0, lastAt: 950 }, 1000, 50],
    ['never waits past 10 s after the first change', { firstAt: 0, lastAt: 9990 }, 9995, 5],
    ['pushes at once when a steady stream reached 10 s', { firstAt: 0, lastAt: 10_050 }, 10_060, 0],
  ])('%s', (_sentence, times, now, wait) => {
    expect(debounceWait(times, now)).toBe(wait);
  });
});

// When to push after a burst of changes, as Istio's istiod debounces (pilot/pkg/xds/discovery.go):
// wait for `quietMs` without a new change (PILOT_DEBOUNCE_AFTER, 100 ms), but never longer than
// `maxMs` after the first change of the burst (PILOT_DEBOUNCE_MAX, 10 s), so that a steady
// stream of changes still reaches the proxies. Pure: the caller passes the times.

export interface DebounceTimes {
  /** When the first change of the burst arrived (monotonic milliseconds). */
  readonly firstAt: number;
  /** When the latest one arrived. */
  readonly lastAt: number;
}

export const DEBOUNCE_QUIET_MS = 100;
export const DEBOUNCE_MAX_MS = 10_000;

/** Milliseconds to wait before pushing; 0: push now. */
export function debounceWait(
  times: DebounceTimes,
  now: number,
  quietMs: number = DEBOUNCE_QUIET_MS,
  maxMs: number = DEBOUNCE_MAX_MS,
): number {
  const due = Math.min(times.lastAt + quietMs, times.firstAt + maxMs);
  return Math.max(0, due - now);
}

// How long to wait before replacing a process or thread that died: 1 s, doubling with each
// failure of the last minute, at most 30 s.

export function restartDelayMs(recentFailures: number): number {
  return Math.min(30_000, 1000 * 2 ** Math.max(0, recentFailures - 1));
}

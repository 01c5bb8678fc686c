import { collectDefaultMetrics, Registry } from 'prom-client';

/**
 * How often the event loop's delay is sampled for `nodejs_eventloop_lag_*`. prom-client's default
 * is 10 ms: a timer that wakes the process 100 times a second with nothing else to do. Measured
 * on the sidecars of real Pods at rest: 200 wake-ups and 7-16 ms of CPU per second (bench/RESULTS.md).
 * A stall still shows in full: it delays the next sample by its length.
 */
export const EVENT_LOOP_SAMPLE_MS = 100;

/** A fresh registry with process metrics. Each process (and each test) builds its own. */
export function createRegistry(options: { processMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  if (options.processMetrics ?? true) {
    collectDefaultMetrics({
      register: registry,
      eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS,
    });
  }
  return registry;
}

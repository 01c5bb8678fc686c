import { monitorEventLoopDelay } from 'node:perf_hooks';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';

/**
 * How often the event loop's delay is sampled for `nodejs_eventloop_lag_*`. prom-client's default
 * is 10 ms: a timer that wakes the process 100 times a second with nothing else to do. Measured
 * on the sidecars of real Pods at rest: 200 wake-ups and 7-16 ms of CPU per second (bench/RESULTS.md).
 * A stall still shows in full: the sample that falls due during it runs that much late.
 */
export const EVENT_LOOP_SAMPLE_MS = 100;

/**
 * The resolution prom-client's own delay histogram is given: it is replaced by the one below, and
 * a timer this long apart (about 24.8 days, the largest a timer takes) never wakes the process.
 */
const UNUSED_RESOLUTION_MS = 2 ** 31 - 1;

type DelayHistogram = ReturnType<typeof monitorEventLoopDelay>;

interface DelayGauge {
  /** Which statistic: the gauge is `nodejs_eventloop_lag_<stat>_seconds`, as prom-client's. */
  readonly stat: string;
  readonly help: string;
  /** Its value in a delay histogram, in ns. */
  readonly read: (h: DelayHistogram) => number;
  /** How `--workers` combines the workers' values (prom-client's AggregatorRegistry). */
  readonly aggregator: 'min' | 'max' | 'average';
  /** A spread, not a delay (the stddev): the sampling interval is not taken from it. */
  readonly spread: boolean;
}

const delayGauge = (
  stat: string,
  help: string,
  read: DelayGauge['read'],
  aggregator: DelayGauge['aggregator'] = 'average',
  spread = false,
): DelayGauge => ({ stat, help, read, aggregator, spread });

const DELAY_GAUGES: readonly DelayGauge[] = [
  delayGauge('min', 'The minimum recorded event loop delay.', (h) => h.min, 'min'),
  delayGauge('max', 'The maximum recorded event loop delay.', (h) => h.max, 'max'),
  delayGauge('mean', 'The mean of the recorded event loop delays.', (h) => h.mean),
  delayGauge(
    'stddev',
    'The standard deviation of the recorded event loop delays.',
    (h) => h.stddev,
    'average',
    true,
  ),
  // prom-client's percentiles.
  ...[50, 90, 99].map((p) =>
    delayGauge(`p${p}`, `The ${p}th percentile of the recorded event loop delays.`, (h) =>
      h.percentile(p),
    ),
  ),
];

/**
 * The event loop's delay since the last scrape, as prom-client names it, but without the sampling
 * interval. Node's histogram records the time between two runs of its sampling timer, so
 * prom-client's gauges read the interval itself on an idle loop (0.1 s here). What a user wants
 * is how late the timer ran: the recorded time minus the interval, never below zero.
 */
function registerEventLoopDelay(registry: Registry, sampleMs: number): void {
  const histogram = monitorEventLoopDelay({ resolution: sampleMs });
  histogram.enable();
  const intervalNs = sampleMs * 1e6;
  const seconds = (ns: number): number => Math.max(0, ns - intervalNs) / 1e9;
  // One gauge's collect sets them all from the same samples, then starts afresh (as prom-client).
  const gauges: { gauge: Gauge; read: DelayGauge['read']; spread: boolean }[] = [];
  const collect = (): void => {
    const sampled = histogram.count > 0;
    for (const { gauge, read, spread } of gauges) {
      const ns = sampled ? read(histogram) : 0;
      gauge.set(spread ? ns / 1e9 : seconds(ns));
    }
    histogram.reset();
  };
  for (const { stat, help, read, aggregator, spread } of DELAY_GAUGES) {
    const name = `nodejs_eventloop_lag_${stat}_seconds`;
    registry.removeSingleMetric(name);
    const first = gauges.length === 0;
    const gauge = new Gauge({
      name,
      help,
      registers: [registry],
      aggregator,
      ...(first ? { collect } : {}),
    });
    gauges.push({ gauge, read, spread });
  }
}

/** A fresh registry with process metrics. Each process (and each test) builds its own. */
export function createRegistry(options: { processMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  if (options.processMetrics ?? true) {
    collectDefaultMetrics({
      register: registry,
      eventLoopMonitoringPrecision: UNUSED_RESOLUTION_MS,
    });
    registerEventLoopDelay(registry, EVENT_LOOP_SAMPLE_MS);
  }
  return registry;
}

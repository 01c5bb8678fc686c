import { setTimeout as sleep } from 'node:timers/promises';
import { createRegistry, EVENT_LOOP_SAMPLE_MS } from '../../../src/observability/metrics';

const DELAY_NAMES = ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99'].map(
  (s) => `nodejs_eventloop_lag_${s}_seconds`,
);

/** The value of an unlabelled sample in a scrape. */
function sample(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (line === undefined) throw new Error(`no ${name} in the scrape`);
  return Number(line.slice(name.length + 1));
}

function block(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    // the event loop is held here, as by a long synchronous task
  }
}

describe('the process metrics', () => {
  it('report the event loop delay without the sampling interval, since the last scrape', async () => {
    const registry = createRegistry();
    await sleep(EVENT_LOOP_SAMPLE_MS * 4.5);
    const idle = await registry.metrics();
    // Node's histogram records the time between two samples: at rest that is the interval (0.1
    // s), which is not a delay.
    expect(sample(idle, 'nodejs_eventloop_lag_min_seconds')).toBeLessThan(0.05);
    expect(sample(idle, 'nodejs_eventloop_lag_p50_seconds')).toBeLessThan(
      EVENT_LOOP_SAMPLE_MS / 1000,
    );

    await sleep(EVENT_LOOP_SAMPLE_MS * 1.5);
    block(EVENT_LOOP_SAMPLE_MS * 2.5);
    await sleep(EVENT_LOOP_SAMPLE_MS * 1.5);
    const stalled = await registry.metrics();
    // A sample fell due during the block: it ran at least 1.5 intervals late.
    const max = sample(stalled, 'nodejs_eventloop_lag_max_seconds');
    expect(max).toBeGreaterThanOrEqual((EVENT_LOOP_SAMPLE_MS * 1.4) / 1000);
    expect(max).toBeLessThan(1);
    // The stddev is a spread of the recorded times, not a delay: the interval is not taken from
    // it (which would leave 0 here, a spread of about 0.1 s being no larger than the interval).
    expect(sample(stalled, 'nodejs_eventloop_lag_stddev_seconds')).toBeGreaterThan(0.02);

    await sleep(EVENT_LOOP_SAMPLE_MS * 3.5);
    const after = await registry.metrics();
    // The scrape started the samples afresh: the block is no longer in them.
    expect(sample(after, 'nodejs_eventloop_lag_max_seconds')).toBeLessThan(max);
  });

  it('name each delay gauge once, with the lag measured at the scrape beside them', async () => {
    const text = await createRegistry().metrics();
    for (const name of [...DELAY_NAMES, 'nodejs_eventloop_lag_seconds']) {
      expect(text.split('\n').filter((l) => l === `# TYPE ${name} gauge`)).toHaveLength(1);
    }
    // Before a sample, the delays are 0, not the histogram's empty values.
    for (const name of DELAY_NAMES) expect(sample(text, name)).toBe(0);
  });
});

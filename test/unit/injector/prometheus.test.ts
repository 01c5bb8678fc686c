// Metrics merging: the injector's rewrite of the scrape annotations, and the contract the agent
// reads back.

import { parseAppMetrics } from '../../../src/api/app-metrics';
import { scrapeRewrite } from '../../../src/injector/prometheus';

const MERGED = {
  'prometheus.io/scrape': 'true',
  'prometheus.io/port': '15020',
  'prometheus.io/path': '/stats/prometheus',
};

describe('the scrape annotations of an injected Pod', () => {
  it('point at the agent and hand the app target over when the app is scraped', () => {
    const r = scrapeRewrite(
      {
        'prometheus.io/scrape': 'true',
        'prometheus.io/port': '9102',
        'prometheus.io/path': '/m',
        other: 'kept elsewhere',
      },
      15020,
    );
    expect(r?.annotations).toEqual(MERGED);
    expect(parseAppMetrics(r?.appMetrics)).toEqual({ port: 9102, path: '/m' });
  });

  it('point at the agent without an app target when the Pod had none', () => {
    const r = scrapeRewrite({}, 15020);
    expect(r).toEqual({ annotations: MERGED, appMetrics: undefined });
    expect(parseAppMetrics(r?.appMetrics)).toBeNull();
  });

  it('are left alone when the Pod opted out', () => {
    expect(scrapeRewrite({ 'prometheus.io/scrape': 'false' }, 15020)).toBeNull();
  });

  it('use the agent port of the configuration', () => {
    expect(scrapeRewrite({}, 16020)?.annotations['prometheus.io/port']).toBe('16020');
  });
});

describe("the agent's reading of the app target", () => {
  it.each([
    ['{"scrape":"true","port":"8080"}', { port: 8080, path: '/metrics' }],
    ['{"scrape":"true","port":"8080","path":"/x"}', { port: 8080, path: '/x' }],
    ['{"scrape":"true"}', null],
    ['{"scrape":"false","port":"8080"}', null],
    ['', null],
  ])('%s gives %j', (text, expected) => {
    expect(parseAppMetrics(text)).toEqual(expected);
  });

  it.each([
    ['nope', 'is not JSON'],
    ['[]', 'must be a JSON object'],
    ['{"scrape":"true","port":"http"}', 'port "http" is not a port'],
    ['{"scrape":"true","port":"99999"}', 'is not a port'],
    ['{"scrape":"true","port":"80","path":"metrics"}', 'must start with /'],
  ])('refuses %s', (text, message) => {
    expect(() => parseAppMetrics(text)).toThrow(message);
  });
});

// Metrics merging on 15020 `/stats/prometheus`: a real app serving its metrics, the proxy's text
// and the agent's registry in one scrape, through the agent's real server; an app that is broken
// in any way never hides the other two.

import http from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { Counter, Registry } from 'prom-client';
import { close, createAgentServer, listen } from '../../../../src/agent/health/servers';
import { mergeMetrics, podMetrics } from '../../../../src/agent/health/merged-metrics';

const log = pino({ level: 'silent' });
const PROXY_TEXT =
  '# TYPE istio_requests_total counter\nistio_requests_total{reporter="destination",response_code="200"} 7\n';

type Behaviour = 'ok' | '500' | 'slow' | 'huge' | 'openmetrics';
let behaviour: Behaviour = 'ok';
let app: http.Server;
let appPort: number;
let agent: http.Server;
let agentUrl: string;
let registry: Registry;

beforeAll(async () => {
  app = http.createServer((req, res) => {
    expect(req.url).toBe('/custom/metrics');
    switch (behaviour) {
      case '500':
        res.writeHead(500).end('boom');
        return;
      case 'slow':
        setTimeout(() => res.end('late_total 1\n'), 2_000);
        return;
      case 'huge':
        res.end('x'.repeat(2048));
        return;
      case 'openmetrics':
        res.end('# TYPE shop_orders counter\nshop_orders_total 3\n# EOF\n');
        return;
      default:
        res.end('# TYPE shop_orders_total counter\nshop_orders_total 3'); // no final newline
    }
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  appPort = (app.address() as AddressInfo).port;
  registry = new Registry();
  new Counter({ name: 'mooring_agent_renewals_total', help: 'x', registers: [registry] }).inc(2);
  agent = createAgentServer({
    registry,
    probes: new Map(),
    runProbe: () => Promise.resolve({ ok: true, detail: '' }),
    log,
    mergedMetrics: podMetrics({
      app: { port: appPort, path: '/custom/metrics' },
      appHost: '127.0.0.1',
      proxy: () => PROXY_TEXT,
      registry,
      log,
      appTimeoutMs: 300,
      appMaxBytes: 1024,
    }),
  });
  agentUrl = `http://127.0.0.1:${(await listen(agent, '127.0.0.1', 0)).port}`;
});

afterAll(async () => {
  await close(agent);
  app.closeAllConnections();
  app.close();
});

async function scrape(): Promise<string> {
  const res = await fetch(`${agentUrl}/stats/prometheus`);
  expect(res.status).toBe(200);
  expect(res.headers.get('content-type')).toContain('text/plain; version=0.0.4');
  return res.text();
}

const failures = (text: string): number =>
  Number(/^mooring_agent_app_scrape_failures_total (\d+)$/m.exec(text)?.[1] ?? NaN);

describe('the merged scrape', () => {
  it("serves the app's metrics, the proxy's and the agent's, each ending its line", async () => {
    behaviour = 'ok';
    const text = await scrape();
    expect(text).toContain('shop_orders_total 3\n# TYPE istio_requests_total counter\n');
    expect(text).toContain('istio_requests_total{reporter="destination",response_code="200"} 7\n');
    expect(text).toContain('mooring_agent_renewals_total 2\n');
    expect(text.indexOf('shop_orders_total')).toBeLessThan(text.indexOf('istio_requests_total'));
    expect(text.indexOf('istio_requests_total')).toBeLessThan(text.indexOf('mooring_agent'));
  });

  it('drops the OpenMetrics end marker of the app, so that what follows is still read', async () => {
    behaviour = 'openmetrics';
    const text = await scrape();
    expect(text).not.toContain('# EOF');
    expect(text).toContain('shop_orders_total 3\n# TYPE istio_requests_total');
  });

  it.each<[Behaviour, string]>([
    ['500', 'answers 500'],
    ['slow', 'is slower than the limit'],
    ['huge', 'sends more than the limit'],
  ])('keeps the proxy and the agent when the app %s (%s), and counts it', async (b) => {
    behaviour = b;
    const before = failures(await scrapeWithOkApp());
    behaviour = b;
    const text = await scrape();
    expect(text).toContain('istio_requests_total{reporter="destination",response_code="200"} 7');
    expect(text).toContain('mooring_agent_renewals_total 2');
    expect(text).not.toContain('shop_orders_total');
    expect(text).not.toContain('xxxx');
    behaviour = 'ok';
    expect(failures(await scrape())).toBe(before + 1);
  });

  it('keeps the others when nothing listens on the app port', async () => {
    const merged = await mergeMetrics([
      {
        name: 'app',
        read: () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:1')),
      },
      { name: 'proxy', read: () => PROXY_TEXT },
    ]);
    expect(merged.text).toBe(PROXY_TEXT);
    expect(merged.failures).toEqual([
      { source: 'app', reason: 'connect ECONNREFUSED 127.0.0.1:1' },
    ]);
  });
});

async function scrapeWithOkApp(): Promise<string> {
  behaviour = 'ok';
  return scrape();
}

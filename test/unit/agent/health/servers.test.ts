import type http from 'node:http';
import pino from 'pino';
import { Registry } from 'prom-client';
import { createAgentMetrics } from '../../../../src/agent/identity/metrics';
import { parseAppProbes } from '../../../../src/api/app-probes';
import {
  close,
  createAgentServer,
  createReadinessServer,
  isLoopback,
  listen,
  probeForPath,
  type Readiness,
} from '../../../../src/agent/health/servers';
import { waitForReady } from '../../../../src/agent/health/wait';

const log = pino({ level: 'silent' });
const open: http.Server[] = [];

async function serve(s: http.Server): Promise<string> {
  open.push(s);
  const a = await listen(s, '127.0.0.1', 0);
  return `http://127.0.0.1:${a.port}`;
}

afterEach(async () => {
  for (const s of open.splice(0)) await close(s);
});

describe('readiness server', () => {
  it('answers 200 when ready and 503 with the reasons when not', async () => {
    let state: Readiness = { ready: false, reasons: ['no certificate yet'] };
    const base = await serve(createReadinessServer({ readiness: () => state, log }));
    let res = await fetch(`${base}/healthz/ready`);
    expect(res.status).toBe(503);
    expect(await res.text()).toContain('no certificate yet');
    state = { ready: true, reasons: [] };
    res = await fetch(`${base}/healthz/ready`);
    expect(res.status).toBe(200);
  });

  it('answers HEAD, and 404 elsewhere', async () => {
    const base = await serve(
      createReadinessServer({ readiness: () => ({ ready: true, reasons: [] }), log }),
    );
    expect((await fetch(`${base}/healthz/ready`, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(`${base}/metrics`)).status).toBe(404);
  });
});

describe('agent server /metrics', () => {
  it("serves the agent's metrics from its own registry", async () => {
    const registry = new Registry();
    const m = createAgentMetrics(registry);
    m.renewals.inc();
    m.renewalFailures.inc({ reason: 'unreachable' });
    m.certificateExpiry.set(1893456000);
    const base = await serve(
      createAgentServer({
        registry,
        probes: new Map(),
        runProbe: () => Promise.reject(new Error('unused')),
        log,
      }),
    );
    const res = await fetch(`${base}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    expect(text).toContain('mooring_agent_renewals_total 1');
    expect(text).toContain('mooring_agent_renewal_failures_total{reason="unreachable"} 1');
    expect(text).toContain('mooring_agent_certificate_expiry_timestamp_seconds 1893456000');
  });
});

describe("agent server: pilot-agent's /quitquitquit and /healthz/ready", () => {
  const agentServer = (quit?: () => void): http.Server =>
    createAgentServer({
      registry: new Registry(),
      probes: new Map(),
      runProbe: () => Promise.resolve({ ok: true, detail: '' }),
      log,
      ...(quit === undefined ? {} : { quit }),
    });

  it('stops the agent once answered, for POST from loopback only', async () => {
    let quits = 0;
    const base = await serve(agentServer(() => quits++));
    const get = await fetch(`${base}/quitquitquit`);
    expect([get.status, get.headers.get('allow'), quits]).toEqual([405, 'POST', 0]);
    // POST is for the quit request alone.
    expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).toBe(405);
    const res = await fetch(`${base}/quitquitquit`, { method: 'POST' });
    expect([res.status, await res.text()]).toEqual([200, 'OK\n']);
    expect(quits).toBe(1);
  });

  it('answers readiness on /healthz/ready too, as pilot-agent on 15020', async () => {
    let state: Readiness = { ready: false, reasons: ['no mesh configuration yet'] };
    const base = await serve(
      createAgentServer({
        registry: new Registry(),
        probes: new Map(),
        runProbe: () => Promise.resolve({ ok: true, detail: '' }),
        log,
        readiness: () => state,
      }),
    );
    let res = await fetch(`${base}/healthz/ready`);
    expect([res.status, await res.text()]).toEqual([503, 'not ready: no mesh configuration yet\n']);
    state = { ready: true, reasons: [] };
    res = await fetch(`${base}/healthz/ready`);
    expect(res.status).toBe(200);
  });

  it('is not served by an agent given nothing to do for it', async () => {
    const base = await serve(agentServer());
    expect((await fetch(`${base}/quitquitquit`, { method: 'POST' })).status).toBe(404);
  });

  it.each([
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['::1', true],
    ['::ffff:127.0.0.1', true],
    ['10.0.0.7', false],
    ['::ffff:10.0.0.7', false],
    ['fd00::1', false],
    ['1270::1', false],
    [undefined, false],
  ])('takes %s as loopback: %s', (address, loopback) => {
    expect(isLoopback(address)).toBe(loopback);
  });
});

describe('waitForReady', () => {
  it('returns once the endpoint answers 200', async () => {
    let calls = 0;
    const base = await serve(
      createReadinessServer({
        readiness: () => ({ ready: ++calls >= 3, reasons: ['not yet'] }),
        log,
      }),
    );
    const port = Number(new URL(base).port);
    await expect(
      waitForReady({ host: '127.0.0.1', port, timeoutMs: 5000, intervalMs: 20 }),
    ).resolves.toBe(true);
    expect(calls).toBe(3);
  });

  it('returns false when the timeout passes first', async () => {
    const base = await serve(
      createReadinessServer({ readiness: () => ({ ready: false, reasons: [] }), log }),
    );
    const started = Date.now();
    const port = Number(new URL(base).port);
    await expect(
      waitForReady({ host: '127.0.0.1', port, timeoutMs: 300, intervalMs: 50 }),
    ).resolves.toBe(false);
    expect(Date.now() - started).toBeLessThan(1500);
  });

  it('keeps trying while nothing listens yet', async () => {
    await expect(
      waitForReady({ host: '127.0.0.1', port: 1, timeoutMs: 200, intervalMs: 50 }),
    ).resolves.toBe(false);
  });
});

describe('probeForPath', () => {
  const probes = parseAppProbes(
    JSON.stringify({
      'web/livez': { tcpSocket: { port: 1 } },
      'my-app/readyz': { tcpSocket: { port: 2 } },
    }),
  );

  it.each([
    ['/app-health/web/livez', 1],
    ['/app-health/my-app/readyz', 2],
  ])('finds %s', (path, port) => {
    expect(probeForPath(path, probes)).toMatchObject({ tcpSocket: { port } });
  });

  it.each([
    ['an unknown container', '/app-health/db/livez'],
    ['an unknown kind', '/app-health/web/healthz'],
    ['a known container without that probe', '/app-health/web/readyz'],
    ['no container', '/app-health/livez'],
    ['another prefix', '/health/web/livez'],
  ])('finds nothing for %s', (_name, path) => {
    expect(probeForPath(path, probes)).toBeUndefined();
  });
});

// App probes through the agent's server, against real local HTTP, HTTPS, TCP and gRPC servers.

import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { Registry } from 'prom-client';
import { SERVING_STATUS } from '../../src/agent/health/grpc-health';
import { runProbe } from '../../src/agent/health/probe-runner';
import { parseAppProbes } from '../../src/api/app-probes';
import { close, createAgentServer, listen } from '../../src/agent/health/servers';
import { startGrpcHealthServer, type GrpcHealthServer } from '../fixtures/grpc-health-server';
import { makeCa, makeServing } from '../fixtures/agent-pki';

const log = pino({ level: 'silent' });

function appHandler(req: http.IncomingMessage, res: http.ServerResponse): void {
  const url = req.url ?? '/';
  if (url === '/ok') {
    res.end('ok');
  } else if (url === '/fail') {
    res.writeHead(500).end('boom');
  } else if (url === '/redirect') {
    res.writeHead(302, { location: '/elsewhere' }).end();
  } else if (url === '/redirect-ok') {
    res.writeHead(301, { location: '/ok' }).end();
  } else if (url === '/redirect-away') {
    res.writeHead(302, { location: 'http://elsewhere.invalid/fail' }).end();
  } else if (url === '/loop') {
    res.writeHead(302, { location: '/loop' }).end();
  } else if (url === '/a%20b') {
    res.end('escaped');
  } else if (url === '/multi') {
    res.writeHead(req.headers['x-multi'] === 'a, b' ? 200 : 400).end();
  } else if (url === '/headers') {
    const good = req.headers['x-probe'] === 'yes' && req.headers.host === 'app.internal';
    res.writeHead(good ? 200 : 401).end(JSON.stringify(req.headers));
  } else if (url === '/agent') {
    res.writeHead(/^kube-probe\//.test(req.headers['user-agent'] ?? '') ? 200 : 400).end();
  } else if (url.startsWith('/slow')) {
    setTimeout(() => res.end('late'), 1500).unref();
  } else {
    res.writeHead(404).end();
  }
}

const servers: { close(): unknown }[] = [];
let httpPort = 0;
let httpsPort = 0;
let tcpPort = 0;
let closedPort = 0;
let grpc: GrpcHealthServer;
let agentBase = '';
let agent: http.Server;

async function listenOn(s: net.Server): Promise<number> {
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  servers.push(s);
  return (s.address() as AddressInfo).port;
}

beforeAll(async () => {
  httpPort = await listenOn(http.createServer(appHandler));
  // The app's own self-signed certificate: the kubelet (and so the agent) does not verify it.
  const tls = makeServing(makeCa('App Self-Signed'));
  httpsPort = await listenOn(https.createServer({ cert: tls.cert, key: tls.key }, appHandler));
  tcpPort = await listenOn(net.createServer((socket) => socket.end()));
  const closed = net.createServer();
  closedPort = await listenOn(closed);
  await new Promise((r) => closed.close(r));
  grpc = await startGrpcHealthServer({
    '': SERVING_STATUS.SERVING,
    db: SERVING_STATUS.SERVING,
    cache: SERVING_STATUS.NOT_SERVING,
  });
  servers.push(grpc);

  const probes = parseAppProbes(
    JSON.stringify({
      'web/livez': { httpGet: { path: '/ok', port: httpPort } },
      'web/readyz': { httpGet: { path: '/fail', port: httpPort } },
      'web/startupz': { httpGet: { path: '/redirect', port: httpPort } },
      'redirect/livez': { httpGet: { path: '/redirect-ok', port: httpPort } },
      'redirect/readyz': { httpGet: { path: '/redirect-away', port: httpPort } },
      'redirect/startupz': { httpGet: { path: '/loop', port: httpPort } },
      'odd/livez': { httpGet: { path: '/a b', port: httpPort } },
      'odd/readyz': {
        httpGet: { path: '/ok', port: httpPort, httpHeaders: [{ name: 'Bad Header', value: 'v' }] },
      },
      'odd/startupz': {
        httpGet: {
          path: '/multi',
          port: httpPort,
          httpHeaders: [
            { name: 'X-Multi', value: 'a' },
            { name: 'x-multi', value: 'b' },
          ],
        },
      },
      'headers/readyz': {
        httpGet: {
          path: '/headers',
          port: httpPort,
          httpHeaders: [
            { name: 'X-Probe', value: 'yes' },
            { name: 'Host', value: 'app.internal' },
          ],
        },
      },
      'headers/livez': { httpGet: { path: '/headers', port: httpPort } },
      'ua/livez': { httpGet: { path: '/agent', port: httpPort } },
      'tls/livez': { httpGet: { path: '/ok', port: httpsPort, scheme: 'HTTPS' } },
      'tls/readyz': { httpGet: { path: '/fail', port: httpsPort, scheme: 'HTTPS' } },
      'plain-to-tls/livez': { httpGet: { path: '/ok', port: httpsPort, scheme: 'HTTP' } },
      'slow/livez': { httpGet: { path: '/slow', port: httpPort }, timeoutSeconds: 0.3 },
      'slow/readyz': { httpGet: { path: '/slow', port: httpPort }, timeoutSeconds: 3 },
      'tcp/livez': { tcpSocket: { port: tcpPort } },
      'tcp/readyz': { tcpSocket: { port: closedPort } },
      'tcp/startupz': { tcpSocket: { port: tcpPort, host: '127.0.0.1' } },
      'grpc/livez': { grpc: { port: grpc.port } },
      'grpc/readyz': { grpc: { port: grpc.port, service: 'db' } },
      'grpc-bad/livez': { grpc: { port: grpc.port, service: 'cache' } },
      'grpc-bad/readyz': { grpc: { port: grpc.port, service: 'nobody' } },
      'grpc-bad/startupz': { grpc: { port: closedPort } },
      'grpc-slow/livez': { grpc: { port: grpc.port, service: 'slow' }, timeoutSeconds: 0.3 },
    }),
  );
  agent = createAgentServer({ registry: new Registry(), probes, runProbe, log });
  const address = await listen(agent, '127.0.0.1', 0);
  agentBase = `http://127.0.0.1:${address.port}`;
});

afterAll(async () => {
  await close(agent);
  for (const s of servers) await s.close();
});

async function get(path: string): Promise<{ status: number; body: string; ms: number }> {
  const started = Date.now();
  const res = await fetch(`${agentBase}${path}`);
  return { status: res.status, body: await res.text(), ms: Date.now() - started };
}

describe('app probes on /app-health', () => {
  it.each([
    ['an HTTP probe on a 200', '/app-health/web/livez', 200],
    ['an HTTP probe on a 500', '/app-health/web/readyz', 503],
    // Redirects as the kubelet: followed on the same host (up to 10), judged by the end.
    ['an HTTP probe redirected to a failing page', '/app-health/web/startupz', 503],
    ['an HTTP probe redirected to a good page', '/app-health/redirect/livez', 200],
    ['an HTTP probe redirected to another host (not followed)', '/app-health/redirect/readyz', 200],
    ['an HTTP probe redirected in a loop', '/app-health/redirect/startupz', 503],
    ['an HTTP probe whose path needs escaping', '/app-health/odd/livez', 200],
    ['an HTTP probe with an invalid header (failed, not an error)', '/app-health/odd/readyz', 503],
    ['an HTTP probe with a header given twice', '/app-health/odd/startupz', 200],
    ['an HTTP probe that sends its headers and Host', '/app-health/headers/readyz', 200],
    ['the same path without the headers', '/app-health/headers/livez', 503],
    ['an HTTPS probe on a self-signed app certificate', '/app-health/tls/livez', 200],
    ['an HTTPS probe on a 500', '/app-health/tls/readyz', 503],
    ['an HTTP probe on an HTTPS port', '/app-health/plain-to-tls/livez', 503],
    ['a TCP probe on a listening port', '/app-health/tcp/livez', 200],
    ['a TCP probe with an explicit host', '/app-health/tcp/startupz', 200],
    ['a TCP probe on a closed port', '/app-health/tcp/readyz', 503],
    ['a gRPC probe of the whole server', '/app-health/grpc/livez', 200],
    ['a gRPC probe of a SERVING service', '/app-health/grpc/readyz', 200],
    ['a gRPC probe of a NOT_SERVING service', '/app-health/grpc-bad/livez', 503],
    ['a gRPC probe of an unknown service', '/app-health/grpc-bad/readyz', 503],
    ['a gRPC probe of a closed port', '/app-health/grpc-bad/startupz', 503],
  ])('answers %s with %s', async (_name, path, status) => {
    const res = await get(path);
    expect({ path, status: res.status }).toEqual({ path, status });
  });

  it('probes the Pod IP it is given when the probe names no host', async () => {
    const onPodIp = http.createServer((_req, res) => res.end('pod ip'));
    await new Promise<void>((r) => onPodIp.listen(0, '127.0.0.2', r));
    try {
      const port = (onPodIp.address() as AddressInfo).port;
      const probe = parseAppProbes(
        JSON.stringify({ 'a/livez': { httpGet: { path: '/', port } } }),
      ).get('a/livez');
      expect((await runProbe(probe!, '127.0.0.2')).ok).toBe(true);
      expect((await runProbe(probe!)).ok).toBe(false); // 127.0.0.1: nothing listens there
    } finally {
      onPodIp.close();
    }
  });

  it('asks the gRPC server about the configured service', async () => {
    grpc.asked.length = 0;
    await get('/app-health/grpc/readyz');
    expect(grpc.asked).toEqual(['db']);
  });

  it('identifies itself as a kube-probe, and says what the app answered', async () => {
    const res = await get('/app-health/ua/livez');
    expect(res.status).toBe(200);
    expect(res.body).toContain('HTTP 200');
  });

  it('fails an HTTP probe that takes longer than its timeout, within that timeout', async () => {
    const res = await get('/app-health/slow/livez');
    expect(res.status).toBe(503);
    expect(res.body).toContain('timeout');
    expect(res.ms).toBeLessThan(1200);
  });

  it('waits for a slow app within a longer timeout', async () => {
    const res = await get('/app-health/slow/readyz');
    expect(res.status).toBe(200);
    expect(res.ms).toBeGreaterThanOrEqual(1400);
  });

  it('fails a gRPC probe that takes longer than its timeout', async () => {
    grpc.statuses.set('slow', SERVING_STATUS.SERVING);
    grpc.delayMs = 1500;
    try {
      const res = await get('/app-health/grpc-slow/livez');
      expect(res.status).toBe(503);
      expect(res.ms).toBeLessThan(1200);
    } finally {
      grpc.delayMs = 0;
    }
  });

  it.each([
    ['an unknown container', '/app-health/nobody/livez'],
    ['an unknown probe kind', '/app-health/web/healthz'],
    ['a probe the container does not have', '/app-health/ua/readyz'],
    ['an unknown route', '/nothing'],
  ])('answers 404 for %s', async (_name, path) => {
    const res = await get(path);
    expect(res.status).toBe(404);
    expect(JSON.parse(res.body)).toMatchObject({ code: 'HTTP_ERR_NOT_FOUND' });
  });

  it('answers 405 to a POST', async () => {
    const res = await fetch(`${agentBase}/app-health/web/livez`, { method: 'POST' });
    expect(res.status).toBe(405);
  });
});

// A client sidecar on loopback in front of a plain-text app, for what the network-namespace test
// cannot see from outside: the upstream connections a DestinationRule's
// `connectionPool.http.maxRequestsPerConnection` makes the proxy open, and the route rewrite of
// the path and authority as the app receives them.
import http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import type { HttpRouteRule, MeshService } from '../../src/api/mesh';
import { endpoint, meshState, port, proxyScope, service } from '../fixtures/mesh';
import { destination, get, startSidecar, type LoopbackSidecar } from '../fixtures/sidecars';

const CLUSTER_IP = '10.96.0.50';

let client: LoopbackSidecar;
let app: http.Server;
let appPort: number;
const connections: Socket[] = [];
const seen: { url: string; host: string | undefined }[] = [];

beforeAll(async () => {
  app = http.createServer((req, res) => {
    seen.push({ url: req.url ?? '', host: req.headers.host });
    req.resume();
    res.end('ok');
  });
  app.on('connection', (s: Socket) => connections.push(s));
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  appPort = (app.address() as AddressInfo).port;
  client = await startSidecar('client');
  client.outboundTarget = destination(CLUSTER_IP, 80);
});

afterAll(async () => {
  await client?.close();
  app.closeAllConnections();
  await new Promise((r) => app.close(r));
});

function useMesh(mods: (s: MeshService) => MeshService): void {
  client.sidecar.setMesh(
    meshState(
      proxyScope('client'),
      mods(
        service('web', CLUSTER_IP, [port(80, 'http')], [endpoint('127.0.0.1', { 80: appPort })]),
      ),
    ),
  );
}

/** A VirtualService of one rule: `/old/...` to web itself, with `more` (its rewrite...). */
const rewriteOld =
  (more: Partial<HttpRouteRule>) =>
  (s: MeshService): MeshService => ({
    ...s,
    routes: {
      source: { kind: 'VirtualService', namespace: 'default', name: 'web' },
      rules: [
        {
          matches: [{ uri: { prefix: '/old/' } }],
          destinations: [{ service: 'default/web', weight: 1 }],
          ...more,
        },
      ],
    },
  });

async function sequential(n: number): Promise<void> {
  for (let i = 0; i < n; i++) expect((await get(client.outbound, `/r/${i}`)).status).toBe(200);
}

describe('connection pool limits', () => {
  it('reuses one upstream connection without a limit, and opens a new one every 2 requests with maxRequestsPerConnection: 2', async () => {
    useMesh((s) => s);
    connections.length = 0;
    await sequential(6);
    expect(connections).toHaveLength(1);

    useMesh((s) => ({
      ...s,
      policy: {
        source: { namespace: 'default', name: 'web' },
        trafficPolicy: { connectionPool: { http: { maxRequestsPerConnection: 2 } } },
      },
    }));
    connections.length = 0;
    await sequential(6);
    // The idle connection of the first part may serve 2 more before it goes.
    expect(connections.length).toBeGreaterThanOrEqual(2);
    expect(connections.length).toBeLessThanOrEqual(3);
  });
});

describe('rewrites as the app receives them', () => {
  it('replaces the matched prefix and the authority, keeping the query', async () => {
    useMesh(
      rewriteOld({
        rewrite: { prefix: '/new/', authority: 'web.internal' },
        requestHeaders: { set: [{ name: 'x-set', value: '1' }] },
      }),
    );
    seen.length = 0;
    expect((await get(client.outbound, '/old/a?q=1')).status).toBe(200);
    expect(seen).toEqual([{ url: '/new/a?q=1', host: 'web.internal' }]);
    expect((await get(client.outbound, '/other')).status).toBe(404);
  });
});

describe('a connection opened before a configuration change', () => {
  let second: http.Server;
  let secondPort: number;
  beforeAll(async () => {
    second = http.createServer((req, res) => {
      req.resume();
      res.end('second');
    });
    await new Promise<void>((resolve) => second.listen(0, '127.0.0.1', resolve));
    secondPort = (second.address() as AddressInfo).port;
  });
  afterAll(async () => {
    second.closeAllConnections();
    await new Promise((r) => second.close(r));
  });

  const roundRobin = (s: MeshService): MeshService => ({
    ...s,
    policy: {
      source: { namespace: 'default', name: 'web' },
      trafficPolicy: { loadBalancer: 'ROUND_ROBIN' },
    },
  });

  /** A connection to the outbound listener, accepted by the sidecar, no request yet. */
  async function openConnection(): Promise<Socket> {
    const socket = net.connect(client.outbound, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    await new Promise((r) => setTimeout(r, 50));
    return socket;
  }

  /** One HTTP/1.1 request written on `socket`; the response's status and body. */
  function requestOn(socket: Socket, path: string, close: boolean): Promise<string> {
    return new Promise((resolve, reject) => {
      let text = '';
      const onData = (c: Buffer): void => {
        text += c.toString('latin1');
        const end = text.indexOf('\r\n\r\n');
        const length = /content-length: (\d+)/i.exec(text);
        if (end >= 0 && length !== null && text.length >= end + 4 + Number(length[1])) {
          socket.off('data', onData);
          resolve(`${text.slice(9, 12)} ${text.slice(end + 4)}`);
        }
      };
      socket.on('data', onData);
      socket.once('error', reject);
      socket.write(
        `GET ${path} HTTP/1.1\r\nHost: server\r\n${close ? 'Connection: close\r\n' : ''}\r\n`,
      );
    });
  }

  it('its first request, planned under the new configuration, leaves the new endpoints to every later request', async () => {
    useMesh(roundRobin);
    const early = await openConnection();
    // The update adds an endpoint while the connection waits for its request.
    client.sidecar.setMesh(
      meshState(
        proxyScope('client'),
        roundRobin(
          service(
            'web',
            CLUSTER_IP,
            [port(80, 'http')],
            [endpoint('127.0.0.1', { 80: appPort }), endpoint('127.0.0.1', { 80: secondPort })],
          ),
        ),
      ),
    );
    expect(await requestOn(early, '/early', true)).toMatch(/^200 /);
    early.destroy();
    const bodies: string[] = [];
    for (let i = 0; i < 10; i++) bodies.push((await get(client.outbound, `/later/${i}`)).text);
    expect(bodies.filter((b) => b === 'second')).toHaveLength(5);
    expect(bodies.filter((b) => b === 'ok')).toHaveLength(5);
  });

  it('a kept-alive connection follows the routes of the new configuration on its next request', async () => {
    useMesh((s) => s);
    const kept = await openConnection();
    seen.length = 0;
    expect(await requestOn(kept, '/old/a', false)).toBe('200 ok');
    useMesh(rewriteOld({ rewrite: { prefix: '/new/' } }));
    expect(await requestOn(kept, '/old/b', false)).toBe('200 ok');
    expect(await requestOn(kept, '/other', true)).toMatch(/^404 /);
    kept.destroy();
    expect(seen.map((s) => s.url)).toEqual(['/old/a', '/new/b']);
  });
});

describe('what the proxy tells of its upstream attempts', () => {
  it('counts attempts and failures per endpoint in its config dump, lists its balanced sets, and logs each failed attempt at debug', async () => {
    const lines: { obj: Record<string, unknown>; msg: string }[] = [];
    const record = (obj: object, msg: string): void => {
      lines.push({ obj: obj as Record<string, unknown>, msg });
    };
    const debugLog = {
      debug: record,
      info: record,
      warn: record,
      error: record,
      isLevelEnabled: (level: string) => level === 'debug',
    };
    const debugClient = await startSidecar('client', undefined, 'default', debugLog);
    // A port nothing listens on: connection refused.
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const closedPort = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    try {
      debugClient.outboundTarget = destination(CLUSTER_IP, 80);
      debugClient.sidecar.setMesh(
        meshState(proxyScope('client'), {
          ...service(
            'web',
            CLUSTER_IP,
            [port(80, 'http')],
            [endpoint('127.0.0.1', { 80: closedPort }), endpoint('127.0.0.1', { 80: appPort })],
          ),
          policy: {
            source: { namespace: 'default', name: 'web' },
            trafficPolicy: { loadBalancer: 'ROUND_ROBIN' },
          },
        }),
      );
      // Round robin: the 1st and 3rd requests try the closed port first, then (Istio's default
      // retry on connect-failure) the app.
      for (let i = 0; i < 4; i++) {
        expect((await get(debugClient.outbound, `/a/${i}`)).status).toBe(200);
      }
      const dump = debugClient.sidecar.configDump() as {
        endpoints: { port: number; attempts: number; failures: number; active: number }[];
        endpointSets: Record<string, string[]>;
      };
      const byPort = (p: number) => dump.endpoints.find((e) => e.port === p);
      expect(byPort(closedPort)).toMatchObject({ attempts: 2, failures: 2, active: 0 });
      expect(byPort(appPort)).toMatchObject({ attempts: 4, failures: 0, active: 0 });
      expect(dump.endpointSets).toEqual({
        'default/web|80|': [`127.0.0.1:${closedPort}`, `127.0.0.1:${appPort}`],
      });
      const failed = lines.filter((l) => l.msg === 'upstream attempt failed');
      expect(failed).toHaveLength(2);
      expect(failed[0]?.obj).toMatchObject({
        service: 'default/web',
        endpoint: `127.0.0.1:${closedPort}`,
        reason: 'connect-failure',
      });
      expect(String(failed[0]?.obj.detail)).toContain('ECONNREFUSED');
    } finally {
      await debugClient.close();
    }
  });
});

// A client sidecar on loopback in front of a plain-text app, for what the network-namespace test
// cannot see from outside: the upstream connections a DestinationRule's
// `connectionPool.http.maxRequestsPerConnection` makes the proxy open, and the route rewrite of
// the path and authority as the app receives them.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { MeshService } from '../../src/api/mesh';
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
    useMesh((s) => ({
      ...s,
      routes: {
        source: { kind: 'VirtualService', namespace: 'default', name: 'web' },
        rules: [
          {
            matches: [{ uri: { prefix: '/old/' } }],
            destinations: [{ service: 'default/web', weight: 1 }],
            rewrite: { prefix: '/new/', authority: 'web.internal' },
            requestHeaders: { set: [{ name: 'x-set', value: '1' }] },
          },
        ],
      },
    }));
    seen.length = 0;
    expect((await get(client.outbound, '/old/a?q=1')).status).toBe(200);
    expect(seen).toEqual([{ url: '/new/a?q=1', host: 'web.internal' }]);
    expect((await get(client.outbound, '/other')).status).toBe(404);
  });
});

// A real sidecar on loopback with ServiceEntry hosts in its mesh: a connection to an address the
// mesh does not know reaches an entry by the entry's address or CIDR, or, for an entry without
// address, by what it says (a ClientHello's server name, an HTTP request's Host, the port alone);
// under REGISTRY_ONLY those are let through and every other connection is closed. The
// destinations are real servers on 127.0.0.1; only the original destination is given by the test.

import net from 'node:net';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { MeshService, ServiceEntryFacts, ServicePort } from '../../src/api/mesh';
import { makeCa, makeServing } from '../fixtures/agent-pki';
import { endpoint, meshState, port, proxyScope } from '../fixtures/mesh';
import {
  destination,
  get,
  startEchoApp,
  startSidecar,
  withSettings,
  type EchoApp,
  type LoopbackSidecar,
} from '../fixtures/sidecars';

jest.setTimeout(30_000);

const apiCa = makeCa('External API CA');
let client: LoopbackSidecar;
let web: EchoApp;
let api: tls.Server;
let apiPort: number;
let db: net.Server;
let dbPort: number;

/** A service of a ServiceEntry host in namespace `egress`. */
function entry(
  host: string,
  ports: ServicePort[],
  facts: Partial<ServiceEntryFacts> & Pick<ServiceEntryFacts, 'resolution'>,
  more: Partial<MeshService> = {},
): MeshService {
  return {
    key: host,
    name: host,
    namespace: 'egress',
    hostname: host,
    addresses: [],
    ports,
    endpoints: [],
    entry: {
      source: { namespace: 'egress', name: 'external' },
      location: 'MESH_EXTERNAL',
      ...facts,
    },
    ...more,
  };
}

const tlsPort = (n: number): ServicePort => ({
  port: n,
  name: `https-${n}`,
  protocol: 'tcp',
  tls: true,
});

/** A TLS handshake through the sidecar with `servername`; the server's name checked on our CA. */
function handshake(servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1',
      port: client.outbound,
      servername,
      ca: apiCa.pem,
    });
    socket.once('secureConnect', () => {
      const cn = socket.getPeerCertificate().subjectaltname ?? '';
      socket.end();
      resolve(cn);
    });
    socket.once('error', reject);
    socket.once('close', () => reject(new Error('closed before the handshake')));
  });
}

/** Bytes through the sidecar to a TCP server that answers first. */
function tcpGreeting(): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port: client.outbound });
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString()));
    socket.once('end', () => resolve(got));
    socket.once('error', reject);
  });
}

const metricLine = (pattern: RegExp): boolean => pattern.test(client.metrics.render());

beforeAll(async () => {
  client = await startSidecar('client');
  web = await startEchoApp();
  const serving = makeServing(apiCa, { dns: ['api.example.com', '*.example.com'], ips: [] });
  api = tls.createServer(serving, (s) => s.end('tls ok'));
  await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
  apiPort = (api.address() as AddressInfo).port;
  // A server-first protocol: it greets, then closes.
  db = net.createServer((s) => s.end('db hello'));
  await new Promise<void>((resolve) => db.listen(0, '127.0.0.1', resolve));
  dbPort = (db.address() as AddressInfo).port;
});

afterAll(async () => {
  await client.close();
  await web.close();
  await new Promise((r) => api.close(r));
  await new Promise((r) => db.close(r));
});

const registryOnly = (...services: MeshService[]) =>
  client.sidecar.setMesh(
    withSettings(meshState(proxyScope('client'), ...services), {
      outboundTrafficPolicy: 'REGISTRY_ONLY',
    }),
  );

describe('ServiceEntry hosts without address, under REGISTRY_ONLY', () => {
  it('takes a TLS connection by its server name (exact, then wildcard) and closes one to another name', async () => {
    registryOnly(
      entry('api.example.com', [tlsPort(apiPort)], { resolution: 'NONE' }),
      entry('*.example.com', [tlsPort(apiPort)], { resolution: 'NONE' }, { key: '*.example.com' }),
    );
    client.outboundTarget = destination('127.0.0.1', apiPort);
    await expect(handshake('api.example.com')).resolves.toContain('DNS:api.example.com');
    await expect(handshake('v2.example.com')).resolves.toContain('DNS:api.example.com');
    expect(
      metricLine(
        /istio_tcp_connections_opened_total\{[^}]*destination_service="api\.example\.com"[^}]*\} 1\n/,
      ),
    ).toBe(true);
    expect(
      metricLine(/istio_tcp_connections_opened_total\{[^}]*destination_service="\*\.example\.com"/),
    ).toBe(true);
    const blackHoled = client.sidecar.counters.blackHole;
    await expect(handshake('api.example.org')).rejects.toThrow();
    expect(client.sidecar.counters.blackHole).toBe(blackHoled + 1);
  });

  it("takes an HTTP request by its Host, routed as the host's (metrics, no mesh TLS), and closes another Host", async () => {
    registryOnly(
      entry('web.example.com', [port(web.port, 'http', 'http')], { resolution: 'NONE' }),
    );
    client.outboundTarget = destination('127.0.0.1', web.port);
    const ok = await get(client.outbound, '/external', { host: 'web.example.com' });
    expect(ok.status).toBe(200);
    expect(ok.text).toBe('hello from /external');
    expect(web.seen.at(-1)?.host).toBe('web.example.com');
    expect(
      metricLine(
        /istio_requests_total\{reporter="source"[^}]*destination_service="web\.example\.com",destination_service_name="web\.example\.com",destination_service_namespace="egress"[^}]*response_code="200"[^}]*\} 1\n/,
      ),
    ).toBe(true);
    const blackHoled = client.sidecar.counters.blackHole;
    await expect(get(client.outbound, '/other', { host: 'other.example.com' })).rejects.toThrow(
      /socket hang up|ECONNRESET/,
    );
    expect(client.sidecar.counters.blackHole).toBe(blackHoled + 1);
  });

  it("applies the host's VirtualService rules, sending to where the app dialled (resolution NONE)", async () => {
    const host = 'web.example.com';
    registryOnly(
      entry(
        host,
        [port(web.port, 'http', 'http')],
        { resolution: 'NONE' },
        {
          routes: {
            source: { kind: 'VirtualService', namespace: 'egress', name: 'web' },
            rules: [
              {
                matches: [{ uri: { prefix: '/teapot' } }],
                destinations: [],
                reply: { kind: 'direct', status: 418, body: 'short and stout' },
              },
              {
                matches: [],
                destinations: [{ service: host, weight: 1 }],
                requestHeaders: { set: [{ name: 'x-egress', value: 'via-entry' }] },
              },
            ],
          },
        },
      ),
    );
    client.outboundTarget = destination('127.0.0.1', web.port);
    const routed = await get(client.outbound, '/routed', { host });
    expect(routed.text).toBe('hello from /routed');
    expect(web.seen.at(-1)?.['x-egress']).toBe('via-entry');
    const teapot = await get(client.outbound, '/teapot', { host });
    expect([teapot.status, teapot.text]).toEqual([418, 'short and stout']);
  });

  it('takes every connection to a TCP port, a server-first protocol included', async () => {
    registryOnly(entry('db.example.com', [port(dbPort, 'tcp', 'tcp')], { resolution: 'NONE' }));
    client.outboundTarget = destination('127.0.0.1', dbPort);
    await expect(tcpGreeting()).resolves.toBe('db hello');
    expect(
      metricLine(/istio_tcp_connections_opened_total\{[^}]*destination_service="db\.example\.com"/),
    ).toBe(true);
  });
});

describe('ServiceEntry hosts with addresses and endpoints', () => {
  it('STATIC: a connection to the entry address goes to its endpoint, at the port the endpoint names', async () => {
    registryOnly(
      entry(
        'static.example.com',
        [port(80, 'http', 'http')],
        { resolution: 'STATIC' },
        { addresses: ['192.0.2.10'], endpoints: [endpoint('127.0.0.1', { 80: web.port })] },
      ),
    );
    client.outboundTarget = destination('192.0.2.10', 80);
    const res = await get(client.outbound, '/static', { host: 'static.example.com' });
    expect(res.status).toBe(200);
    expect(res.text).toBe('hello from /static');
    // The endpoint's own address is no destination of the mesh (Istio has no listener there).
    const blackHoled = client.sidecar.counters.blackHole;
    client.outboundTarget = destination('127.0.0.1', web.port);
    await expect(get(client.outbound, '/direct', { host: 'static.example.com' })).rejects.toThrow();
    expect(client.sidecar.counters.blackHole).toBe(blackHoled + 1);
  });

  it('DNS: the endpoint is a name, resolved when the proxy connects', async () => {
    registryOnly(
      entry(
        'named.example.com',
        [port(80, 'http', 'http')],
        { resolution: 'DNS' },
        { addresses: ['192.0.2.11'], endpoints: [endpoint('localhost', { 80: web.port })] },
      ),
    );
    client.outboundTarget = destination('192.0.2.11', 80);
    const res = await get(client.outbound, '/named', { host: 'named.example.com' });
    expect(res.status).toBe(200);
    expect(res.text).toBe('hello from /named');
  });

  it('NONE with a CIDR: a connection to an address in it goes where the app dialled, counted as the host', async () => {
    registryOnly(
      entry('loopback.example.com', [port(dbPort, 'tcp', 'tcp')], {
        resolution: 'NONE',
        subnets: ['127.0.0.0/8'],
      }),
    );
    client.outboundTarget = destination('127.0.0.1', dbPort);
    await expect(tcpGreeting()).resolves.toBe('db hello');
    expect(
      metricLine(
        /istio_tcp_connections_opened_total\{[^}]*destination_service="loopback\.example\.com"/,
      ),
    ).toBe(true);
    // Another port of the same address is no port of the entry: closed.
    const blackHoled = client.sidecar.counters.blackHole;
    client.outboundTarget = destination('127.0.0.1', web.port);
    await expect(get(client.outbound, '/x', { host: 'loopback.example.com' })).rejects.toThrow();
    expect(client.sidecar.counters.blackHole).toBe(blackHoled + 1);
  });

  it('ALLOW_ANY: a Host no entry names passes through to where the app dialled', async () => {
    client.sidecar.setMesh(
      meshState(
        proxyScope('client'),
        entry('web.example.com', [port(web.port, 'http', 'http')], { resolution: 'NONE' }),
      ),
    );
    client.outboundTarget = destination('127.0.0.1', web.port);
    const passthrough = client.sidecar.counters.passthrough;
    const res = await get(client.outbound, '/through', { host: 'elsewhere.example.org' });
    expect(res.text).toBe('hello from /through');
    expect(client.sidecar.counters.passthrough).toBe(passthrough + 1);
  });
});

describe("a Sidecar's outbound traffic policy in the proxy's scope", () => {
  it('wins over the mesh setting, either way', async () => {
    client.outboundTarget = destination('127.0.0.1', web.port);
    client.sidecar.setMesh(
      meshState(proxyScope('client', (p) => ({ ...p, outboundTrafficPolicy: 'REGISTRY_ONLY' }))),
    );
    const blackHoled = client.sidecar.counters.blackHole;
    await expect(get(client.outbound, '/locked', { host: 'x.example' })).rejects.toThrow();
    expect(client.sidecar.counters.blackHole).toBe(blackHoled + 1);
    client.sidecar.setMesh(
      withSettings(
        meshState(proxyScope('client', (p) => ({ ...p, outboundTrafficPolicy: 'ALLOW_ANY' }))),
        { outboundTrafficPolicy: 'REGISTRY_ONLY' },
      ),
    );
    expect((await get(client.outbound, '/open', { host: 'x.example' })).text).toBe(
      'hello from /open',
    );
  });
});

// Two real sidecars on loopback with mutual TLS between them, a real app behind the second.
// Only the original destination is given by the test (the netns tests read it from real
// iptables redirects): sidecar A's outbound connections "were sent to" a ClusterIP of the mesh,
// sidecar B's inbound ones to the app's port.

import { generateKeyPairSync } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import type { AuthorizationPolicyRules, MeshState } from '../../src/api/mesh';
import type { WorkloadCredentials } from '../../src/agent/proxy/l4/tls';
import { ALPN } from '../../src/agent/proxy/core/identity';
import { ConnectionPool, MAX_DIALS_PER_KEY } from '../../src/agent/proxy/l7/pool';
import { IstioMetrics } from '../../src/agent/proxy/metrics';
import { Sidecar, type OriginalDestination } from '../../src/agent/proxy/sidecar';
import { makeCa, makeLeaf, withUri, type Issuer } from '../fixtures/agent-pki';
import {
  endpoint,
  inboundMode,
  meshedAs,
  meshState,
  port,
  proxyScope,
  service,
  spiffe,
} from '../fixtures/mesh';

jest.setTimeout(30_000);

const root = makeCa('Mooring Test Root');
const otherRoot = makeCa('Somebody Else');

function credentials(
  sa: string,
  issuer: Issuer = root,
  roots: Issuer[] = [root],
): WorkloadCredentials {
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return {
    chainPem: makeLeaf(issuer, publicKey, withUri(spiffe(sa))),
    keyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    roots: roots.map((r) => r.pem),
    spiffeId: spiffe(sa),
  };
}

const silent = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

interface Echo {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

let app: http.Server;
let appPort: number;
let otherApp: http.Server;
let otherAppPort: number;
let tcpApp: net.Server;
let tcpAppPort: number;

let a: Sidecar;
let b: Sidecar;
let aMetrics: IstioMetrics;
let bMetrics: IstioMetrics;
let aPorts: { outbound: AddressInfo; inbound: AddressInfo };
let bPorts: { outbound: AddressInfo; inbound: AddressInfo };
/** Where A's next outbound connection "was sent". */
let aTarget: OriginalDestination;
/** Where B's next inbound connection "was sent". */
let bTarget: OriginalDestination;

const CLUSTER_IP = '10.96.0.10';
const TCP_IP = '10.96.0.11';
const GRPC_IP = '10.96.0.12';
const dst = (address: string, p: number): OriginalDestination => ({ address, port: p, family: 4 });

function serverService(
  expected = 'server',
  extraEndpoints: ReturnType<typeof endpoint>[] = [],
  address = '127.0.0.1',
) {
  return service(
    'server',
    CLUSTER_IP,
    [port(80, 'http')],
    [endpoint(address, { 80: bPorts.inbound.port }, meshedAs(expected)), ...extraEndpoints],
  );
}

/** The server's service with one endpoint, at a port of 127.0.0.1 other than B's. */
function serverOnlyAt(p: number) {
  return service(
    'server',
    CLUSTER_IP,
    [port(80, 'http')],
    [endpoint('127.0.0.1', { 80: p }, meshedAs('server'))],
  );
}

function tcpService() {
  return service(
    'tcp-echo',
    TCP_IP,
    [port(5000, 'tcp')],
    [endpoint('127.0.0.1', { 5000: bPorts.inbound.port }, meshedAs('server'))],
  );
}

function grpcService(protocol: 'grpc' | 'http' = 'grpc') {
  return service(
    'grpc-echo',
    GRPC_IP,
    [port(7070, protocol)],
    [endpoint('127.0.0.1', { 7070: bPorts.inbound.port }, meshedAs('server'))],
  );
}

function meshForA(...services: ReturnType<typeof service>[]): MeshState {
  return meshState(
    proxyScope('client'),
    ...(services.length > 0 ? services : [serverService(), tcpService(), grpcService()]),
  );
}

const listen = async (server: net.Server): Promise<number> => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
};

beforeAll(async () => {
  app = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify({
        method: req.method,
        url: req.url,
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      });
      res.writeHead(req.url === '/fail' ? 503 : 200, { 'content-type': 'application/json' });
      res.end(body);
    });
  });
  app.on('upgrade', (req, socket: net.Socket, head: Buffer) => {
    socket.write(
      'HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n',
    );
    if (head.length > 0) socket.write(head);
    socket.on('data', (d: Buffer) => socket.write(Buffer.from(d.toString().toUpperCase())));
    socket.on('end', () => socket.end());
  });
  appPort = await listen(app);
  otherApp = http.createServer((req, res) => res.end(`other ${req.url}`));
  otherAppPort = await listen(otherApp);
  // Reads until the client half-closes, then answers with what it read, upper-cased.
  tcpApp = net.createServer({ allowHalfOpen: true }, (socket) => {
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => socket.end(`got ${Buffer.concat(chunks).toString().toUpperCase()}`));
  });
  tcpAppPort = await listen(tcpApp);

  aMetrics = new IstioMetrics();
  bMetrics = new IstioMetrics();
  const options = {
    outboundPort: 0,
    inboundPort: 0,
    listenHost: '127.0.0.1',
    connectTimeoutMs: 2_000,
    handshakeTimeoutMs: 2_000,
    ownPorts: [15000, 15020, 15021, 15090],
  };
  a = new Sidecar(
    {
      log: silent,
      originalDestination: () => aTarget,
      random: Math.random,
      nowMs: Date.now,
      metrics: aMetrics,
    },
    options,
  );
  // B on every loopback address: a test reaches it at 127.0.0.x to need a new handshake.
  b = new Sidecar(
    {
      log: silent,
      originalDestination: () => bTarget,
      random: Math.random,
      nowMs: Date.now,
      metrics: bMetrics,
    },
    { ...options, listenHost: '0.0.0.0' },
  );
  aPorts = await a.start();
  bPorts = await b.start();
  a.setCredentials(credentials('client'), new Date());
  b.setCredentials(credentials('server'), new Date());
  a.setMesh(meshForA());
  b.setMesh(meshState(proxyScope('server')));
});

afterAll(async () => {
  await Promise.all([a.close(), b.close()]);
  for (const s of [app, otherApp]) s.closeAllConnections();
  for (const s of [app, otherApp, tcpApp]) s.close();
});

beforeEach(() => {
  aTarget = dst(CLUSTER_IP, 80);
  bTarget = dst('127.0.0.1', appPort);
});

function request(
  path: string,
  options: {
    method?: string;
    headers?: Record<string, string>;
    body?: string | Buffer;
    agent?: http.Agent;
  } = {},
): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: aPorts.outbound.port,
        path,
        method: options.method ?? 'GET',
        headers: { host: 'server', ...options.headers },
        agent: options.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            text: Buffer.concat(chunks).toString(),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

const echoOf = (text: string): Echo => JSON.parse(text) as Echo;

describe('trace headers on each hop', () => {
  afterEach(() => a.setMesh(meshForA()));

  it('sends the next sidecar the W3C trace headers and not B3, which it makes for its app itself', async () => {
    // What a sidecar receives: a TLS server with the server's identity, as B would present it.
    const own = credentials('server');
    const heads: string[] = [];
    const sockets: tls.TLSSocket[] = [];
    const peer = tls.createServer(
      {
        cert: own.chainPem,
        key: own.keyPem,
        ca: [...own.roots],
        requestCert: true,
        rejectUnauthorized: true,
        ALPNProtocols: [ALPN.http1],
      },
      (s) => {
        sockets.push(s);
        let text = '';
        s.on('data', (d: Buffer) => {
          text += d.toString('latin1');
          const end = text.indexOf('\r\n\r\n');
          if (end === -1) return;
          heads.push(text.slice(0, end + 4));
          text = text.slice(end + 4);
          s.write('HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
        });
      },
    );
    const peerPort = await listen(peer);
    try {
      a.setMesh(meshForA(serverOnlyAt(peerPort)));
      expect((await request('/hop')).status).toBe(200);
      const head = heads[0] as string;
      expect(head).toMatch(/\r\ntraceparent: 00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]\r\n/);
      expect(head).toMatch(/\r\nx-request-id: [0-9a-f-]{36}\r\n/);
      expect(head).toMatch(/\r\nx-mooring-peer: /);
      expect(head.toLowerCase()).not.toContain('x-b3-');
      // Through B, the app still gets both forms, of B's span.
      a.setMesh(meshForA());
      const echo = echoOf((await request('/app')).text);
      const tp = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/.exec(String(echo.headers.traceparent));
      expect(echo.headers['x-b3-traceid']).toBe(tp?.[1]);
      expect(echo.headers['x-b3-spanid']).toBe(tp?.[2]);
    } finally {
      // A's pooled connections to it go too (the next tests count A's connections).
      for (const s of sockets) s.destroy();
      peer.close();
    }
  });

  it('sends B3 with traceparent to an endpoint outside the mesh, and no peer metadata', async () => {
    a.setMesh(
      meshForA(
        service('server', CLUSTER_IP, [port(80, 'http')], [endpoint('127.0.0.1', { 80: appPort })]),
      ),
    );
    const echo = echoOf((await request('/plain')).text);
    const tp = /^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$/.exec(String(echo.headers.traceparent));
    expect(tp).not.toBeNull();
    expect(echo.headers['x-b3-traceid']).toBe(tp?.[1]);
    expect(echo.headers['x-b3-spanid']).toBe(tp?.[2]);
    expect(echo.headers['x-b3-sampled']).toMatch(/^[01]$/);
    expect(echo.headers['x-mooring-peer']).toBeUndefined();
    // A's pooled connection to the app goes (the next tests count A's connections).
    app.closeIdleConnections();
  });
});

describe('HTTP/1.1 between two sidecars', () => {
  it('carries a request to the app with the caller identity in x-forwarded-client-cert', async () => {
    const res = await request('/hello?x=1');
    expect(res.status).toBe(200);
    const echo = echoOf(res.text);
    expect(echo.url).toBe('/hello?x=1');
    expect(echo.headers['x-forwarded-client-cert']).toBe(
      `By=${spiffe('server')};URI=${spiffe('client')}`,
    );
    expect(echo.headers['x-mooring-peer']).toBeUndefined();
    expect(echo.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(echo.headers['x-envoy-attempt-count']).toBe('1');
  });

  it('removes a forged x-forwarded-client-cert and keeps a given x-request-id', async () => {
    const res = await request('/', {
      headers: {
        'x-forwarded-client-cert':
          'By=spiffe://evil/x;URI=spiffe://cluster.local/ns/kube-system/sa/admin',
        'x-request-id': 'abc',
      },
    });
    const echo = echoOf(res.text);
    expect(echo.headers['x-forwarded-client-cert']).toBe(
      `By=${spiffe('server')};URI=${spiffe('client')}`,
    );
    expect(echo.headers['x-request-id']).toBe('abc');
  });

  it('passes request bodies intact, with a length and chunked, small and large', async () => {
    const big = 'x'.repeat(300_000);
    const sized = await request('/post', {
      method: 'POST',
      body: big,
      headers: { 'content-length': String(big.length) },
    });
    expect(echoOf(sized.text).body).toBe(big);
    const chunked = await request('/post', {
      method: 'POST',
      body: 'abc',
      headers: { 'transfer-encoding': 'chunked' },
    });
    expect(echoOf(chunked.text).body).toBe('abc');
  });

  it('serves many requests over kept-alive connections on both sides', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => request(`/n/${i}`, { agent })),
    );
    agent.destroy();
    expect(results.map((r) => r.status)).toEqual(Array(40).fill(200));
    expect(results.map((r) => echoOf(r.text).url)).toEqual(
      Array.from({ length: 40 }, (_, i) => `/n/${i}`),
    );
    // The sidecars reuse their connections between them: far fewer than 40.
    const dump = a.configDump() as { connections: { outboundPool: { open: number } } };
    expect(dump.connections.outboundPool.open).toBeLessThanOrEqual(4);
  });

  it('upgrades a connection (WebSocket-style) and carries its bytes both ways', async () => {
    const socket = net.connect(aPorts.outbound.port, '127.0.0.1');
    socket.write(
      'GET /ws HTTP/1.1\r\nHost: server\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n',
    );
    let received = '';
    await new Promise<void>((resolve, reject) => {
      socket.on('data', (d: Buffer) => {
        received += d.toString();
        if (received.includes('\r\n\r\n') && !received.includes('PING')) socket.write('ping');
        if (received.includes('PING')) resolve();
      });
      socket.on('error', reject);
    });
    socket.destroy();
    expect(received).toMatch(/^HTTP\/1.1 101 /);
    expect(received.toLowerCase()).toContain('upgrade: echo');
    expect(received).toContain('PING');
  });

  it('closes a connection to an http port whose client ends it before saying anything', async () => {
    const s = net.connect(aPorts.outbound.port, '127.0.0.1', () => s.end());
    s.resume();
    await new Promise<void>((resolve, reject) => {
      s.setTimeout(5000, () => reject(new Error('still open after 5 s')));
      s.on('close', () => resolve());
    });
  });

  it('carries HTTP/1.1 to a port declared http2, as the client speaks it (curl to an h2 port)', async () => {
    const H2_PORT_IP = '10.96.0.13';
    a.setMesh(
      meshForA(
        serverService(),
        service(
          'either',
          H2_PORT_IP,
          [port(8080, 'http2')],
          [endpoint('127.0.0.1', { 8080: bPorts.inbound.port }, meshedAs('server'))],
        ),
      ),
    );
    aTarget = dst(H2_PORT_IP, 8080);
    try {
      const { status, text } = await request('/on-h2-port');
      expect(status).toBe(200);
      expect(echoOf(text).url).toBe('/on-h2-port');
    } finally {
      a.setMesh(meshForA());
    }
  });

  it('makes no h2c upgrade: the app gets the request as HTTP/1.1, without its upgrade headers', async () => {
    const { status, text } = await request('/h2c', {
      headers: { connection: 'Upgrade, HTTP2-Settings', upgrade: 'h2c', 'http2-settings': 'AAM' },
    });
    // The app upgrades any request that asks (101): it answered a plain request.
    expect(status).toBe(200);
    const seen = echoOf(text).headers;
    expect([seen.upgrade, seen['http2-settings'], seen.connection]).toEqual([
      undefined,
      undefined,
      undefined,
    ]);
  });
});

describe('a burst of requests', () => {
  afterEach(() => {
    jest.restoreAllMocks();
    a.setMesh(meshForA());
  });

  it('opens at most MAX_DIALS_PER_KEY connections to an endpoint at once; the other requests wait for one', async () => {
    // B behind a relay that holds each new connection 300 ms before passing it on: every
    // connection A opens takes that long, so the whole burst arrives while the first are opening.
    const relay = net.createServer((c) => {
      c.pause();
      c.on('error', () => {});
      setTimeout(() => {
        const up = net.connect(bPorts.inbound.port, '127.0.0.1', () => {
          c.pipe(up).pipe(c);
          c.resume();
        });
        up.on('error', () => c.destroy());
        c.on('close', () => up.destroy());
      }, 300);
    });
    const relayPort = await listen(relay);
    a.setMesh(meshForA(serverOnlyAt(relayPort)));
    // Connections being opened, per pool (B's to the app count apart), and the most at once.
    const dialing = new Map<ConnectionPool, number>();
    let peak = 0;
    const started = ConnectionPool.prototype.dialStarted;
    const ended = ConnectionPool.prototype.dialEnded;
    jest.spyOn(ConnectionPool.prototype, 'dialStarted').mockImplementation(function (
      this: ConnectionPool,
      key,
    ) {
      const n = (dialing.get(this) ?? 0) + 1;
      dialing.set(this, n);
      peak = Math.max(peak, n);
      started.call(this, key);
    });
    jest.spyOn(ConnectionPool.prototype, 'dialEnded').mockImplementation(function (
      this: ConnectionPool,
      key,
    ) {
      dialing.set(this, (dialing.get(this) ?? 0) - 1);
      ended.call(this, key);
    });
    type Pool = {
      opened: number;
      reused: number;
      waited: number;
      dialing: number;
      waiting: number;
    };
    const pool = (): Pool =>
      (a.configDump() as { connections: { outboundPool: Pool } }).connections.outboundPool;
    const before = pool();
    // Each request on a client connection of its own, connected first, then all sent in one
    // tick: the proxy reads the 100 heads before any connection it opens can be up.
    const n = 100;
    const sockets = await Promise.all(
      Array.from(
        { length: n },
        () =>
          new Promise<net.Socket>((resolve, reject) => {
            const s = net.connect(aPorts.outbound.port, '127.0.0.1', () => resolve(s));
            s.on('error', reject);
          }),
      ),
    );
    const answers = sockets.map(
      (s) =>
        new Promise<string>((resolve) => {
          let text = '';
          s.on('data', (d: Buffer) => (text += d.toString()));
          s.on('close', () => resolve(text));
        }),
    );
    sockets.forEach((s, i) =>
      s.write(`GET /burst/${i} HTTP/1.1\r\nHost: server\r\nConnection: close\r\n\r\n`),
    );
    const texts = await Promise.all(answers);
    expect(texts.map((t) => t.split(' ')[1])).toEqual(Array(n).fill('200'));
    // The app's answer (chunked) names the path it got.
    expect(texts.map((t, i) => t.includes(`"url":"/burst/${i}"`))).toEqual(Array(n).fill(true));
    const after = pool();
    expect(peak).toBe(MAX_DIALS_PER_KEY);
    expect(after.waited - before.waited).toBeGreaterThan(0);
    // Every request got one connection: a new one, or one that came free (idle or handed over).
    expect(after.opened - before.opened + (after.reused - before.reused)).toBe(n);
    expect(after.opened - before.opened).toBeLessThan(n);
    expect(after).toMatchObject({ dialing: 0, waiting: 0 });
    relay.close();
  });
});

describe('identity between sidecars', () => {
  afterEach(() => {
    a.setMesh(meshForA());
    b.setCredentials(credentials('server'), new Date());
  });

  it('refuses an endpoint that presents another identity than the mesh expects', async () => {
    a.setMesh(meshForA(serverService('not-server')));
    const res = await request('/secret');
    expect(res.status).toBe(503);
    expect(res.text).toMatch(/^upstream connect error .*TLS error.*not-server/);
  });

  // Connections already open keep working through a credential change (nothing is dropped):
  // these cases reach B at another loopback address, so that each needs a new handshake.
  it('refuses an endpoint whose chain does not lead to the trust bundle', async () => {
    a.setMesh(meshForA(serverService('server', [], '127.0.0.2')));
    expect((await request('/reachable')).status).toBe(200);
    b.setCredentials(credentials('server', otherRoot, [root]), new Date());
    a.setMesh(meshForA(serverService('server', [], '127.0.0.5')));
    const res = await request('/secret');
    expect(res.status).toBe(503);
    expect(res.text).toMatch(/TLS error.*certificate/);
  });

  it('an inbound sidecar refuses a client whose chain it does not trust', async () => {
    a.setCredentials(credentials('client', otherRoot, [root]), new Date());
    a.setMesh(meshForA(serverService('server', [], '127.0.0.3')));
    const refused = b.counters.refusedHandshake;
    try {
      const res = await request('/secret');
      expect(res.status).toBe(503);
      expect(b.counters.refusedHandshake).toBe(refused + 1);
    } finally {
      a.setCredentials(credentials('client'), new Date());
    }
  });
});

describe('TLS session resumption between sidecars', () => {
  /** The server at its own loopback address, one request per upstream connection. */
  const oneRequestPerConnection = (address: string, expected = 'server') => ({
    ...serverService(expected, [], address),
    policy: {
      source: { namespace: 'default', name: 'server' },
      trafficPolicy: { connectionPool: { http: { maxRequestsPerConnection: 1 } } },
    },
  });
  /** `n` requests one after another; what B counted meanwhile. */
  async function handshakes(n: number): Promise<{ full: number; resumed: number }> {
    const before = { ...b.counters };
    for (let i = 0; i < n; i++) {
      const res = await request(`/resume/${i}`);
      expect(res.status).toBe(200);
      expect(echoOf(res.text).headers['x-forwarded-client-cert']).toBe(
        `By=${spiffe('server')};URI=${spiffe('client')}`,
      );
    }
    const resumed = b.counters.inboundMtlsResumed - before.inboundMtlsResumed;
    return { full: b.counters.inboundMtls - before.inboundMtls - resumed, resumed };
  }

  afterEach(() => a.setMesh(meshForA()));

  it('resumes the handshake of each new connection to a sidecar it has met, the caller still known', async () => {
    a.setMesh(meshForA(oneRequestPerConnection('127.0.0.6')));
    expect(await handshakes(5)).toEqual({ full: 1, resumed: 4 });
  });

  it('starts over with a full handshake after a new certificate or trust bundle on either side', async () => {
    a.setMesh(meshForA(oneRequestPerConnection('127.0.0.7')));
    expect(await handshakes(2)).toEqual({ full: 1, resumed: 1 });
    a.setCredentials(credentials('client'), new Date());
    expect(await handshakes(2)).toEqual({ full: 1, resumed: 1 });
    // B's new context has new ticket keys: A's ticket is refused, the handshake is full.
    b.setCredentials(credentials('server'), new Date());
    expect(await handshakes(2)).toEqual({ full: 1, resumed: 1 });
  });

  it('never resumes into an identity the mesh no longer expects there', async () => {
    a.setMesh(meshForA(oneRequestPerConnection('127.0.0.8')));
    expect(await handshakes(2)).toEqual({ full: 1, resumed: 1 });
    a.setMesh(meshForA(oneRequestPerConnection('127.0.0.8', 'not-server')));
    const before = { ...b.counters };
    const res = await request('/secret');
    expect(res.status).toBe(503);
    expect(res.text).toMatch(/TLS error.*not-server/);
    expect(b.counters.inboundMtlsResumed).toBe(before.inboundMtlsResumed);
  });
});

describe('inbound modes', () => {
  const plain = (headers: Record<string, string> = {}): Promise<{ status: number; text: string }> =>
    new Promise((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: bPorts.inbound.port, path: '/plain', headers, agent: false },
        (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        },
      );
      req.on('error', reject);
      req.end();
    });

  afterEach(() => b.setMesh(meshState(proxyScope('server'))));

  it('PERMISSIVE takes plain text, with no client identity and a forged one removed', async () => {
    const res = await plain({
      'x-forwarded-client-cert': 'By=x;URI=spiffe://cluster.local/ns/a/sa/b',
    });
    expect(res.status).toBe(200);
    expect(echoOf(res.text).headers['x-forwarded-client-cert']).toBeUndefined();
  });

  it('STRICT refuses plain text and still takes mutual TLS', async () => {
    b.setMesh(meshState(proxyScope('server', inboundMode('STRICT'))));
    await expect(plain()).rejects.toThrow(/socket hang up|ECONNRESET/);
    const res = await request('/strict');
    expect(res.status).toBe(200);
  });

  it('closes the kept-alive plain-text connections of a port when it turns STRICT', async () => {
    const socket = net.connect(bPorts.inbound.port, '127.0.0.1');
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString()));
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.write('GET /kept HTTP/1.1\r\nHost: server\r\n\r\n');
    await new Promise<void>((resolve, reject) => {
      const t0 = Date.now();
      const poll = (): void => {
        if (got.includes('"/kept"')) resolve();
        else if (Date.now() - t0 > 5000) reject(new Error(`no answer: ${got}`));
        else setTimeout(poll, 10);
      };
      poll();
    });
    expect(got).toMatch(/^HTTP\/1\.1 200/);
    // Kept alive, idle: the change of mode ends it.
    b.setMesh(meshState(proxyScope('server', inboundMode('STRICT'))));
    await closed;
    expect(socket.destroyed).toBe(true);
  });

  it('ends a plain-text HTTP/2 connection by GOAWAY when its port turns STRICT, its open request still answered', async () => {
    // An app that speaks HTTP/2 in plain text, as a client that sends it must find.
    const h2App = http2.createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => res.end(`${req.url} ${body}`));
    });
    bTarget = dst('127.0.0.1', await listen(h2App));
    const session = http2.connect(`http://127.0.0.1:${bPorts.inbound.port}`);
    const goaway = new Promise<number>((resolve) =>
      session.once('goaway', (code: number) => resolve(code)),
    );
    const closed = new Promise<void>((resolve) => session.once('close', () => resolve()));
    try {
      const first = session.request({ ':method': 'GET', ':path': '/h2-first' });
      const [status] = await Promise.all([
        new Promise<number>((resolve) => first.once('response', (h) => resolve(h[':status'] ?? 0))),
        new Promise<void>((resolve) => first.on('end', resolve).resume()),
      ]);
      expect(status).toBe(200);
      // A request whose body has not ended: the app answers once it has it all.
      const open = session.request({ ':method': 'POST', ':path': '/h2-open' });
      let answer = '';
      open.on('data', (d: Buffer) => (answer += d.toString()));
      const answered = new Promise<number>((resolve, reject) => {
        open.once('response', (h) => open.once('end', () => resolve(h[':status'] ?? 0)));
        open.once('error', reject);
      });
      open.write('part one, ');
      await new Promise((resolve) => setTimeout(resolve, 50));
      b.setMesh(meshState(proxyScope('server', inboundMode('STRICT'))));
      expect(await goaway).toBe(http2.constants.NGHTTP2_NO_ERROR);
      open.end('part two');
      expect(await answered).toBe(200);
      expect(answer).toBe('/h2-open part one, part two');
      await closed;
    } finally {
      session.destroy();
      h2App.close();
    }
  });

  it('closes a plain-text opaque TCP connection at once when its port turns STRICT', async () => {
    bTarget = dst('127.0.0.1', tcpAppPort);
    const appConnections = (): Promise<number> =>
      new Promise((resolve, reject) =>
        tcpApp.getConnections((err, n) => (err ? reject(err) : resolve(n))),
      );
    const taken = b.counters.inboundPlaintext;
    const socket = net.connect({
      host: '127.0.0.1',
      port: bPorts.inbound.port,
      allowHalfOpen: true,
    });
    let reply = '';
    socket.on('data', (d: Buffer) => (reply += d.toString()));
    // Half-open allowed: the proxy's end arrives as 'end' (or a reset as 'close').
    const ended = new Promise<void>((resolve) => {
      socket.once('end', () => resolve());
      socket.once('close', () => resolve());
    });
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    // Not HTTP: once the sniffer has it, the connection is opaque TCP to the app.
    socket.write('\x00\x01 not http, held open ');
    const t0 = Date.now();
    while (b.counters.inboundPlaintext === taken) {
      if (Date.now() - t0 > 5000) throw new Error('the inbound side never took the connection');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(socket.destroyed).toBe(false);
    b.setMesh(meshState(proxyScope('server', inboundMode('STRICT'))));
    try {
      await ended;
    } finally {
      socket.destroy();
    }
    // The app never saw the end of its input: it never answered; its connection is closed too.
    expect(reply).toBe('');
    const t1 = Date.now();
    while ((await appConnections()) > 0) {
      if (Date.now() - t1 > 5000) throw new Error('the connection to the app was left open');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });

  it('refuses the first bytes of a connection accepted before its port turned STRICT', async () => {
    const refused = b.counters.refusedPlaintext;
    const socket = net.connect(bPorts.inbound.port, '127.0.0.1');
    const ended = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    socket.on('error', () => {});
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    // Accepted under PERMISSIVE, waiting for its first bytes; then the port turns STRICT.
    await new Promise((resolve) => setTimeout(resolve, 50));
    b.setMesh(meshState(proxyScope('server', inboundMode('STRICT'))));
    socket.write('GET /late HTTP/1.1\r\nHost: server\r\n\r\n');
    await ended;
    expect(b.counters.refusedPlaintext).toBe(refused + 1);
  });

  it('a port-level PERMISSIVE opens one port of a STRICT workload', async () => {
    b.setMesh(meshState(proxyScope('server', inboundMode('STRICT', { [appPort]: 'PERMISSIVE' }))));
    const res = await plain();
    expect(res.status).toBe(200);
  });
});

/** B's scope with these AuthorizationPolicies. */
const serverWithPolicies = (...authorization: AuthorizationPolicyRules[]): MeshState =>
  meshState(proxyScope('server', (p) => ({ ...p, inbound: { ...p.inbound, authorization } })));

describe('AuthorizationPolicy on the inbound side', () => {
  afterEach(() => b.setMesh(meshState(proxyScope('server'))));

  const plainTo = (p: number, path: string): Promise<{ status: number; text: string }> =>
    new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: p, path, agent: false }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on('error', reject);
      req.end();
    });

  it('an ALLOW of a principal lets that sidecar through and answers anyone else 403, plain text too', async () => {
    const allowClient = { from: [{ principals: ['cluster.local/ns/default/sa/client'] }] };
    b.setMesh(
      serverWithPolicies({ name: 'default/client-only', action: 'ALLOW', rules: [allowClient] }),
    );
    const ok = await request('/allowed');
    expect(ok.status).toBe(200);
    expect(echoOf(ok.text).url).toBe('/allowed');
    const plain = await plainTo(bPorts.inbound.port, '/plain');
    expect(plain).toEqual({ status: 403, text: 'RBAC: access denied' });

    b.setMesh(
      serverWithPolicies({
        name: 'default/other-only',
        action: 'ALLOW',
        rules: [{ from: [{ principals: ['cluster.local/ns/default/sa/other'] }] }],
      }),
    );
    const refused = await request('/refused');
    expect(refused).toMatchObject({ status: 403, text: 'RBAC: access denied' });
    expect(bMetrics.render()).toMatch(
      /istio_requests_total\{reporter="destination",source_workload="client".*response_code="403"/,
    );
  });

  it('a DENY of a path refuses it however it is spelled, on a kept-alive connection, and lets the rest through', async () => {
    b.setMesh(
      serverWithPolicies({
        name: 'default/no-admin',
        action: 'DENY',
        rules: [{ to: [{ paths: ['/admin*'] }] }],
      }),
    );
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (const path of ['/admin', '/public/../admin/users', '/%61dmin']) {
        expect(await request(path, { agent })).toMatchObject({ status: 403 });
      }
      const ok = await request('/public/x?admin', { agent });
      expect(ok.status).toBe(200);
      expect(echoOf(ok.text).url).toBe('/public/x?admin');
    } finally {
      agent.destroy();
    }
  });

  it('refuses an opaque TCP connection no ALLOW rule matches; an HTTP-only field makes an ALLOW rule match nothing', async () => {
    aTarget = dst(TCP_IP, 5000);
    bTarget = dst('127.0.0.1', tcpAppPort);
    const exchange = (): Promise<string> =>
      new Promise((resolve) => {
        const socket = net.connect({
          host: '127.0.0.1',
          port: aPorts.outbound.port,
          allowHalfOpen: true,
        });
        let reply = '';
        socket.on('data', (d: Buffer) => (reply += d.toString()));
        socket.on('error', () => {});
        socket.on('close', () => resolve(reply));
        socket.end('ping');
      });
    const onPort = (methods?: string[]): AuthorizationPolicyRules => ({
      name: 'default/tcp',
      action: 'ALLOW',
      rules: [{ to: [{ ports: [tcpAppPort], ...(methods ? { methods } : {}) }] }],
    });
    b.setMesh(serverWithPolicies(onPort()));
    expect(await exchange()).toBe('got PING');
    const before = b.counters.refusedAuthorization;
    const count = (metric: string): number =>
      Number(
        new RegExp(
          `istio_tcp_connections_${metric}_total\\{reporter="destination",source_workload="client"[^}]*\\} (\\d+)`,
        ).exec(bMetrics.render())?.[1] ?? 0,
      );
    // The allowed connection's close counted first: nothing open in the series.
    for (let i = 0; i < 100 && count('closed') !== count('opened'); i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const closedBefore = count('closed');
    b.setMesh(serverWithPolicies(onPort(['GET'])));
    expect(await exchange()).toBe('');
    expect(b.counters.refusedAuthorization).toBe(before + 1);
    // Counted in Istio's TCP metrics, as a connection opened and closed.
    expect(count('closed')).toBe(closedBefore + 1);
    expect(count('opened')).toBe(closedBefore + 1);
  });
});

describe("a DestinationRule's tls mode", () => {
  const withTls = (tls: object, portLevel?: object) => {
    const server = serverService();
    return meshState(proxyScope('client'), {
      ...server,
      policy: {
        source: { namespace: 'default', name: 'server' },
        trafficPolicy: {
          tls,
          ...(portLevel === undefined ? {} : { portLevelSettings: [{ port: 80, tls: portLevel }] }),
        },
      },
    } as typeof server);
  };
  afterEach(() => {
    a.setMesh(meshForA());
    b.setMesh(meshState(proxyScope('server')));
  });

  it('DISABLE sends plain text to a meshed endpoint: PERMISSIVE takes it without a caller identity, STRICT refuses it', async () => {
    a.setMesh(withTls({ mode: 'DISABLE' }));
    const plain = await request('/disabled');
    expect(plain.status).toBe(200);
    expect(echoOf(plain.text).headers['x-forwarded-client-cert']).toBeUndefined();
    // The plain-text connection the client's sidecar keeps is closed by the server's.
    b.setMesh(meshState(proxyScope('server', inboundMode('STRICT'))));
    expect((await request('/disabled')).status).toBe(503);
  });

  it('a port-level ISTIO_MUTUAL brings mutual TLS back on that port', async () => {
    a.setMesh(withTls({ mode: 'DISABLE' }, { mode: 'ISTIO_MUTUAL' }));
    const res = await request('/mutual');
    expect(echoOf(res.text).headers['x-forwarded-client-cert']).toBe(
      `By=${spiffe('server')};URI=${spiffe('client')}`,
    );
  });
});

describe('outbound destinations', () => {
  it('passes a destination outside the mesh through untouched', async () => {
    aTarget = dst('127.0.0.1', otherAppPort);
    const res = await request('/outside');
    expect(res.status).toBe(200);
    expect(res.text).toBe('other /outside');
  });

  it('REGISTRY_ONLY closes a connection to a destination outside the mesh, counted as BlackHoleCluster; mesh Services still work', async () => {
    const mesh = meshForA();
    a.setMesh({ ...mesh, settings: { ...mesh.settings, outboundTrafficPolicy: 'REGISTRY_ONLY' } });
    try {
      aTarget = dst('127.0.0.1', otherAppPort);
      const before = a.counters.blackHole;
      await expect(request('/outside')).rejects.toThrow(/socket hang up|ECONNRESET/);
      expect(a.counters.blackHole).toBe(before + 1);
      expect(aMetrics.render()).toMatch(
        /istio_tcp_connections_closed_total\{reporter="source",source_workload="client".*destination_service="BlackHoleCluster".*\} [1-9]/,
      );
      aTarget = dst(CLUSTER_IP, 80);
      expect((await request('/inside')).status).toBe(200);
    } finally {
      a.setMesh(meshForA());
    }
    aTarget = dst('127.0.0.1', otherAppPort);
    expect((await request('/outside')).text).toBe('other /outside');
  });

  it('retries a connect failure on another endpoint (Istio default), and says UH/UF when none works', async () => {
    // A port nothing listens on: take one and close it.
    const closed = net.createServer();
    const deadPort = await listen(closed);
    closed.close();
    a.setMesh(
      meshForA(
        serverService('server', [endpoint('127.0.0.1', { 80: deadPort }, meshedAs('server'))]),
      ),
    );
    const results = await Promise.all(Array.from({ length: 10 }, () => request('/retry')));
    expect(results.map((r) => r.status)).toEqual(Array(10).fill(200));
    a.setMesh(meshForA(serverOnlyAt(deadPort)));
    const failed = await request('/retry');
    expect(failed.status).toBe(503);
    expect(failed.text).toContain('connection failure');
    a.setMesh(meshForA(service('server', CLUSTER_IP, [port(80, 'http')], [])));
    const none = await request('/none');
    expect(none.status).toBe(503);
    expect(none.text).toBe('no healthy upstream');
    a.setMesh(meshForA());
  });
});

describe('opaque TCP between two sidecars', () => {
  it('keeps half-close: the client ends its side and still gets the whole reply', async () => {
    aTarget = dst(TCP_IP, 5000);
    bTarget = dst('127.0.0.1', tcpAppPort);
    const socket = net.connect({
      host: '127.0.0.1',
      port: aPorts.outbound.port,
      allowHalfOpen: true,
    });
    let reply = '';
    const done = new Promise<void>((resolve) => {
      socket.on('data', (d: Buffer) => (reply += d.toString()));
      socket.on('end', () => resolve());
    });
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    socket.write('hello ');
    socket.end('world');
    await done;
    socket.destroy();
    expect(reply).toBe('got HELLO WORLD');
  });
});

// A gRPC service with raw bytes as messages (no .proto needed).
const raw = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const method = (name: string, responseStream = false) => ({
  path: `/test.Echo/${name}`,
  requestStream: false,
  responseStream,
  requestSerialize: raw.serialize,
  requestDeserialize: raw.deserialize,
  responseSerialize: raw.serialize,
  responseDeserialize: raw.deserialize,
});
const ECHO_SERVICE = { echo: method('Echo'), fail: method('Fail'), count: method('Count', true) };

describe('gRPC between two sidecars', () => {
  let server: grpc.Server;
  let client: grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  let grpcPort: number;

  beforeAll(async () => {
    server = new grpc.Server();
    server.addService(ECHO_SERVICE, {
      echo: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => {
        const xfcc = call.metadata.get('x-forwarded-client-cert')[0] ?? '';
        cb(null, Buffer.from(`${call.request.toString()}|${String(xfcc)}`));
      },
      fail: (_call: unknown, cb: grpc.sendUnaryData<Buffer>) =>
        cb({ code: grpc.status.NOT_FOUND, details: 'no such thing' }),
      count: (call: grpc.ServerWritableStream<Buffer, Buffer>) => {
        const n = Number(call.request.toString());
        for (let i = 1; i <= n; i++) call.write(Buffer.from(String(i)));
        call.end();
      },
    });
    grpcPort = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (err, p) =>
        err ? reject(err) : resolve(p),
      ),
    );
    const Client = grpc.makeGenericClientConstructor(ECHO_SERVICE, 'Echo');
    client = new Client(
      `127.0.0.1:${aPorts.outbound.port}`,
      grpc.credentials.createInsecure(),
    ) as typeof client;
  });

  afterAll(() => {
    client.close();
    server.forceShutdown();
  });

  beforeEach(() => {
    aTarget = dst(GRPC_IP, 7070);
    bTarget = dst('127.0.0.1', grpcPort);
  });

  const unary = (name: string, body: string): Promise<Buffer> =>
    new Promise((resolve, reject) =>
      (client[name] as (b: Buffer, cb: (err: grpc.ServiceError | null, r: Buffer) => void) => void)(
        Buffer.from(body),
        (err, r) => (err ? reject(err) : resolve(r)),
      ),
    );

  it('carries a unary call, the server seeing the caller identity', async () => {
    const reply = await unary('echo', 'ping');
    expect(reply.toString()).toBe(`ping|By=${spiffe('server')};URI=${spiffe('client')}`);
  });

  it('passes an error status in the trailers, with its message', async () => {
    await expect(unary('fail', 'x')).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
      details: 'no such thing',
    });
    expect(aMetrics.render()).toMatch(
      /istio_requests_total\{reporter="source".*destination_service="grpc-echo.default.svc.cluster.local".*request_protocol="grpc",response_code="200",grpc_response_status="5",response_flags="-"\} [1-9]/,
    );
    expect(bMetrics.render()).toMatch(
      /istio_requests_total\{reporter="destination",source_workload="client".*request_protocol="grpc",response_code="200",grpc_response_status="5"/,
    );
  });

  it('answers a call an AuthorizationPolicy refuses with PERMISSION_DENIED, and carries the others', async () => {
    b.setMesh(
      serverWithPolicies({
        name: 'default/no-fail',
        action: 'DENY',
        rules: [{ to: [{ paths: ['/test.Echo/Fail'], methods: ['POST'] }] }],
      }),
    );
    try {
      await expect(unary('fail', 'x')).rejects.toMatchObject({
        code: grpc.status.PERMISSION_DENIED,
      });
      expect((await unary('echo', 'still')).toString()).toMatch(/^still\|/);
    } finally {
      b.setMesh(meshState(proxyScope('server')));
    }
  });

  it('carries gRPC to a port declared http: the client speaks HTTP/2 from its first byte', async () => {
    a.setMesh(meshForA(serverService(), tcpService(), grpcService('http')));
    // A new channel: a connection is dispatched by the port's protocol when it opens.
    const Client = grpc.makeGenericClientConstructor(ECHO_SERVICE, 'Echo');
    const other = new Client(
      `127.0.0.1:${aPorts.outbound.port}`,
      grpc.credentials.createInsecure(),
    ) as typeof client;
    try {
      const reply = await new Promise<Buffer>((resolve, reject) =>
        (other.echo as (b: Buffer, cb: (e: grpc.ServiceError | null, r: Buffer) => void) => void)(
          Buffer.from('on http'),
          (err, r) => (err ? reject(err) : resolve(r)),
        ),
      );
      expect(reply.toString()).toBe(`on http|By=${spiffe('server')};URI=${spiffe('client')}`);
    } finally {
      other.close();
      a.setMesh(meshForA());
    }
  });

  it('streams server messages', async () => {
    const call = (client.count as (b: Buffer) => grpc.ClientReadableStream<Buffer>)(
      Buffer.from('5'),
    );
    const got: string[] = [];
    await new Promise<void>((resolve, reject) => {
      call.on('data', (d: Buffer) => got.push(d.toString()));
      call.on('end', () => resolve());
      call.on('error', reject);
    });
    expect(got).toEqual(['1', '2', '3', '4', '5']);
  });
});

describe('metrics', () => {
  it('both sidecars report the requests with Istio labels', async () => {
    const before = aMetrics.render();
    const count = (text: string, re: RegExp): number => Number(re.exec(text)?.[1] ?? 0);
    const sourceRe = new RegExp(
      `istio_requests_total\\{reporter="source",source_workload="client",source_workload_namespace="default",` +
        `source_principal="${spiffe('client')}",source_app="client",source_version="v1",destination_workload="server",` +
        `destination_workload_namespace="default",destination_principal="${spiffe('server')}",destination_app="server",` +
        `destination_version="v1",destination_service="server.default.svc.cluster.local",destination_service_name="server",` +
        `destination_service_namespace="default",connection_security_policy="mutual_tls",request_protocol="http",` +
        `response_code="200",grpc_response_status="",response_flags="-"\\} (\\d+)`,
    );
    const start = count(before, sourceRe);
    for (let i = 0; i < 5; i++) await request('/m');
    const after = aMetrics.render();
    expect(count(after, sourceRe) - start).toBe(5);
    const dest = bMetrics.render();
    expect(dest).toMatch(
      new RegExp(
        `istio_requests_total\\{reporter="destination",source_workload="client",source_workload_namespace="default",source_principal="${spiffe('client')}",` +
          `source_app="client",source_version="v1",destination_workload="server",destination_workload_namespace="default",destination_principal="${spiffe('server')}"`,
      ),
    );
    expect(after).toMatch(
      /istio_request_duration_milliseconds_bucket\{reporter="source".*le="\+Inf"\} \d+/,
    );
    expect(after).toMatch(
      /istio_tcp_connections_opened_total\{reporter="source".*destination_service="tcp-echo.default.svc.cluster.local".*request_protocol="tcp"\} [1-9]/,
    );
  });
});

describe('a request whose head cannot be read', () => {
  /** Sends `bytes` on a new connection to `port`; what came back once the proxy closed it. */
  const raw = (port: number, bytes: string): Promise<string> =>
    new Promise((resolve, reject) => {
      let got = '';
      const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
      s.setTimeout(5000, () => s.destroy(new Error('no answer within 5 s')));
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      s.on('end', () => {
        s.destroy();
        resolve(got);
      });
      s.on('error', reject);
    });
  const count = (text: string, re: RegExp): number =>
    text
      .split('\n')
      .filter((l) => re.test(l))
      .reduce((n, l) => n + Number(l.split(' ').pop()), 0);

  it('is answered 400 and counted with flag DPE, as Envoy does, on both sides', async () => {
    const source =
      /^istio_requests_total\{reporter="source".*destination_service="server\.default\.svc\.cluster\.local".*response_code="400",grpc_response_status="",response_flags="DPE"\}/;
    const destination =
      /^istio_requests_total\{reporter="destination".*response_code="400",grpc_response_status="",response_flags="DPE"\}/;
    const before = [count(aMetrics.render(), source), count(bMetrics.render(), destination)];
    // Lines that end in bare LFs (never a CRLFCRLF): answered at once, not left waiting.
    const out = await raw(aPorts.outbound.port, 'GET /x HTTP/1.1\nHost: server\n\n');
    expect(out).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    // A space before a colon, in plain text to the inbound side (PERMISSIVE).
    const inb = await raw(bPorts.inbound.port, 'GET /x HTTP/1.1\r\nHost : server\r\n\r\n');
    expect(inb).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
    expect([count(aMetrics.render(), source), count(bMetrics.render(), destination)]).toEqual([
      (before[0] as number) + 1,
      (before[1] as number) + 1,
    ]);
  });
});

describe('drain', () => {
  it('stops taking inbound connections, finishes the request in flight with Connection: close, and counts it down', async () => {
    const slow = http.createServer((req, res) => setTimeout(() => res.end(`slow ${req.url}`), 300));
    const slowPort = await listen(slow);
    const draining = new Sidecar(
      {
        log: silent,
        originalDestination: () => dst('127.0.0.1', slowPort),
        random: Math.random,
        nowMs: Date.now,
        metrics: new IstioMetrics(),
      },
      {
        outboundPort: 0,
        inboundPort: 0,
        listenHost: '127.0.0.1',
        connectTimeoutMs: 2_000,
        handshakeTimeoutMs: 2_000,
        ownPorts: [],
      },
    );
    const ports = await draining.start();
    draining.setCredentials(credentials('server'), new Date());
    draining.setMesh(meshState(proxyScope('server')));
    try {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const get = (path: string) =>
        new Promise<{ status: number; connection: string | undefined; text: string }>(
          (resolve, reject) => {
            const req = http.get(
              { host: '127.0.0.1', port: ports.inbound.port, path, agent },
              (res) => {
                let text = '';
                res.on('data', (d: Buffer) => (text += d.toString()));
                res.on('end', () =>
                  resolve({
                    status: res.statusCode ?? 0,
                    connection: res.headers.connection,
                    text,
                  }),
                );
              },
            );
            req.on('error', reject);
          },
        );
      // A kept-alive connection exists, then a request is in flight on it when the drain starts.
      expect((await get('/first')).connection).not.toBe('close');
      const inFlight = get('/second');
      await new Promise((r) => setTimeout(r, 100));
      expect(draining.inFlight()).toBe(1);
      draining.drainInbound();
      const answered = await inFlight;
      expect(answered).toEqual({ status: 200, connection: 'close', text: 'slow /second' });
      expect(draining.inFlight()).toBe(0);
      await expect(get('/third')).rejects.toThrow(/ECONNREFUSED|socket hang up|ECONNRESET/);
      agent.destroy();
    } finally {
      await draining.close();
      slow.close();
    }
  });
});

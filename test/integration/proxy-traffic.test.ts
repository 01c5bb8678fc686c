// A client sidecar on loopback in front of a plain-text app, for what the network-namespace test
// cannot see from outside: the upstream connections a DestinationRule's
// `connectionPool.http.maxRequestsPerConnection` makes the proxy open, its circuit breakers
// (`tcp.maxConnections`, `http.http1MaxPendingRequests`) over HTTP/1.1, HTTP/2 and opaque TCP,
// and the route rewrite of the path and authority as the app receives them.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http2 from 'node:http2';
import net, { type AddressInfo, type Socket } from 'node:net';
import tls from 'node:tls';
import type {
  ConnectionPoolPolicy,
  CorsPolicy,
  HttpRouteRule,
  RequestMatch,
  MeshService,
  ServicePort,
  TlsPolicy,
} from '../../src/api/mesh';
import { endpoint, meshedAs, meshState, port, proxyScope, service } from '../fixtures/mesh';
import { validateMeshObject } from '../../src/mesh';
import { ProxyTelemetry } from '../../src/agent/proxy/telemetry/telemetry';
import { makeCa, makeServing } from '../fixtures/agent-pki';
import {
  destination,
  get,
  startSidecar,
  withSettings,
  type LoopbackSidecar,
} from '../fixtures/sidecars';

const CLUSTER_IP = '10.96.0.50';

let client: LoopbackSidecar;
let app: http.Server;
let appPort: number;
const connections: Socket[] = [];
const seen: { url: string; host: string | undefined; attempt?: string | string[] }[] = [];
/** The client's access log lines (on when a test's mesh turns it on). */
const accessLog: string[] = [];

beforeAll(async () => {
  app = http.createServer((req, res) => {
    seen.push({
      url: req.url ?? '',
      host: req.headers.host,
      attempt: req.headers['x-envoy-attempt-count'],
    });
    req.resume();
    // /slow/<ms>: answered after that long (requests that hold their connection).
    const slow = /^\/slow\/(\d+)/.exec(req.url ?? '');
    if (slow === null) res.end('ok');
    else setTimeout(() => res.end('ok'), Number(slow[1]));
  });
  app.on('connection', (s: Socket) => connections.push(s));
  await new Promise<void>((resolve) => app.listen(0, '127.0.0.1', resolve));
  appPort = (app.address() as AddressInfo).port;
  client = await startSidecar(
    'client',
    new ProxyTelemetry({ accessLog: { write: (l: string) => accessLog.push(l), dropped: 0 } }),
  );
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
/** The service's VirtualService (named after it) with these rules. */
const vsRules =
  (...rules: HttpRouteRule[]) =>
  (s: MeshService): MeshService => ({
    ...s,
    routes: { source: { kind: 'VirtualService', namespace: 'default', name: s.name }, rules },
  });

/** A rule of `matches` (every request when none) to web itself, with `more`. */
const toWeb = (more: Partial<HttpRouteRule> = {}, ...matches: RequestMatch[]): HttpRouteRule => ({
  matches,
  destinations: [{ service: 'default/web', weight: 1 }],
  ...more,
});

/** A VirtualService of one rule: `/old/...` to web itself, with `more` (its rewrite...). */
const rewriteOld = (more: Partial<HttpRouteRule>): ((s: MeshService) => MeshService) =>
  vsRules(toWeb(more, { uri: { prefix: '/old/' } }));

const withPool =
  (connectionPool: ConnectionPoolPolicy) =>
  (s: MeshService): MeshService => ({
    ...s,
    policy: { source: { namespace: 'default', name: s.name }, trafficPolicy: { connectionPool } },
  });

/** A DestinationRule of round robin for the service (the order of attempts is known). */
const roundRobin = (s: MeshService): MeshService => ({
  ...s,
  policy: {
    source: { namespace: 'default', name: s.name },
    trafficPolicy: { loadBalancer: 'ROUND_ROBIN' },
  },
});

/** The count of the client's istio_requests_total series with these response flags. */
function requestsFlagged(flags: string): number {
  let total = 0;
  for (const line of clientMetricsText().split('\n')) {
    if (line.startsWith('istio_requests_total{') && line.includes(`response_flags="${flags}"`))
      total += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return total;
}
const clientMetricsText = (): string => client.metrics.render();

/** One HTTP/2 request on `session`: the answer's headers, once its body has ended. */
function h2Ask(
  session: http2.ClientHttp2Session,
  path: string,
  authority = 'h2',
  extra: http2.OutgoingHttpHeaders = {},
): Promise<http2.IncomingHttpHeaders> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':path': path, ':authority': authority, ...extra });
    req.on('response', (h) => {
      req.resume();
      req.on('end', () => resolve(h));
    });
    req.on('error', reject);
    req.end();
  });
}

/** `web` (the HTTP/1.1 app) at CLUSTER_IP and `h2` (an HTTP/2 app) at `h2Ip`, each through `mod`. */
function webAndH2(
  h2Ip: string,
  h2app: http2.Http2Server,
  mod: (s: MeshService) => MeshService = (s) => s,
): MeshService[] {
  return [
    mod(service('web', CLUSTER_IP, [port(80, 'http')], [endpoint('127.0.0.1', { 80: appPort })])),
    mod(
      service(
        'h2',
        h2Ip,
        [port(80, 'http2')],
        [endpoint('127.0.0.1', { 80: (h2app.address() as AddressInfo).port })],
      ),
    ),
  ];
}

/** A GET's answer as bytes. */
function getBytes(
  port: number,
  path: string,
): Promise<{ body: Buffer; headers: http.IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ body: Buffer.concat(chunks), headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The kernel's timers of the proxy's connections to a local port (ss: timer:(keepalive,...)). */
function keepaliveTimers(to: number): string[] {
  return execFileSync('ss', ['-tnoH', 'state', 'established', 'dst', `127.0.0.1:${to}`], {
    encoding: 'utf8',
  })
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => /timer:\((\w+),([^,]+),/.exec(l)?.slice(1, 3).join(' ') ?? 'none');
}
/** A keepalive timer of a 600 s idle time, just set. */
const TEN_MINUTES = expect.stringMatching(/^keepalive (9min5\dsec|10min)$/);

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

  it('applies a DestinationRule with a workloadSelector to the selected proxy only, over the shared rule', async () => {
    /** The mesh with a shared rule (no limit) and one selecting `app: <selected>` (1 request). */
    const withRules = (selected: string): void =>
      client.sidecar.setMesh(
        meshState(
          proxyScope('client', (p) => ({ ...p, labels: { app: 'client' } })),
          {
            ...service(
              'web',
              CLUSTER_IP,
              [port(80, 'http')],
              [endpoint('127.0.0.1', { 80: appPort })],
            ),
            policy: {
              source: { namespace: 'default', name: 'web' },
              trafficPolicy: { connectionPool: { http: { maxRequestsPerConnection: 100 } } },
              workloads: [
                {
                  source: { namespace: 'default', name: 'web-for-client' },
                  selector: { app: selected },
                  trafficPolicy: { connectionPool: { http: { maxRequestsPerConnection: 1 } } },
                },
              ],
            },
          },
        ),
      );
    withRules('other');
    await sequential(1);
    connections.length = 0;
    await sequential(4);
    expect(connections).toHaveLength(0);
    withRules('client');
    connections.length = 0;
    await sequential(4);
    expect(connections.length).toBeGreaterThanOrEqual(3);
    const dump = client.sidecar.configDump() as {
      mesh: { services: { key: string; policy?: { source: { name: string } } }[] };
    };
    expect(dump.mesh.services.find((x) => x.key === 'default/web')?.policy?.source.name).toBe(
      'web-for-client',
    );
  });

  it('takes no new request on an upstream connection older than maxConnectionDuration', async () => {
    /** Connections the app saw opened by 3 requests made 350 ms after 3 others. */
    const openedAfterAPause = async (): Promise<number> => {
      await sequential(3);
      connections.length = 0;
      await new Promise((r) => setTimeout(r, 350));
      await sequential(3);
      return connections.length;
    };
    useMesh((s) => s);
    expect(await openedAfterAPause()).toBe(0);
    useMesh(withPool({ tcp: { maxConnectionDurationMs: 300 } }));
    expect(await openedAfterAPause()).toBe(1);
  });

  it('closes an upstream connection idle for http.idleTimeout, and keeps it past that without', async () => {
    /** Whether the connection of one request to the app is still open 600 ms after it. */
    const openAfterAPause = async (mod: (s: MeshService) => MeshService): Promise<boolean> => {
      useMesh(mod);
      // (A connection left from an earlier test is not this one: it is closed first.)
      for (const c of connections) c.destroy();
      await new Promise((r) => setTimeout(r, 50));
      connections.length = 0;
      await sequential(1);
      const conn = connections[0] as Socket;
      await new Promise((r) => setTimeout(r, 600));
      return !conn.destroyed;
    };
    expect(await openAfterAPause((s) => s)).toBe(true);
    expect(await openAfterAPause(withPool({ http: { idleTimeoutMs: 300 } }))).toBe(false);
  });

  it('turns TCP keepalive on for the upstream connections of a rule with tcpKeepalive, with its idle time', async () => {
    const fresh = async (mod: (s: MeshService) => MeshService): Promise<string[]> => {
      useMesh(mod);
      for (const c of connections) c.destroy();
      await new Promise((r) => setTimeout(r, 50));
      await sequential(1);
      return keepaliveTimers(appPort);
    };
    expect(await fresh((s) => s)).toEqual(['none']);
    const kept = await fresh(withPool({ tcp: { keepalive: { timeS: 600 } } }));
    expect(kept).toEqual([TEN_MINUTES]);
  });

  it('turns it on for opaque TCP and HTTP/2 upstream connections too', async () => {
    const [TCP_IP, H2_IP] = ['10.96.0.69', '10.96.0.70'];
    const held: Socket[] = [];
    const tcpApp = net.createServer((s) => {
      held.push(s);
      s.on('error', () => {});
      s.write('hi');
    });
    const h2app = http2.createServer((_req, res) => res.end('ok'));
    const h2Sessions: http2.ServerHttp2Session[] = [];
    h2app.on('session', (x: http2.ServerHttp2Session) => h2Sessions.push(x));
    await Promise.all(
      [tcpApp, h2app].map((x) => new Promise<void>((r) => x.listen(0, '127.0.0.1', r))),
    );
    const portOf = (x: net.Server): number => (x.address() as AddressInfo).port;
    const ka = withPool({ tcp: { keepalive: { timeS: 600 } } });
    client.sidecar.setMesh(
      meshState(
        proxyScope('client'),
        ka(
          service(
            'tcp-ka',
            TCP_IP,
            [port(5000, 'tcp')],
            [endpoint('127.0.0.1', { 5000: portOf(tcpApp) })],
          ),
        ),
        ka(
          service(
            'h2-ka',
            H2_IP,
            [port(80, 'http2')],
            [endpoint('127.0.0.1', { 80: portOf(h2app) })],
          ),
        ),
      ),
    );
    // (The sidecar reads the test's original destination as it accepts each connection.)
    client.outboundTarget = destination(TCP_IP, 5000);
    const socket = net.connect(client.outbound, '127.0.0.1');
    await new Promise((r) => socket.once('data', r));
    client.outboundTarget = destination(H2_IP, 80);
    const session = http2.connect(`http://127.0.0.1:${client.outbound}`);
    try {
      await h2Ask(session, '/', 'h2-ka');
      expect(keepaliveTimers(portOf(tcpApp))).toEqual([TEN_MINUTES]);
      expect(keepaliveTimers(portOf(h2app))).toEqual([TEN_MINUTES]);
    } finally {
      socket.destroy();
      session.close();
      for (const x of [...held, ...h2Sessions]) x.destroy();
      await Promise.all([tcpApp, h2app].map((x) => new Promise((r) => x.close(r))));
      client.outboundTarget = destination(CLUSTER_IP, 80);
    }
  });

  it('closes an upstream HTTP/2 session idle for http.idleTimeout (GOAWAY), and keeps it past that without', async () => {
    const H2_IP = '10.96.0.65';
    const h2app = http2.createServer((_req, res) => res.end('h2 ok'));
    const closedSessions: number[] = [];
    const sessions: http2.ServerHttp2Session[] = [];
    h2app.on('session', (s: http2.ServerHttp2Session) => {
      sessions.push(s);
      s.on('close', () => closedSessions.push(Date.now()));
    });
    await new Promise<void>((resolve) => h2app.listen(0, '127.0.0.1', resolve));
    client.outboundTarget = destination(H2_IP, 80);
    const h2 = (mod: (s: MeshService) => MeshService): MeshService =>
      mod(
        service(
          'h2',
          H2_IP,
          [port(80, 'http2')],
          [endpoint('127.0.0.1', { 80: (h2app.address() as AddressInfo).port })],
        ),
      );
    const session = http2.connect(`http://127.0.0.1:${client.outbound}`);
    try {
      client.sidecar.setMesh(
        meshState(
          proxyScope('client'),
          h2((s) => s),
        ),
      );
      await h2Ask(session, '/a');
      await new Promise((r) => setTimeout(r, 600));
      expect([sessions.length, closedSessions.length]).toEqual([1, 0]);
      sessions[0]?.destroy();
      await new Promise((r) => setTimeout(r, 50));
      client.sidecar.setMesh(
        meshState(proxyScope('client'), h2(withPool({ http: { idleTimeoutMs: 300 } }))),
      );
      await h2Ask(session, '/b');
      const asked = Date.now();
      await new Promise((r) => setTimeout(r, 600));
      expect(sessions.length).toBe(2);
      expect(closedSessions.length).toBe(2);
      expect((closedSessions[1] as number) - asked).toBeGreaterThanOrEqual(250);
    } finally {
      session.close();
      for (const s of sessions) s.destroy();
      await new Promise((r) => h2app.close(r));
      client.outboundTarget = destination(CLUSTER_IP, 80);
    }
  });
});

describe('circuit breakers (maxConnections, http1MaxPendingRequests)', () => {
  it('HTTP/1.1, 1 connection and 1 pending: of 5 requests at once, 2 are served on the one connection and 3 answered 503 UO at once; lifted, all 5 pass', async () => {
    useMesh(withPool({ tcp: { maxConnections: 1 }, http: { http1MaxPendingRequests: 1 } }));
    // A connection of the cluster, idle in the pool: the first request takes it at once.
    expect((await get(client.outbound, '/warm')).status).toBe(200);
    connections.length = 0;
    const flaggedBefore = requestsFlagged('UO');
    const t0 = Date.now();
    const answers = await Promise.all(
      [1, 2, 3, 4, 5].map(async (i) => ({
        ...(await get(client.outbound, `/slow/1500?i=${i}`)),
        ms: Date.now() - t0,
      })),
    );
    const overflow = answers.filter((a) => a.status === 503);
    expect(answers.map((a) => a.status).sort()).toEqual([200, 200, 503, 503, 503]);
    for (const a of overflow) {
      expect(a.headers['x-envoy-overloaded']).toBe('true');
      expect(a.text).toBe(
        'upstream connect error or disconnect/reset before headers. reset reason: overflow',
      );
      // At once: not after the slow request (1.5 s).
      expect(a.ms).toBeLessThan(1500);
    }
    // The one pending request waited for the one connection: served after the first, on it.
    const served = answers.filter((a) => a.status === 200).map((a) => a.ms);
    expect(Math.max(...served)).toBeGreaterThanOrEqual(3000);
    expect(connections).toHaveLength(0);
    expect(requestsFlagged('UO') - flaggedBefore).toBe(3);

    useMesh((s) => s);
    const lifted = await Promise.all(
      [1, 2, 3, 4, 5].map((i) => get(client.outbound, `/slow/300?i=${i}`)),
    );
    expect(lifted.map((a) => a.status)).toEqual([200, 200, 200, 200, 200]);
    expect(connections.length).toBeGreaterThanOrEqual(4);
  });

  it('HTTP/1.1, a raised limit lets the waiting requests open their connections at once', async () => {
    useMesh(withPool({ tcp: { maxConnections: 1 }, http: { http1MaxPendingRequests: 10 } }));
    expect((await get(client.outbound, '/warm')).status).toBe(200);
    connections.length = 0;
    const t0 = Date.now();
    const running = [1, 2, 3].map((i) =>
      get(client.outbound, `/slow/1500?i=${i}`).then((a) => ({ ...a, ms: Date.now() - t0 })),
    );
    await new Promise((r) => setTimeout(r, 300));
    useMesh(withPool({ tcp: { maxConnections: 5 }, http: { http1MaxPendingRequests: 10 } }));
    // The next request under the new rule wakes the two waiting ones: they open connections.
    const fourth = await get(client.outbound, '/slow/10');
    expect(fourth.status).toBe(200);
    const answers = await Promise.all(running);
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200]);
    expect(Math.max(...answers.map((a) => a.ms))).toBeLessThan(3000);
    expect(connections.length).toBeGreaterThanOrEqual(2);
  });
});

describe('answers made at once', () => {
  it('records a request answered 503 UH (no endpoint) in the metrics, as any other', async () => {
    useMesh((s) => ({ ...s, endpoints: [] }));
    const before = requestsFlagged('UH');
    expect((await get(client.outbound, '/none')).status).toBe(503);
    expect(requestsFlagged('UH') - before).toBe(1);
  });
});

describe('circuit breakers over HTTP/2 and opaque TCP', () => {
  const H2_IP = '10.96.0.51';
  const TCP_IP = '10.96.0.52';
  let h2app: http2.Http2Server;
  let tcpApp: net.Server;
  const tcpAccepted: Socket[] = [];

  beforeAll(async () => {
    h2app = http2.createServer();
    h2app.on('stream', (stream) => {
      stream.respond({ ':status': 200 });
      stream.end('h2 ok');
    });
    await new Promise<void>((resolve) => h2app.listen(0, '127.0.0.1', resolve));
    tcpApp = net.createServer((s) => {
      tcpAccepted.push(s);
      s.on('data', (d) => s.write(d));
      s.on('error', () => {});
    });
    await new Promise<void>((resolve) => tcpApp.listen(0, '127.0.0.1', resolve));
    client.sidecar.setMesh(
      withSettings(
        meshState(
          proxyScope('client'),
          withPool({ tcp: { maxConnections: 1 }, http: { http1MaxPendingRequests: 1 } })(
            service(
              'h2',
              H2_IP,
              [port(80, 'http2')],
              [endpoint('127.0.0.1', { 80: (h2app.address() as AddressInfo).port })],
            ),
          ),
          withPool({ tcp: { maxConnections: 1 } })(
            service(
              'tcp',
              TCP_IP,
              [port(5000, 'tcp')],
              [endpoint('127.0.0.1', { 5000: (tcpApp.address() as AddressInfo).port })],
            ),
          ),
        ),
        { accessLog: true },
      ),
    );
  });

  afterAll(async () => {
    for (const s of tcpAccepted) s.destroy();
    await new Promise((r) => tcpApp.close(r));
    await new Promise((r) => h2app.close(r));
  });

  it('HTTP/2, 1 pending: while the session is being opened one stream waits and the others get 503 UO; then all share the session', async () => {
    client.outboundTarget = destination(H2_IP, 80);
    const session = http2.connect(`http://127.0.0.1:${client.outbound}`);
    const one = (): Promise<{ status: number; overloaded: unknown }> =>
      new Promise((resolve, reject) => {
        const req = session.request({ ':path': '/', ':authority': 'h2' });
        req.on('response', (h) => {
          req.resume();
          req.on('end', () =>
            resolve({ status: Number(h[':status']), overloaded: h['x-envoy-overloaded'] }),
          );
        });
        req.on('error', reject);
        req.end();
      });
    try {
      const first = await Promise.all([one(), one(), one()]);
      expect(first.map((a) => a.status).sort()).toEqual([200, 503, 503]);
      expect(first.filter((a) => a.status === 503).map((a) => a.overloaded)).toEqual([
        'true',
        'true',
      ]);
      const then = await Promise.all([one(), one(), one(), one()]);
      expect(then.map((a) => a.status)).toEqual([200, 200, 200, 200]);
    } finally {
      session.close();
      client.outboundTarget = destination(CLUSTER_IP, 80);
    }
  });

  it('opaque TCP, maxConnections 1: a second connection is closed at once; after the first closes, a new one passes', async () => {
    client.outboundTarget = destination(TCP_IP, 5000);
    const open = (): Promise<{ socket: Socket; echoed: Promise<string> }> =>
      new Promise((resolve, reject) => {
        const socket = net.connect(client.outbound, '127.0.0.1', () => {
          const echoed = new Promise<string>((done) => {
            let got = '';
            socket.on('data', (d: Buffer) => {
              got += d.toString();
              if (got.includes('\n')) done(got);
            });
            socket.on('close', () => done(got));
          });
          socket.write('ping\n');
          resolve({ socket, echoed });
        });
        socket.on('error', reject);
      });
    try {
      const first = await open();
      expect(await first.echoed).toBe('ping\n');
      accessLog.length = 0;
      const second = await open();
      expect(await second.echoed).toBe('');
      const refused = accessLog.map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(refused).toEqual([
        expect.objectContaining({ protocol: 'TCP', response_flags: 'UO', upstream_host: null }),
      ]);
      expect(second.socket.destroyed || second.socket.readableEnded).toBe(true);
      expect(tcpAccepted).toHaveLength(1);
      first.socket.destroy();
      await new Promise((r) => setTimeout(r, 200));
      const third = await open();
      expect(await third.echoed).toBe('ping\n');
      expect(tcpAccepted).toHaveLength(2);
      third.socket.destroy();
    } finally {
      client.outboundTarget = destination(CLUSTER_IP, 80);
    }
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
    expect(seen).toEqual([{ url: '/new/a?q=1', host: 'web.internal', attempt: '1' }]);
    expect((await get(client.outbound, '/other')).status).toBe(404);
  });

  it('rewrites the path by a regex (uriRegexRewrite), on a Host match (authority)', async () => {
    useMesh(
      vsRules(
        toWeb(
          { rewrite: { regex: { match: '^/service/([^/]+)(/.*)$', rewrite: '\\2/instance/\\1' } } },
          { authority: { exact: 'web' }, uri: { prefix: '/service/' } },
        ),
      ),
    );
    seen.length = 0;
    expect((await get(client.outbound, '/service/foo/v1/api?x=1', { host: 'web' })).status).toBe(
      200,
    );
    // Another Host: no rule matches.
    expect((await get(client.outbound, '/service/foo/v1', { host: 'other' })).status).toBe(404);
    expect(seen.map((s) => s.url)).toEqual(['/v1/api/instance/foo?x=1']);
  });
});

describe("a route's response header operations (headers.response, ResponseHeaderModifier)", () => {
  const H2_IP = '10.96.0.55';
  let h2app: http2.Http2Server;
  /** The app's own answer headers: one to drop, one to replace, one to add to. */
  const APP_HEADERS = { 'x-drop': '1', 'x-replace': 'old', 'x-more': 'a' };
  const responseHeaders = {
    set: [{ name: 'x-replace', value: 'new' }],
    add: [
      { name: 'x-more', value: 'b' },
      { name: 'x-added', value: 'yes' },
    ],
    remove: ['x-drop'],
  };
  const withAppHeaders = (_req: http.IncomingMessage, res: http.ServerResponse): void => {
    for (const [name, value] of Object.entries(APP_HEADERS)) res.setHeader(name, value);
  };
  const routed = (s: MeshService): MeshService => ({
    ...s,
    routes: {
      source: { kind: 'VirtualService', namespace: 'default', name: s.name },
      rules: [
        {
          matches: [{ uri: { prefix: '/changed' } }],
          destinations: [{ service: s.key, weight: 1 }],
          responseHeaders,
        },
        { matches: [], destinations: [{ service: s.key, weight: 1 }] },
      ],
    },
  });

  beforeAll(async () => {
    h2app = http2.createServer();
    h2app.on('stream', (stream) => {
      stream.respond({ ':status': 200, ...APP_HEADERS });
      stream.end('h2 ok');
    });
    await new Promise<void>((resolve) => h2app.listen(0, '127.0.0.1', resolve));
    app.prependListener('request', withAppHeaders);
    client.sidecar.setMesh(meshState(proxyScope('client'), ...webAndH2(H2_IP, h2app, routed)));
  });

  afterAll(async () => {
    app.removeListener('request', withAppHeaders);
    await new Promise((r) => h2app.close(r));
    client.outboundTarget = destination(CLUSTER_IP, 80);
  });

  /** The headers the test cares about, as the client got them. */
  const seenHeaders = (h: Record<string, unknown>): Record<string, unknown> => ({
    'x-drop': h['x-drop'],
    'x-replace': h['x-replace'],
    'x-more': h['x-more'],
    'x-added': h['x-added'],
  });

  it('drops, replaces and adds headers of the HTTP/1.1 answer on the matching route only', async () => {
    client.outboundTarget = destination(CLUSTER_IP, 80);
    const changed = await get(client.outbound, '/changed');
    expect(changed.status).toBe(200);
    expect(seenHeaders(changed.headers)).toEqual({
      'x-drop': undefined,
      'x-replace': 'new',
      // Node's client joins a repeated header with a comma.
      'x-more': 'a, b',
      'x-added': 'yes',
    });
    const other = await get(client.outbound, '/other');
    expect(seenHeaders(other.headers)).toEqual({ ...APP_HEADERS, 'x-added': undefined });
  });

  it('does the same to an HTTP/2 answer', async () => {
    client.outboundTarget = destination(H2_IP, 80);
    const session = http2.connect(`http://127.0.0.1:${client.outbound}`);
    const ask = (path: string): Promise<http2.IncomingHttpHeaders> => h2Ask(session, path);
    try {
      expect(seenHeaders(await ask('/changed'))).toEqual({
        'x-drop': undefined,
        'x-replace': 'new',
        'x-more': 'a, b',
        'x-added': 'yes',
      });
      expect(seenHeaders(await ask('/other'))).toEqual({ ...APP_HEADERS, 'x-added': undefined });
    } finally {
      session.close();
    }
  });
});

describe('routes the proxy answers itself (redirect, directResponse, RequestRedirect)', () => {
  const replies = vsRules(
    {
      matches: [{ uri: { prefix: '/old' } }],
      destinations: [],
      reply: { kind: 'redirect', status: 301, port: 'request', path: { fullPath: '/new' } },
    },
    {
      matches: [{ uri: { exact: '/gone' } }],
      destinations: [],
      reply: { kind: 'direct', status: 410, body: 'gone for good' },
    },
    {
      matches: [{ uri: { exact: '/pixel' } }],
      destinations: [],
      // Bytes that are not UTF-8: 0xff 0x00 0x80.
      reply: { kind: 'direct', status: 200, body: '/wCA', encoding: 'base64' },
    },
    toWeb(),
  );
  const PIXEL = Buffer.from([0xff, 0x00, 0x80]);

  it('answers a redirect with its Location and a direct response with its body, the app seeing neither; both counted, with no flag', async () => {
    useMesh(replies);
    seen.length = 0;
    const moved = await get(client.outbound, '/old/page?x=1', { host: 'web:8080' });
    expect(moved.status).toBe(301);
    expect(moved.headers.location).toBe('http://web:8080/new?x=1');
    const gone = await get(client.outbound, '/gone');
    expect([gone.status, gone.text]).toEqual([410, 'gone for good']);
    const pixel = await getBytes(client.outbound, '/pixel');
    expect(pixel.body.equals(PIXEL)).toBe(true);
    expect(pixel.headers['content-length']).toBe('3');
    expect(seen).toEqual([]);
    expect((await get(client.outbound, '/other')).status).toBe(200);
    expect(seen.map((s) => s.url)).toEqual(['/other']);
    const counted = (code: string): number =>
      clientMetricsText()
        .split('\n')
        .filter(
          (l) =>
            l.startsWith('istio_requests_total{') &&
            l.includes(`response_code="${code}"`) &&
            l.includes('response_flags="-"'),
        )
        .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
    expect([counted('301'), counted('410')]).toEqual([1, 1]);
  });

  it('answers an HTTP/2 request the same way', async () => {
    useMesh(replies);
    const session = http2.connect(`http://127.0.0.1:${client.outbound}`);
    try {
      const headers = await h2Ask(session, '/old', 'web');
      expect([headers[':status'], headers.location]).toEqual([301, 'http://web/new']);
      const body = await new Promise<Buffer>((resolve, reject) => {
        const req = session.request({ ':path': '/pixel', ':authority': 'web' });
        const chunks: Buffer[] = [];
        req.on('data', (c: Buffer) => chunks.push(c));
        req.on('end', () => resolve(Buffer.concat(chunks)));
        req.on('error', reject);
        req.end();
      });
      expect(body.equals(PIXEL)).toBe(true);
    } finally {
      session.close();
    }
  });
});

/**
 * Three apps of a describe block, app-<i> on 127.0.0.<i+1> answering `status(i)`, closed after
 * it (the client's outbound target put back).
 */
function loopbackApps(status: (i: number) => number = () => 200): http.Server[] {
  const apps: http.Server[] = [];
  beforeAll(async () => {
    for (let i = 0; i < 3; i++) {
      const s = http.createServer((req, res) => {
        req.resume();
        res.statusCode = status(i);
        res.end(`app-${i}`);
      });
      await new Promise<void>((resolve) => s.listen(0, `127.0.0.${i + 1}`, resolve));
      apps.push(s);
    }
  });
  afterAll(async () => {
    for (const s of apps) s.closeAllConnections();
    await Promise.all(apps.map((s) => new Promise((r) => s.close(r))));
    client.outboundTarget = destination(CLUSTER_IP, 80);
  });
  return apps;
}

describe('consistent hashing through the proxy (DestinationRule consistentHash)', () => {
  const STICKY_IP = '10.96.0.56';
  const apps = loopbackApps();

  /** The service's DestinationRule hashing on `consistentHash` (set for its port 80 alone with `portLevel`). */
  function useHash(consistentHash: object, portLevel = false): void {
    client.sidecar.setMesh(
      meshState(proxyScope('client'), {
        ...service(
          'sticky',
          STICKY_IP,
          [port(80, 'http')],
          apps.map((s, i) =>
            endpoint(`127.0.0.${i + 1}`, { 80: (s.address() as AddressInfo).port }),
          ),
        ),
        policy: {
          source: { namespace: 'default', name: 'sticky' },
          trafficPolicy: portLevel
            ? { loadBalancer: 'RANDOM', portLevelSettings: [{ port: 80, consistentHash }] }
            : { consistentHash },
        },
      }),
    );
    client.outboundTarget = destination(STICKY_IP, 80);
  }

  it('sends every request of one header value to one app, and different values to several', async () => {
    useHash({ header: 'x-user' });
    const answers = async (user: string, n: number): Promise<Set<string>> => {
      const got = new Set<string>();
      for (let i = 0; i < n; i++)
        got.add((await get(client.outbound, '/', { 'x-user': user })).text);
      return got;
    };
    expect((await answers('alice', 12)).size).toBe(1);
    expect((await answers('bob', 12)).size).toBe(1);
    const spread = new Set<string>();
    for (let u = 0; u < 30; u++) for (const a of await answers(`user-${u}`, 1)) spread.add(a);
    expect(spread.size).toBeGreaterThanOrEqual(2);
  });

  it('gives a client without the cookie one, and keeps it on one app while it sends it back', async () => {
    // Set for the port (portLevelSettings), over the host's RANDOM.
    useHash({ cookie: { name: 'sticky', ttlMs: 600_000 } }, true);
    const first = await get(client.outbound, '/');
    const setCookie = first.headers['set-cookie']?.[0] ?? '';
    expect(setCookie).toMatch(/^sticky="[0-9a-f]{16}"; Max-Age=600; Path=\/; HttpOnly$/);
    const cookie = setCookie.split(';')[0] as string;
    const again = new Set<string>();
    for (let i = 0; i < 12; i++) {
      const r = await get(client.outbound, '/', { cookie });
      expect(r.headers['set-cookie']).toBeUndefined();
      again.add(r.text);
    }
    expect([...again]).toEqual([first.text]);
  });
});

describe('locality load balancing through the proxy (localityLbSetting, PreferClose)', () => {
  const NEAR_IP = '10.96.0.57';
  /** app-0 in the caller's zone, app-1 in another zone of its region, app-2 in another region. */
  const LOCALITIES = ['east/east-a/', 'east/east-b/', 'west/west-a/'];
  let failing = -1;
  const apps = loopbackApps((i) => (failing === i ? 500 : 200));

  function useLocality(mods: (s: MeshService) => MeshService): void {
    failing = -1;
    client.sidecar.setMesh(
      meshState(
        proxyScope('client', (p) => ({ ...p, locality: 'east/east-a/' })),
        mods(
          service(
            'near',
            NEAR_IP,
            [port(80, 'http')],
            apps.map((s, i) => ({
              ...endpoint(`127.0.0.${i + 1}`, { 80: (s.address() as AddressInfo).port }),
              locality: LOCALITIES[i] as string,
            })),
          ),
        ),
      ),
    );
    client.outboundTarget = destination(NEAR_IP, 80);
  }

  const answers = async (n: number): Promise<string[]> => {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const r = await get(client.outbound, '/');
      out.push(`${r.status} ${r.text}`);
    }
    return out;
  };

  it('spreads requests over every locality without outlierDetection (as Istio), and keeps them near with PreferClose', async () => {
    useLocality((s) => s);
    expect(new Set(await answers(40)).size).toBe(3);
    useLocality((s) => ({ ...s, preferClose: true }));
    expect(new Set(await answers(20))).toEqual(new Set(['200 app-0']));
  });

  it('shares requests by `distribute` weights, from the caller’s locality', async () => {
    useLocality((s) => ({
      ...s,
      policy: {
        source: { namespace: 'default', name: 'near' },
        trafficPolicy: {
          localityLb: {
            distribute: [{ from: 'east/*', to: { 'east/east-b/*': 50, 'west/*': 50 } }],
          },
        },
      },
    }));
    const got = await answers(60);
    expect(got).not.toContain('200 app-0');
    expect(got.filter((a) => a === '200 app-1').length).toBeGreaterThan(10);
    expect(got.filter((a) => a === '200 app-2').length).toBeGreaterThan(10);
  });

  // Last: the ejection it makes outlives a configuration change, as Envoy's does.
  it('keeps every request in the caller’s zone, then fails over to its region (not another) once the zone’s endpoint is ejected', async () => {
    useLocality((s) => ({
      ...s,
      policy: {
        source: { namespace: 'default', name: 'near' },
        trafficPolicy: {
          outlierDetection: {
            consecutive5xxErrors: 1,
            consecutiveGatewayErrors: 0,
            intervalMs: 10_000,
            baseEjectionTimeMs: 60_000,
            maxEjectionPercent: 100,
          },
        },
      },
    }));
    expect(new Set(await answers(20))).toEqual(new Set(['200 app-0']));
    failing = 0;
    const during = await answers(20);
    // The one failed answer ejects app-0; every later request goes to app-1, none to app-2.
    expect(during[0]).toBe('500 app-0');
    expect(new Set(during.slice(1))).toEqual(new Set(['200 app-1']));
    const dump = client.sidecar.configDump() as { endpointSets: Record<string, unknown> };
    expect(dump.endpointSets['default/near|80|']).toEqual({
      priorities: [
        {
          locality: 'east/east-a/',
          endpoints: [`127.0.0.1:${(apps[0]?.address() as AddressInfo).port}`],
        },
        {
          locality: 'east/east-b/',
          endpoints: [`127.0.0.2:${(apps[1]?.address() as AddressInfo).port}`],
        },
        {
          locality: 'west/west-a/',
          endpoints: [`127.0.0.3:${(apps[2]?.address() as AddressInfo).port}`],
        },
      ],
    });
  });
});

describe("a route's CORS policy through the proxy (corsPolicy)", () => {
  const withCors = vsRules(
    toWeb({
      cors: {
        allowOrigins: [{ exact: 'https://shop.example' }],
        allowMethods: ['GET', 'PUT'],
        allowHeaders: ['x-token'],
        exposeHeaders: [],
        maxAgeSeconds: 600,
        allowCredentials: false,
      },
    }),
  );
  /** The app allows every origin itself: the route's policy replaces that. */
  const appCors = (_req: http.IncomingMessage, res: http.ServerResponse): void => {
    res.setHeader('access-control-allow-origin', '*');
  };
  beforeAll(() => {
    app.prependListener('request', appCors);
  });
  afterAll(() => {
    app.removeListener('request', appCors);
  });

  const ask = (
    method: string,
    headers: Record<string, string>,
  ): Promise<{ status: number; headers: http.IncomingHttpHeaders }> =>
    new Promise((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: client.outbound, method, path: '/cors', headers, agent: false },
        (res) => {
          res.resume();
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers }));
        },
      );
      req.on('error', reject);
      req.end();
    });

  it('answers an allowed preflight itself, and sends on one from another origin', async () => {
    useMesh(withCors);
    seen.length = 0;
    const preflight = await ask('OPTIONS', {
      origin: 'https://shop.example',
      'access-control-request-method': 'PUT',
    });
    expect(preflight.status).toBe(200);
    expect(preflight.headers).toMatchObject({
      'access-control-allow-origin': 'https://shop.example',
      'access-control-allow-methods': 'GET,PUT',
      'access-control-allow-headers': 'x-token',
      'access-control-max-age': '600',
    });
    expect(seen).toEqual([]);
    const other = await ask('OPTIONS', {
      origin: 'https://evil.example',
      'access-control-request-method': 'PUT',
    });
    expect(other.headers['access-control-allow-methods']).toBeUndefined();
    expect(seen.map((s) => s.url)).toEqual(['/cors']);
  });

  it("puts the allowed origin on the app's answer, in place of the app's own", async () => {
    useMesh(withCors);
    const allowed = await ask('GET', { origin: 'https://shop.example' });
    expect(allowed.headers['access-control-allow-origin']).toBe('https://shop.example');
    // Not allowed by the route: the app's answer as it made it.
    const other = await ask('GET', { origin: 'https://evil.example' });
    expect(other.headers['access-control-allow-origin']).toBe('*');
  });

  it('answers a preflight from another origin itself, without CORS headers, with unmatchedPreflights IGNORE', async () => {
    useMesh((s) => {
      const routed = withCors(s);
      const rule = routed.routes?.rules[0] as HttpRouteRule;
      const cors = { ...(rule.cors as CorsPolicy), ignoreUnmatchedPreflights: true as const };
      return vsRules({ ...rule, cors })(s);
    });
    seen.length = 0;
    const other = await ask('OPTIONS', {
      origin: 'https://evil.example',
      'access-control-request-method': 'PUT',
    });
    expect(other.status).toBe(200);
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
    expect(seen).toEqual([]);
  });

  it("applies an HTTPRoute's CORS filter as the mesh reads it: a wildcard origin, `*` echoed with credentials, max age 5", async () => {
    const v = validateMeshObject({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'web', namespace: 'default' },
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'web' }],
        rules: [
          {
            filters: [
              {
                type: 'CORS',
                cors: {
                  allowOrigins: ['https://*.shop.example'],
                  allowMethods: ['*'],
                  allowHeaders: ['*'],
                  allowCredentials: true,
                },
              },
            ],
            backendRefs: [{ name: 'web', port: 80 }],
          },
        ],
      },
    });
    if (v.status !== 'valid' || v.object.kind !== 'HTTPRoute') throw new Error('invalid route');
    const cors = v.object.rules[0]?.cors as CorsPolicy;
    useMesh(vsRules(toWeb({ cors })));
    seen.length = 0;
    const preflight = await ask('OPTIONS', {
      origin: 'https://eu.cdn.shop.example',
      'access-control-request-method': 'DELETE',
      'access-control-request-headers': 'x-token,x-trace',
    });
    expect(preflight.status).toBe(200);
    expect(preflight.headers).toMatchObject({
      'access-control-allow-origin': 'https://eu.cdn.shop.example',
      'access-control-allow-credentials': 'true',
      'access-control-allow-methods': 'DELETE',
      'access-control-allow-headers': 'x-token,x-trace',
      'access-control-max-age': '5',
    });
    // An origin outside the wildcard: answered by the proxy, without CORS headers (not the app).
    const other = await ask('OPTIONS', {
      origin: 'https://shop.example.evil',
      'access-control-request-method': 'GET',
    });
    expect(other.status).toBe(200);
    expect(other.headers['access-control-allow-origin']).toBeUndefined();
    expect(seen).toEqual([]);
  });
});

describe('a fault that aborts with a gRPC status (abort.grpcStatus)', () => {
  it('answers a gRPC request trailers-only with that status, and an HTTP/1.1 one with its HTTP status', async () => {
    useMesh(
      vsRules(toWeb({ fault: { abort: { httpStatus: 503, percent: 100, grpcStatus: 14 } } })),
    );
    const session = http2.connect(`http://127.0.0.1:${client.outbound}`);
    try {
      const headers = await h2Ask(session, '/pkg.Svc/Call', 'web', {
        ':method': 'POST',
        'content-type': 'application/grpc',
      });
      expect([headers[':status'], headers['grpc-status']]).toEqual([200, '14']);
    } finally {
      session.close();
    }
    expect((await get(client.outbound, '/plain')).status).toBe(503);
  });
});

describe('maxConnectionDuration over HTTP/2', () => {
  it('opens a new session for the streams that come once the session is older than it', async () => {
    const H2_IP = '10.96.0.57';
    const h2app = http2.createServer();
    let sessions = 0;
    h2app.on('session', () => sessions++);
    h2app.on('stream', (stream) => {
      stream.respond({ ':status': 200 });
      stream.end('ok');
    });
    await new Promise<void>((resolve) => h2app.listen(0, '127.0.0.1', resolve));
    const [, h2] = webAndH2(H2_IP, h2app, withPool({ tcp: { maxConnectionDurationMs: 300 } }));
    client.sidecar.setMesh(meshState(proxyScope('client'), h2 as MeshService));
    client.outboundTarget = destination(H2_IP, 80);
    const session = http2.connect(`http://127.0.0.1:${client.outbound}`);
    try {
      for (let i = 0; i < 3; i++) expect((await h2Ask(session, '/'))[':status']).toBe(200);
      expect(sessions).toBe(1);
      await new Promise((r) => setTimeout(r, 350));
      for (let i = 0; i < 3; i++) expect((await h2Ask(session, '/'))[':status']).toBe(200);
      expect(sessions).toBe(2);
    } finally {
      session.close();
      client.outboundTarget = destination(CLUSTER_IP, 80);
      await new Promise((r) => h2app.close(r));
    }
  });
});

describe("a VirtualService's tcp routes through the proxy", () => {
  const DB_IP = '10.96.0.58';
  const servers: net.Server[] = [];
  /** Two TCP apps that write their name and close. */
  beforeAll(async () => {
    for (const name of ['db-v1', 'db-v2']) {
      const s = net.createServer((socket) => {
        socket.on('error', () => {});
        socket.end(name);
      });
      await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
      servers.push(s);
    }
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    client.outboundTarget = destination(CLUSTER_IP, 80);
  });

  const answer = (): Promise<string> =>
    new Promise((resolve, reject) => {
      const socket = net.connect(client.outbound, '127.0.0.1');
      let got = '';
      socket.on('data', (d: Buffer) => (got += d.toString()));
      socket.on('close', () => resolve(got));
      socket.on('error', reject);
    });

  /** Service db (answering db-v1) and db-next (db-v2), on port 5432. */
  const dbAndNext = (): { db: MeshService; next: MeshService } => {
    const port5432 = (s: net.Server) => ({ 5432: (s.address() as AddressInfo).port });
    return {
      db: service(
        'db',
        DB_IP,
        [port(5432, 'tcp')],
        [endpoint('127.0.0.1', port5432(servers[0] as net.Server))],
      ),
      next: service(
        'db-next',
        '10.96.0.59',
        [port(5432, 'tcp')],
        [endpoint('127.0.0.1', port5432(servers[1] as net.Server))],
      ),
    };
  };

  it('sends connections to the destinations of the rule, by weight, another Service included', async () => {
    const { db, next } = dbAndNext();
    const withRoutes = (weights: [number, number]): MeshService => ({
      ...db,
      tcpRoutes: {
        source: { kind: 'VirtualService', namespace: 'default', name: 'db' },
        rules: [
          {
            matches: [{ port: 5432 }],
            destinations: [
              { service: 'default/db', weight: weights[0] },
              { service: 'default/db-next', weight: weights[1] },
            ],
          },
        ],
      },
    });
    client.outboundTarget = destination(DB_IP, 5432);
    client.sidecar.setMesh(meshState(proxyScope('client'), withRoutes([0, 100]), next));
    expect([await answer(), await answer()]).toEqual(['db-v2', 'db-v2']);
    client.sidecar.setMesh(meshState(proxyScope('client'), withRoutes([50, 50]), next));
    const seenNames = new Set<string>();
    for (let i = 0; i < 30; i++) seenNames.add(await answer());
    expect([...seenNames].sort()).toEqual(['db-v1', 'db-v2']);
  });

  it('matches the original destination and the source on their subnets (destinationSubnets, sourceSubnet)', async () => {
    const { db, next } = dbAndNext();
    const routedWhen = (match: object): MeshService => ({
      ...db,
      tcpRoutes: {
        source: { kind: 'VirtualService', namespace: 'default', name: 'db' },
        rules: [
          { matches: [match], destinations: [{ service: 'default/db-next', weight: 1 }] },
          { matches: [], destinations: [{ service: 'default/db', weight: 1 }] },
        ],
      },
    });
    client.outboundTarget = destination(DB_IP, 5432);
    const via = async (match: object): Promise<string> => {
      client.sidecar.setMesh(meshState(proxyScope('client'), routedWhen(match), next));
      return answer();
    };
    expect(await via({ destinationSubnets: [`${DB_IP}/32`] })).toBe('db-v2');
    expect(await via({ destinationSubnets: ['10.97.0.0/16'] })).toBe('db-v1');
    // The app connects from loopback here.
    expect(await via({ sourceSubnet: '127.0.0.0/8' })).toBe('db-v2');
    expect(await via({ sourceSubnet: '10.0.0.0/8' })).toBe('db-v1');
  });

  it('closes at once a connection whose route names a Service the mesh does not have (NC)', async () => {
    const db = service('db', DB_IP, [port(5432, 'tcp')], []);
    client.outboundTarget = destination(DB_IP, 5432);
    client.sidecar.setMesh(
      withSettings(
        meshState(proxyScope('client'), {
          ...db,
          tcpRoutes: {
            source: { kind: 'VirtualService', namespace: 'default', name: 'db' },
            rules: [{ matches: [], destinations: [{ service: 'default/nowhere', weight: 1 }] }],
          },
        }),
        { accessLog: true },
      ),
    );
    accessLog.length = 0;
    expect(await answer()).toBe('');
    // (A line of the previous test's last connection may come in too.)
    const refused = accessLog
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.response_flags !== '-');
    expect(refused).toEqual([expect.objectContaining({ protocol: 'TCP', response_flags: 'NC' })]);
  });
});

describe("a match on the caller's labels (sourceLabels)", () => {
  it('applies the rule in a proxy whose Pod has the labels, and not in one whose Pod has not', async () => {
    const withLabels = (labels: Record<string, string>) =>
      meshState(
        proxyScope('client', (p) => ({ ...p, labels })),
        rewriteOld({ rewrite: { prefix: '/for-canary-callers/' } })(
          service('web', CLUSTER_IP, [port(80, 'http')], [endpoint('127.0.0.1', { 80: appPort })]),
        ),
      );
    const sourced = (state: ReturnType<typeof withLabels>) => {
      const web = state.services.get('default/web') as MeshService;
      const table = web.routes as NonNullable<MeshService['routes']>;
      const rules = table.rules.map((r) => ({
        ...r,
        matches: r.matches.map((m) => ({ ...m, sourceLabels: { track: 'canary' } })),
      }));
      return {
        ...state,
        services: new Map([['default/web', { ...web, routes: { ...table, rules } }]]),
      };
    };
    seen.length = 0;
    client.sidecar.setMesh(sourced(withLabels({ app: 'client', track: 'canary' })));
    expect((await get(client.outbound, '/old/a')).status).toBe(200);
    client.sidecar.setMesh(sourced(withLabels({ app: 'client', track: 'stable' })));
    // No rule left for this caller: the VirtualService's table answers 404 (NR), as Envoy's.
    expect((await get(client.outbound, '/old/a')).status).toBe(404);
    expect(seen.map((s) => s.url)).toEqual(['/for-canary-callers/a']);
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
  let lines: { obj: Record<string, unknown>; msg: string }[];
  let debugClient: LoopbackSidecar;
  /** The debug client's log level, which a test may change while it runs (/logging). */
  let level: string;
  /** A port nothing listens on: connection refused. */
  let closedPort: number;

  beforeEach(async () => {
    lines = [];
    level = 'debug';
    const record = (obj: object, msg: string): void => {
      lines.push({ obj: obj as Record<string, unknown>, msg });
    };
    const debugLog = {
      debug: record,
      info: record,
      warn: record,
      error: record,
      isLevelEnabled: (asked: string) => asked === 'debug' && level === 'debug',
    };
    debugClient = await startSidecar('client', undefined, 'default', debugLog);
    const closed = http.createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    closedPort = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
  });
  afterEach(() => debugClient.close());

  /**
   * The debug client's only service: `name` at `ip`, round robin over the closed port first,
   * then `livePort`; its outbound connections go there.
   */
  function closedThenLive(name: string, ip: string, p: ServicePort, livePort: number): void {
    debugClient.outboundTarget = destination(ip, p.port);
    debugClient.sidecar.setMesh(
      meshState(
        proxyScope('client'),
        roundRobin(
          service(
            name,
            ip,
            [p],
            [
              endpoint('127.0.0.1', { [p.port]: closedPort }),
              endpoint('127.0.0.1', { [p.port]: livePort }),
            ],
          ),
        ),
      ),
    );
  }

  const endpointsOf = (s: LoopbackSidecar) =>
    (
      s.sidecar.configDump() as {
        endpoints: { port: number; attempts: number; failures: number; active: number }[];
      }
    ).endpoints;

  it('counts attempts and failures per endpoint in its config dump, lists its balanced sets, and logs each failed attempt at debug', async () => {
    closedThenLive('web', CLUSTER_IP, port(80, 'http'), appPort);
    // Round robin: the 1st and 3rd requests try the closed port first, then (Istio's default
    // retry on connect-failure) the app.
    for (let i = 0; i < 4; i++) {
      expect((await get(debugClient.outbound, `/a/${i}`)).status).toBe(200);
    }
    // Each attempt says which it is (Envoy's x-envoy-attempt-count).
    expect(seen.filter((r) => r.url.startsWith('/a/')).map((r) => [r.url, r.attempt])).toEqual([
      ['/a/0', '2'],
      ['/a/1', '1'],
      ['/a/2', '2'],
      ['/a/3', '1'],
    ]);
    const dump = debugClient.sidecar.configDump() as { endpointSets: Record<string, string[]> };
    const byPort = (p: number) => endpointsOf(debugClient).find((e) => e.port === p);
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
  });

  it('logs failed attempts only at debug, its level read at each failure (/logging changes it)', async () => {
    closedThenLive('web', CLUSTER_IP, port(80, 'http'), appPort);
    const failedLines = (): number =>
      lines.filter((l) => l.msg === 'upstream attempt failed').length;
    level = 'info';
    // Round robin: the 1st request tries the closed port first.
    expect((await get(debugClient.outbound, '/quiet/0')).status).toBe(200);
    expect((await get(debugClient.outbound, '/quiet/1')).status).toBe(200);
    expect(failedLines()).toBe(0);
    level = 'debug';
    expect((await get(debugClient.outbound, '/loud/0')).status).toBe(200);
    expect(failedLines()).toBe(1);
  });

  it('logs a failed HTTP/2 attempt with its reason and detail, then the retry answers', async () => {
    const H2_IP = '10.96.0.61';
    const h2app = http2.createServer((_req, res) => res.end('h2 ok'));
    await new Promise<void>((resolve) => h2app.listen(0, '127.0.0.1', resolve));
    const h2Port = (h2app.address() as AddressInfo).port;
    const session = http2.connect(`http://127.0.0.1:${debugClient.outbound}`);
    try {
      closedThenLive('grpcish', H2_IP, port(80, 'http2'), h2Port);
      const one = (): Promise<string> =>
        new Promise((resolve, reject) => {
          const req = session.request({ ':path': '/', ':authority': 'grpcish' });
          let body = '';
          req.setEncoding('utf8').on('data', (c: string) => (body += c));
          req.on('response', (h) => req.on('end', () => resolve(`${h[':status']} ${body}`)));
          req.on('error', reject);
          req.end();
        });
      // Round robin from the closed port: the first stream's first attempt fails, its retry
      // (Istio's default on connect-failure) reaches the app; the second goes to the app.
      expect([await one(), await one()]).toEqual(['200 h2 ok', '200 h2 ok']);
      const failed = lines.filter((l) => l.msg === 'upstream attempt failed');
      expect(failed.map((l) => l.obj)).toEqual([
        expect.objectContaining({
          service: 'default/grpcish',
          endpoint: `127.0.0.1:${closedPort}`,
          reason: 'connect-failure',
          detail: expect.stringContaining('ECONNREFUSED') as unknown,
        }),
      ]);
    } finally {
      session.close();
      await new Promise((r) => h2app.close(r));
    }
  });

  it('counts and logs a refused opaque TCP connection the same way (no retry: the client is closed)', async () => {
    const TCP_IP = '10.96.0.60';
    const echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
    const echoPort = (echo.address() as AddressInfo).port;
    try {
      closedThenLive('db', TCP_IP, port(5000, 'tcp'), echoPort);
      const exchange = (): Promise<string> =>
        new Promise((resolve, reject) => {
          const socket = net.connect(debugClient.outbound, '127.0.0.1', () => socket.end('ping'));
          let got = '';
          socket.on('data', (d: Buffer) => (got += d.toString()));
          socket.on('close', () => resolve(got));
          socket.on('error', reject);
        });
      const answers = [await exchange(), await exchange()];
      expect(answers.sort()).toEqual(['', 'ping']);
      const byPort = (p: number) => endpointsOf(debugClient).find((e) => e.port === p);
      expect(byPort(closedPort)).toMatchObject({ attempts: 1, failures: 1, active: 0 });
      expect(byPort(echoPort)).toMatchObject({ attempts: 1, failures: 0, active: 0 });
      const failed = lines.filter((l) => l.msg === 'upstream attempt failed');
      expect(failed.map((l) => l.obj)).toEqual([
        expect.objectContaining({
          service: 'default/db',
          endpoint: `127.0.0.1:${closedPort}`,
          reason: 'connect-failure',
          detail: expect.stringContaining('ECONNREFUSED') as unknown,
        }),
      ]);
    } finally {
      await new Promise((r) => echo.close(r));
    }
  });
});

describe('opaque TCP timeouts (connectionPool.tcp)', () => {
  const IDLE_IP = '10.96.0.53';
  /** An app that writes a byte every 100 ms for 1 s, unasked, then says nothing more. */
  let ticker: net.Server;
  const tickerSockets: Socket[] = [];

  beforeAll(async () => {
    ticker = net.createServer((s) => {
      tickerSockets.push(s);
      s.on('error', () => {});
      let n = 0;
      const timer = setInterval(() => {
        if (++n > 10 || s.destroyed) clearInterval(timer);
        else s.write('x');
      }, 100);
    });
    await new Promise<void>((resolve) => ticker.listen(0, '127.0.0.1', resolve));
  });

  afterAll(async () => {
    for (const s of tickerSockets) s.destroy();
    await new Promise((r) => ticker.close(r));
    client.outboundTarget = destination(CLUSTER_IP, 80);
  });

  function useIdle(tcp: ConnectionPoolPolicy['tcp']): void {
    client.sidecar.setMesh(
      meshState(
        proxyScope('client'),
        withPool(tcp === undefined ? {} : { tcp })(
          service(
            'ticker',
            IDLE_IP,
            [port(5000, 'tcp')],
            [endpoint('127.0.0.1', { 5000: (ticker.address() as AddressInfo).port })],
          ),
        ),
      ),
    );
    client.outboundTarget = destination(IDLE_IP, 5000);
  }

  /** A connection that sends nothing: the bytes it got, and when it closed (ms after opening). */
  const listen = (): Promise<{ got: string; closedAfterMs: number | null }> =>
    new Promise((resolve, reject) => {
      const t0 = Date.now();
      let got = '';
      const socket = net.connect(client.outbound, '127.0.0.1');
      socket.on('data', (d: Buffer) => (got += d.toString()));
      socket.on('error', reject);
      socket.on('close', () => resolve({ got, closedAfterMs: Date.now() - t0 }));
      // Long after the app's last byte: still open means never closed for idleness.
      setTimeout(() => {
        if (socket.destroyed) return;
        socket.destroy();
        resolve({ got, closedAfterMs: null });
      }, 2500);
    });

  it('keeps a connection open while bytes flow either way, and closes both ends once none has for the idle timeout', async () => {
    useIdle({ idleTimeoutMs: 400 });
    tickerSockets.length = 0;
    const { got, closedAfterMs } = await listen();
    // Ten bytes over 1 s, each from the app alone, kept it open past 400 ms.
    expect(got).toBe('x'.repeat(10));
    expect(closedAfterMs).toBeGreaterThanOrEqual(1400);
    expect(closedAfterMs).toBeLessThan(2400);
    // The app's end was closed as well.
    expect(tickerSockets).toHaveLength(1);
    await new Promise((r) => setTimeout(r, 100));
    expect(tickerSockets[0]?.destroyed || tickerSockets[0]?.readableEnded).toBe(true);

    // The client's own bytes keep it open too (the app echoes nothing).
    const socket = net.connect(client.outbound, '127.0.0.1');
    socket.resume();
    const closed = new Promise<number>((r) => socket.on('close', () => r(Date.now())));
    let lastWrite = 0;
    const sending = setInterval(() => {
      socket.write('.');
      lastWrite = Date.now();
    }, 150);
    await new Promise((r) => setTimeout(r, 1800));
    expect(socket.destroyed).toBe(false);
    clearInterval(sending);
    const quietFor = (await closed) - lastWrite;
    expect(quietFor).toBeGreaterThanOrEqual(390);
    expect(quietFor).toBeLessThan(1400);
  }, 15_000);

  it('gives up a meshed endpoint that never answers the handshake at connectTimeout (the sidecar has 2 s)', async () => {
    // Takes the connection, never says a word: the TLS handshake to it never ends.
    const mute = net.createServer((s) => s.on('error', () => {}));
    await new Promise<void>((resolve) => mute.listen(0, '127.0.0.1', resolve));
    const mutePort = (mute.address() as AddressInfo).port;
    const closedAfter = async (tcp: ConnectionPoolPolicy['tcp']): Promise<number> => {
      client.sidecar.setMesh(
        meshState(
          proxyScope('client'),
          withPool(tcp === undefined ? {} : { tcp })(
            service(
              'mute',
              IDLE_IP,
              [port(5000, 'tcp')],
              [endpoint('127.0.0.1', { 5000: mutePort }, meshedAs('mute'))],
            ),
          ),
        ),
      );
      client.outboundTarget = destination(IDLE_IP, 5000);
      const t0 = Date.now();
      const socket = net.connect(client.outbound, '127.0.0.1', () => socket.write('ping'));
      socket.resume();
      return new Promise((resolve) => socket.on('close', () => resolve(Date.now() - t0)));
    };
    try {
      const withRule = await closedAfter({ connectTimeoutMs: 300 });
      expect(withRule).toBeGreaterThanOrEqual(290);
      expect(withRule).toBeLessThan(1500);
      expect(await closedAfter(undefined)).toBeGreaterThanOrEqual(1990);
    } finally {
      mute.close();
    }
  }, 15_000);

  it('closes a busy connection at maxConnectionDuration', async () => {
    useIdle({ maxConnectionDurationMs: 450 });
    const { got, closedAfterMs } = await listen();
    // The app writes every 100 ms for 1 s: cut after about 4 of its bytes.
    expect(closedAfterMs).toBeGreaterThanOrEqual(440);
    expect(closedAfterMs).toBeLessThan(1000);
    expect(got.length).toBeLessThan(10);
  });

  it('never closes an idle connection with idleTimeout 0, nor (within a test) by default', async () => {
    for (const tcp of [{ idleTimeoutMs: 0 }, undefined]) {
      useIdle(tcp);
      const { got, closedAfterMs } = await listen();
      expect(got).toBe('x'.repeat(10));
      expect(closedAfterMs).toBeNull();
    }
  }, 15_000);
});

describe("idle client connections (Envoy's idle_timeout, 1 hour by default; 400 ms here)", () => {
  const H2_IP = '10.96.0.54';
  let quiet: LoopbackSidecar;
  let h2app: http2.Http2Server;
  /** The app's ends of upgraded connections (the HTTP server no longer tracks them). */
  const upgraded: Socket[] = [];

  beforeAll(async () => {
    quiet = await startSidecar('client', undefined, 'default', undefined, 400);
    h2app = http2.createServer();
    h2app.on('stream', (stream, headers) => {
      const slow = /^\/slow\/(\d+)/.exec(String(headers[':path']));
      stream.respond({ ':status': 200 });
      setTimeout(() => stream.end('h2 ok'), slow === null ? 0 : Number(slow[1]));
    });
    await new Promise<void>((resolve) => h2app.listen(0, '127.0.0.1', resolve));
    // An upgrade the app accepts, then echoes.
    app.on('upgrade', (_req, socket: Socket) => {
      socket.write(
        'HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n',
      );
      socket.on('data', (d) => socket.write(d));
      socket.on('end', () => socket.end());
      socket.on('error', () => {});
      upgraded.push(socket);
    });
    quiet.sidecar.setMesh(meshState(proxyScope('client'), ...webAndH2(H2_IP, h2app)));
  });

  afterAll(async () => {
    app.removeAllListeners('upgrade');
    for (const s of upgraded) s.destroy();
    await quiet?.close();
    await new Promise((r) => h2app.close(r));
  });

  /** Resolves to the time `emitter` emits 'close', in ms since `since`. */
  const closedAt = (emitter: { once(e: 'close', f: () => void): unknown }): Promise<number> =>
    new Promise((resolve) => emitter.once('close', () => resolve(Date.now())));

  it('closes a kept-alive HTTP/1.1 connection once it has carried no request for that long, never one in the middle of a slow answer', async () => {
    quiet.outboundTarget = destination(CLUSTER_IP, 80);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const ask = (path: string): Promise<{ status: number; socket: Socket }> =>
      new Promise((resolve, reject) => {
        const req = http.get({ port: quiet.outbound, host: '127.0.0.1', path, agent }, (res) => {
          res.resume();
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, socket: req.socket as Socket }),
          );
        });
        req.on('error', reject);
      });
    try {
      const first = await ask('/a');
      const closed = closedAt(first.socket);
      // 250 ms apart, then one answered after 700 ms: the same connection all along.
      await new Promise((r) => setTimeout(r, 250));
      const second = await ask('/b');
      const slow = await ask('/slow/700');
      expect([first.status, second.status, slow.status]).toEqual([200, 200, 200]);
      expect(second.socket).toBe(first.socket);
      expect(slow.socket).toBe(first.socket);
      const answered = Date.now();
      const quietFor = (await closed) - answered;
      expect(quietFor).toBeGreaterThanOrEqual(350);
      expect(quietFor).toBeLessThan(1400);
    } finally {
      agent.destroy();
    }
  }, 15_000);

  it('closes an HTTP/2 session with no stream for that long with a GOAWAY, never one with a stream open', async () => {
    quiet.outboundTarget = destination(H2_IP, 80);
    const session = http2.connect(`http://127.0.0.1:${quiet.outbound}`);
    const goaway = new Promise<number>((resolve) =>
      session.once('goaway', () => resolve(Date.now())),
    );
    const closed = closedAt(session);
    const get = async (path: string): Promise<number> =>
      Number((await h2Ask(session, path))[':status']);
    expect(await get('/a')).toBe(200);
    expect(await get('/slow/700')).toBe(200);
    const answered = Date.now();
    expect((await goaway) - answered).toBeGreaterThanOrEqual(350);
    expect((await closed) - answered).toBeLessThan(1400);
  }, 15_000);

  it('closes an upgraded connection once no byte has passed either way for that long, at both ends', async () => {
    quiet.outboundTarget = destination(CLUSTER_IP, 80);
    const socket = net.connect(quiet.outbound, '127.0.0.1');
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    const closed = closedAt(socket);
    socket.write('GET /ws HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
    // Echoed bytes every 150 ms for 900 ms keep it open.
    let lastWrite = 0;
    for (let i = 0; i < 6; i++) {
      await new Promise((r) => setTimeout(r, 150));
      socket.write(`m${i};`);
      lastWrite = Date.now();
    }
    const quietFor = (await closed) - lastWrite;
    expect(got).toContain('101 Switching Protocols');
    expect(got).toContain('m0;m1;m2;m3;m4;m5;');
    expect(quietFor).toBeGreaterThanOrEqual(350);
    expect(quietFor).toBeLessThan(1400);
    // The app's end was closed too.
    await new Promise((r) => setTimeout(r, 100));
    expect(upgraded).toHaveLength(1);
    expect(upgraded[0]?.destroyed).toBe(true);
  }, 15_000);
});

describe('a client that ends its side in the middle of a request body', () => {
  it("has its request given up at once (DC), the app's connection cut, instead of a wait for an answer that cannot come", async () => {
    const IP = '10.96.0.64';
    let appClosed: (complete: boolean) => void = () => {};
    const cut = new Promise<boolean>((resolve) => (appClosed = resolve));
    const waiting = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => res.end('whole'));
      req.socket.on('close', () => appClosed(req.complete));
    });
    await new Promise<void>((resolve) => waiting.listen(0, '127.0.0.1', resolve));
    try {
      client.outboundTarget = destination(IP, 80);
      client.sidecar.setMesh(
        withSettings(
          meshState(
            proxyScope('client'),
            service(
              'waiting',
              IP,
              [port(80, 'http')],
              [endpoint('127.0.0.1', { 80: (waiting.address() as AddressInfo).port })],
            ),
          ),
          { accessLog: true },
        ),
      );
      accessLog.length = 0;
      const socket = net.connect(client.outbound, '127.0.0.1');
      socket.on('error', () => {});
      let answer = '';
      socket.on('data', (d: Buffer) => (answer += d.toString()));
      const closed = new Promise((r) => socket.on('close', r));
      socket.write('POST /upload HTTP/1.1\r\nHost: waiting\r\nContent-Length: 1000\r\n\r\n');
      socket.write('x'.repeat(300));
      await new Promise((r) => setTimeout(r, 100));
      // Half-closed: the 700 bytes still owed can never come.
      socket.end();
      expect(await cut).toBe(false);
      await closed;
      expect(answer).toBe('');
      const lines = accessLog.map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines).toEqual([
        expect.objectContaining({ path: '/upload', response_code: 0, response_flags: 'DC' }),
      ]);
    } finally {
      waiting.closeAllConnections();
      await new Promise((r) => waiting.close(r));
      client.outboundTarget = destination(CLUSTER_IP, 80);
    }
  });
});

describe('mirrors (mirror, mirrors, RequestMirror) through the proxy', () => {
  const ORDERS_IP = '10.96.0.63';
  const SHADOW_IP = '10.96.0.60';
  const H2_IP = '10.96.0.61';
  const H2_SHADOW_IP = '10.96.0.62';
  /** What a mirror's app received: one entry per request, once it ended or was cut. */
  interface Copy {
    method: string;
    path: string;
    host: string;
    body: Buffer;
    complete: boolean;
    xfcc: string | undefined;
  }
  const copies: Copy[] = [];
  /** The mirror's answers, held until the test lets them go. */
  const held: (() => void)[] = [];
  let shadowApp: http.Server;
  let ordersApp: http.Server;
  let shadowSide: LoopbackSidecar;
  let h2Main: http2.Http2Server;
  let h2Shadow: http2.Http2Server;
  const h2Sessions: http2.ServerHttp2Session[] = [];

  /** orders: an app that answers once it has read the whole request. */
  const orders = (): MeshService =>
    service(
      'orders',
      ORDERS_IP,
      [port(80, 'http')],
      [endpoint('127.0.0.1', { 80: (ordersApp.address() as AddressInfo).port })],
    );
  /** web-v2: the shadow app behind its own sidecar (mutual TLS from the client's). */
  const webV2 = (): MeshService =>
    service(
      'web-v2',
      SHADOW_IP,
      [port(80, 'http')],
      [endpoint('127.0.0.1', { 80: shadowSide.inbound }, meshedAs('shadow'))],
    );
  const h2Service = (name: string, ip: string, server: http2.Http2Server): MeshService =>
    service(
      name,
      ip,
      [port(80, 'http2')],
      [endpoint('127.0.0.1', { 80: (server.address() as AddressInfo).port })],
    );

  beforeAll(async () => {
    ordersApp = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    await new Promise<void>((resolve) => ordersApp.listen(0, '127.0.0.1', resolve));
    shadowApp = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      let recorded = false;
      const record = (): void => {
        if (recorded) return;
        recorded = true;
        copies.push({
          method: req.method ?? '',
          path: req.url ?? '',
          host: req.headers.host ?? '',
          body: Buffer.concat(chunks),
          complete: req.complete,
          xfcc: req.headers['x-forwarded-client-cert'] as string | undefined,
        });
      };
      req.on('close', record);
      // (A request cut in its body shows as its connection's close.)
      req.socket.on('close', record);
      req.on('end', () => held.push(() => res.end('from the mirror')));
    });
    await new Promise<void>((resolve) => shadowApp.listen(0, '127.0.0.1', resolve));
    shadowSide = await startSidecar('shadow');
    shadowSide.inboundTarget = destination('127.0.0.1', (shadowApp.address() as AddressInfo).port);
    shadowSide.sidecar.setMesh(meshState(proxyScope('shadow')));
    h2Main = http2.createServer();
    h2Main.on('stream', (stream) => {
      stream.resume();
      stream.on('end', () => {
        stream.respond({ ':status': 200 });
        stream.end('h2 main');
      });
    });
    h2Shadow = http2.createServer();
    h2Shadow.on('stream', (stream, headers) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('end', () => {
        copies.push({
          method: String(headers[':method']),
          path: String(headers[':path']),
          host: String(headers[':authority']),
          body: Buffer.concat(chunks),
          complete: true,
          xfcc: undefined,
        });
        held.push(() => {
          if (!stream.destroyed) stream.respond({ ':status': 500 });
          stream.end();
        });
      });
    });
    for (const s of [h2Main, h2Shadow]) {
      s.on('session', (session: http2.ServerHttp2Session) => h2Sessions.push(session));
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    }
  });

  afterEach(() => {
    for (const release of held.splice(0)) release();
    copies.length = 0;
  });

  afterAll(async () => {
    await shadowSide.close();
    for (const server of [shadowApp, ordersApp]) {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
    // The client's sidecar keeps its sessions to them open.
    for (const session of h2Sessions) session.destroy();
    await Promise.all([h2Main, h2Shadow].map((s) => new Promise((r) => s.close(r))));
    client.outboundTarget = destination(CLUSTER_IP, 80);
  });

  /** The client's mesh: orders' rules mirror `/none/...` at 0% and the rest at 100% to web-v2. */
  function mirrored(): void {
    const toOrders = (percent: number, ...matches: RequestMatch[]): HttpRouteRule => ({
      matches,
      destinations: [{ service: 'default/orders', weight: 1 }],
      mirrors: [{ service: 'default/web-v2', percent }],
    });
    client.outboundTarget = destination(ORDERS_IP, 80);
    client.sidecar.setMesh(
      meshState(
        proxyScope('client'),
        vsRules(toOrders(0, { uri: { prefix: '/none/' } }), toOrders(100))(orders()),
        webV2(),
      ),
    );
  }

  /** Copies received so far once `n` are there (the copies go on after the answers). */
  async function copiesWhen(n: number): Promise<Copy[]> {
    for (let i = 0; i < 200 && copies.length < n; i++) await new Promise((r) => setTimeout(r, 20));
    return [...copies];
  }

  /** A POST with `body` in two chunks (chunked framing): the status and text of the answer. */
  function post(path: string, body: Buffer): Promise<{ status: number; text: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        { host: '127.0.0.1', port: client.outbound, path, method: 'POST', agent: false },
        (res) => {
          let text = '';
          res.on('data', (d: Buffer) => (text += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        },
      );
      req.setHeader('host', 'server');
      req.on('error', reject);
      req.write(body.subarray(0, 1000));
      setTimeout(() => req.end(body.subarray(1000)), 20);
    });
  }

  it('copies an HTTP/1.1 request, body and all, to the mirror over mutual TLS, with the -shadow host, and answers without waiting for the copy', async () => {
    mirrored();
    // Past the 64 KiB kept for a retry: the copy is fed as the body comes.
    const body = Buffer.alloc(100 * 1024, 'mirror body ');
    const answer = await post('/orders/7?x=1', body);
    // The mirror's answer is still held: the client's came from orders.
    expect(answer).toEqual({ status: 200, text: 'ok' });
    const [copy, ...more] = await copiesWhen(1);
    expect(more).toEqual([]);
    expect(copy).toMatchObject({
      method: 'POST',
      path: '/orders/7?x=1',
      host: 'server-shadow',
      complete: true,
      xfcc: expect.stringContaining(`URI=spiffe://cluster.local/ns/default/sa/client`),
    });
    expect(copy?.body.equals(body)).toBe(true);
  });

  it('copies only the share of requests its percentage gives (0%: none)', async () => {
    mirrored();
    for (let i = 0; i < 5; i++) expect((await get(client.outbound, `/none/${i}`)).status).toBe(200);
    expect((await get(client.outbound, '/marker')).status).toBe(200);
    const seenCopies = await copiesWhen(1);
    await new Promise((r) => setTimeout(r, 100));
    expect([...seenCopies, ...copies.slice(seenCopies.length)].map((c) => c.path)).toEqual([
      '/marker',
    ]);
  });

  it('drops the copy of a request that does not come whole (the client went away)', async () => {
    mirrored();
    const socket = net.connect(client.outbound, '127.0.0.1');
    socket.on('error', () => {});
    await new Promise((r) => socket.once('connect', r));
    socket.write('POST /cut HTTP/1.1\r\nHost: server\r\nContent-Length: 1000\r\n\r\n');
    socket.write('x'.repeat(400));
    await new Promise((r) => setTimeout(r, 200));
    socket.destroy();
    const [copy] = await copiesWhen(1);
    expect(copy).toMatchObject({ path: '/cut', complete: false });
    expect(copy?.body.length).toBeLessThan(1000);
  });

  it('copies an HTTP/2 request to an HTTP/2 mirror, its :authority with -shadow', async () => {
    client.outboundTarget = destination(H2_IP, 80);
    client.sidecar.setMesh(
      meshState(
        proxyScope('client'),
        vsRules({
          matches: [],
          destinations: [{ service: 'default/h2', weight: 1 }],
          mirrors: [{ service: 'default/h2-v2', percent: 100 }],
        })(h2Service('h2', H2_IP, h2Main)),
        h2Service('h2-v2', H2_SHADOW_IP, h2Shadow),
      ),
    );
    const session = http2.connect(`http://127.0.0.1:${client.outbound}`);
    try {
      const answer = await new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = session.request({
          ':method': 'PUT',
          ':path': '/items/3',
          ':authority': 'h2:80',
        });
        let text = '';
        req.on('response', (h) =>
          req.on('end', () => resolve({ status: Number(h[':status']), text })),
        );
        req.on('data', (d: Buffer) => (text += d.toString()));
        req.on('error', reject);
        req.write('first,');
        setTimeout(() => req.end('second'), 20);
      });
      expect(answer).toEqual({ status: 200, text: 'h2 main' });
      const [copy] = await copiesWhen(1);
      expect(copy).toMatchObject({ method: 'PUT', path: '/items/3', host: 'h2-shadow:80' });
      expect(copy?.body.toString()).toBe('first,second');
    } finally {
      session.close();
    }
  });
});

describe("a VirtualService's tls routes through the proxy (by the ClientHello's server name)", () => {
  const SECURE_IP = '10.96.0.66';
  /** The apps' own TLS: a CA of theirs, which the clients pin (Mooring never sees inside). */
  const appCa = makeCa('App CA');
  const servers: tls.Server[] = [];
  /** `secure` (the Service itself), `secure-a` and `secure-b`: TLS apps that answer their name. */
  const apps: Record<string, number> = {};

  beforeAll(async () => {
    for (const [name, dns] of [
      ['secure', ['other.example']],
      ['secure-a', ['a.example']],
      ['secure-b', ['x.b.example']],
    ] as const) {
      const { cert, key } = makeServing(appCa, { dns: [...dns] });
      const server = tls.createServer({ cert, key }, (s) => {
        s.on('error', () => {});
        s.end(name);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      servers.push(server);
      apps[name] = (server.address() as AddressInfo).port;
    }
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    client.outboundTarget = destination(CLUSTER_IP, 80);
  });

  /** What the app behind the proxy answers a TLS client that asks for `servername`. */
  const answer = (servername: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const socket = tls.connect({
        port: client.outbound,
        host: '127.0.0.1',
        servername,
        ca: appCa.pem,
      });
      let got = '';
      socket.on('data', (d: Buffer) => (got += d.toString()));
      socket.on('end', () => resolve(got));
      socket.on('error', reject);
    });

  it('sends each server name to the destination of the rule that names it, any other to the Service', async () => {
    const svc = (name: string, ip: string): MeshService =>
      service(name, ip, [port(443, 'tcp')], [endpoint('127.0.0.1', { 443: apps[name] as number })]);
    const secure: MeshService = {
      ...svc('secure', SECURE_IP),
      tlsRoutes: {
        source: { kind: 'VirtualService', namespace: 'default', name: 'secure' },
        rules: [
          {
            matches: [{ port: 443, sniHosts: ['a.example'] }],
            destinations: [{ service: 'default/secure-a', weight: 1 }],
          },
          {
            matches: [{ sniHosts: ['*.b.example'] }],
            destinations: [{ service: 'default/secure-b', weight: 1 }],
          },
        ],
      },
    };
    client.outboundTarget = destination(SECURE_IP, 443);
    client.sidecar.setMesh(
      meshState(
        proxyScope('client'),
        secure,
        svc('secure-a', '10.96.0.67'),
        svc('secure-b', '10.96.0.68'),
      ),
    );
    expect(await answer('a.example')).toBe('secure-a');
    expect(await answer('x.b.example')).toBe('secure-b');
    expect(await answer('other.example')).toBe('secure');
  });
});

describe("TLS the proxy originates (a DestinationRule's tls SIMPLE and MUTUAL)", () => {
  const API_IP = '10.96.0.70';
  /** An HTTPS app outside the mesh, its certificate for api.example from a CA of its own. */
  const apiCa = makeCa('API CA');
  const clientCa = makeCa('Client CA');
  const dir = mkdtempSync(join(tmpdir(), 'mooring-originate-'));
  const files = {
    ca: join(dir, 'ca.pem'),
    otherCa: join(dir, 'other-ca.pem'),
    cert: join(dir, 'client.pem'),
    key: join(dir, 'client-key.pem'),
    /** Revocation lists of the API CA: none listed, the server's certificate listed. */
    crlNone: join(dir, 'none.crl'),
    crlRevoked: join(dir, 'revoked.crl'),
    /** Another CA's list, none listed: no list of the server's own CA. */
    crlOtherCa: join(dir, 'other-ca.crl'),
  };
  let api: https.Server;
  let apiPort = 0;

  /** A CRL of `issuer` listing `revoke` (PEM certificates), made by `openssl ca`. */
  const makeCrl = (
    issuer: ReturnType<typeof makeCa>,
    revoke: string[],
    out: string,
    name: string,
  ): void => {
    const at = join(dir, name);
    execFileSync('mkdir', ['-p', at]);
    writeFileSync(join(at, 'ca.pem'), issuer.pem);
    writeFileSync(
      join(at, 'ca-key.pem'),
      issuer.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
    );
    writeFileSync(join(at, 'index.txt'), '');
    const config = join(at, 'ca.cnf');
    writeFileSync(
      config,
      `[ca]\ndefault_ca = d\n[d]\ndatabase = ${join(at, 'index.txt')}\ndefault_md = sha256\ndefault_crl_days = 1\n`,
    );
    const ca = ['-config', config, '-cert', join(at, 'ca.pem'), '-keyfile', join(at, 'ca-key.pem')];
    revoke.forEach((pem, i) => {
      const file = join(at, `revoke-${i}.pem`);
      writeFileSync(file, pem);
      execFileSync('openssl', ['ca', ...ca, '-revoke', file], { stdio: 'pipe' });
    });
    execFileSync('openssl', ['ca', ...ca, '-gencrl', '-out', out], { stdio: 'pipe' });
  };

  beforeAll(async () => {
    const serving = makeServing(apiCa, { dns: ['api.example'], ips: [] });
    const clientCert = makeServing(clientCa, { dns: ['orders.client'], ips: [] });
    const otherCa = makeCa('Other CA');
    writeFileSync(files.ca, apiCa.pem);
    writeFileSync(files.otherCa, otherCa.pem);
    writeFileSync(files.cert, clientCert.cert);
    writeFileSync(files.key, clientCert.key);
    makeCrl(apiCa, [], files.crlNone, 'crl-none');
    makeCrl(apiCa, [serving.cert], files.crlRevoked, 'crl-revoked');
    makeCrl(otherCa, [], files.crlOtherCa, 'crl-other');
    api = https.createServer(
      { ...serving, ca: clientCa.pem, requestCert: true, rejectUnauthorized: false },
      (req, res) => {
        const socket = req.socket as tls.TLSSocket;
        const peer = socket.getPeerCertificate();
        res.end(
          JSON.stringify({
            path: req.url,
            servername: (socket as unknown as { servername?: string }).servername ?? null,
            alpn: socket.alpnProtocol,
            client: socket.authorized ? (peer.subjectaltname ?? null) : null,
          }),
        );
      },
    );
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    apiPort = (api.address() as AddressInfo).port;
  });
  afterAll(async () => {
    api.closeAllConnections();
    await new Promise((r) => api.close(r));
    rmSync(dir, { recursive: true, force: true });
    client.outboundTarget = destination(CLUSTER_IP, 80);
  });

  const withTls = (tls: TlsPolicy): void => {
    const svc = service(
      'api',
      API_IP,
      [port(80, 'http')],
      [endpoint('127.0.0.1', { 80: apiPort })],
    );
    client.outboundTarget = destination(API_IP, 80);
    client.sidecar.setMesh(
      meshState(proxyScope('client'), {
        ...svc,
        policy: { source: { namespace: 'default', name: 'api' }, trafficPolicy: { tls } },
      }),
    );
  };
  const call = async (): Promise<{ status: number; body: Record<string, unknown> | string }> => {
    const res = await get(client.outbound, '/v1/orders', { host: 'api' });
    let body: Record<string, unknown> | string = res.text;
    try {
      body = JSON.parse(res.text) as Record<string, unknown>;
    } catch {
      // a proxy's own answer
    }
    return { status: res.status, body };
  };

  it('SIMPLE: the app speaks plain HTTP, the server gets TLS with the SNI, its chain and name checked', async () => {
    withTls({ mode: 'SIMPLE', sni: 'api.example', caCertificates: files.ca });
    expect(await call()).toEqual({
      status: 200,
      body: { path: '/v1/orders', servername: 'api.example', alpn: 'http/1.1', client: null },
    });
  });

  it('refuses a server whose chain does not lead to caCertificates, or whose name is not asked for (503)', async () => {
    withTls({ mode: 'SIMPLE', sni: 'api.example', caCertificates: files.otherCa });
    expect((await call()).status).toBe(503);
    withTls({
      mode: 'SIMPLE',
      sni: 'api.example',
      subjectAltNames: ['db.example'],
      caCertificates: files.ca,
    });
    expect((await call()).status).toBe(503);
    // Without subjectAltNames, the name checked is the SNI's.
    withTls({ mode: 'SIMPLE', sni: 'db.example', caCertificates: files.ca });
    expect((await call()).status).toBe(503);
    // Checks off: the same server goes.
    withTls({
      mode: 'SIMPLE',
      sni: 'api.example',
      caCertificates: files.otherCa,
      insecureSkipVerify: true,
    });
    expect((await call()).status).toBe(200);
  });

  it("refuses a server whose certificate caCrl lists, or whose CA has no list there (503); goes when its CA's list does not name it", async () => {
    const simple = { mode: 'SIMPLE', sni: 'api.example', caCertificates: files.ca } as const;
    withTls({ ...simple, caCrl: files.crlRevoked });
    expect((await call()).status).toBe(503);
    withTls({ ...simple, caCrl: files.crlOtherCa });
    expect((await call()).status).toBe(503);
    withTls({ ...simple, caCrl: files.crlNone });
    expect(await call()).toMatchObject({ status: 200, body: { path: '/v1/orders' } });
  });

  it('MUTUAL presents the client certificate of its files', async () => {
    withTls({
      mode: 'MUTUAL',
      sni: 'api.example',
      caCertificates: files.ca,
      clientCertificate: files.cert,
      privateKey: files.key,
    });
    expect(await call()).toMatchObject({ status: 200, body: { client: 'DNS:orders.client' } });
  });

  it('carries opaque TCP over the TLS it originates', async () => {
    const serving = makeServing(apiCa, { dns: ['db.example'], ips: [] });
    const db = tls.createServer(serving, (socket) => {
      socket.on('error', () => {});
      socket.once('data', (d: Buffer) => socket.end(`db got ${d.toString()}`));
    });
    await new Promise<void>((resolve) => db.listen(0, '127.0.0.1', resolve));
    try {
      const svc = service(
        'db',
        '10.96.0.71',
        [port(5432, 'tcp')],
        [endpoint('127.0.0.1', { 5432: (db.address() as AddressInfo).port })],
      );
      client.outboundTarget = destination('10.96.0.71', 5432);
      client.sidecar.setMesh(
        meshState(proxyScope('client'), {
          ...svc,
          policy: {
            source: { namespace: 'default', name: 'db' },
            trafficPolicy: { tls: { mode: 'SIMPLE', sni: 'db.example', caCertificates: files.ca } },
          },
        }),
      );
      const got = await new Promise<string>((resolve, reject) => {
        const socket = net.connect(client.outbound, '127.0.0.1', () => socket.write('hello'));
        let text = '';
        socket.on('data', (d: Buffer) => (text += d.toString()));
        socket.on('end', () => resolve(text));
        socket.on('error', reject);
      });
      expect(got).toBe('db got hello');
    } finally {
      await new Promise((r) => db.close(r));
    }
  });

  it('answers 503 naming the file it cannot read', async () => {
    withTls({ mode: 'SIMPLE', caCertificates: join(dir, 'missing.pem') });
    const res = await call();
    expect(res.status).toBe(503);
    expect(res.body).toEqual(expect.stringContaining('cannot read caCertificates'));
  });
});

// The proxy through the events of a Pod's life, for real (root: `make netns`): a root rotation of
// the CA under load, and the drain on SIGTERM. Agents as UID 1337 in network namespaces with the
// rules of `mooring iptables`, a local `mooring serve --mesh-dir` (test/netns/mesh-rig.ts).
//
//   web  10.77.0.21  meshed, the client (its echo app drives the load: POST /repeat on 8081)
//   api  10.77.0.22  meshed, behind Service api (ClusterIP 10.96.20.1)

import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MOORING, NODE, run } from './support';
import {
  MeshRig,
  podObject,
  prepareRig,
  serviceObject,
  sliceObject,
  type Pod,
  type PortSpec,
} from './mesh-rig';

jest.setTimeout(180_000);

const API_IP = '10.96.20.1';
const PORTS: PortSpec[] = [
  { name: 'http', port: 80, targetPort: 8080 },
  { name: 'tcp-echo', port: 9000, targetPort: 9000 },
];
// Short lifetimes so that a rotation completes within a test: the agents ask for 10 s
// certificates (renewed after about 5 s); issuance moves to the new root 3 s after it joins the
// bundle.
const SERVER_CONFIG = {
  ca: {
    backdateSeconds: 0,
    rotation: { propagationDelaySeconds: 3, checkIntervalSeconds: 1 },
  },
};

let rig: MeshRig;
let web: Pod;
let api: Pod;

interface RepeatAnswer {
  sent: number;
  ok: number;
  failures: { at: number; status?: number; error?: string }[];
}

/** Requests from web's app (a new connection to its sidecar each), for `durationMs`. */
/** Requests to the API from the web Pod for `durationMs`, or exactly one (a duration of 1 ms could
 * end before the first request on a loaded machine). */
async function httpLoad(path: string, load: number | 'once'): Promise<RepeatAnswer> {
  const durationMs = load === 'once' ? 0 : load;
  const repeat = load === 'once' ? { count: 1 } : { durationMs, intervalMs: 10 };
  const r = await rig.exec(
    web.ns,
    [
      'curl',
      '-sf',
      '--max-time',
      String(durationMs / 1000 + 30),
      '-H',
      'content-type: application/json',
      '-d',
      JSON.stringify({ url: `http://${API_IP}${path}`, ...repeat }),
      'http://127.0.0.1:8081/repeat',
    ],
    undefined,
    durationMs + 40_000,
  );
  if (r.code !== 0) throw new Error(`the load did not run (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as RepeatAnswer;
}

/** TCP connections one after another, each a new mutual TLS handshake between the sidecars. */
const TCP_LOOP = `
const net = require('net');
const [host, port, durationMs] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
const until = Date.now() + durationMs;
const out = { sent: 0, ok: 0, failures: [] };
const once = (i) => new Promise((resolve) => {
  const payload = 'ping-' + i + '-' + 'x'.repeat(512) + '\\n';
  let got = '';
  const s = net.connect({ host, port, allowHalfOpen: true });
  const fail = (why) => { if (out.failures.length < 20) out.failures.push({ i, why }); s.destroy(); resolve(); };
  s.setTimeout(10000, () => fail('timeout'));
  s.on('connect', () => s.end(payload));
  s.on('data', (d) => (got += d));
  s.on('error', (e) => fail(e.code || e.message));
  s.on('end', () => { if (got === payload) out.ok++; else fail('echo ' + got.length + ' bytes'); s.destroy(); resolve(); });
});
(async () => {
  for (let i = 0; Date.now() < until; i++) { out.sent++; await once(i); await new Promise((r) => setTimeout(r, 10)); }
  console.log(JSON.stringify(out));
})();`;

async function tcpLoad(durationMs: number): Promise<RepeatAnswer> {
  const out = await rig.node(
    'web',
    TCP_LOOP,
    [API_IP, '9000', String(durationMs)],
    durationMs + 40_000,
  );
  return JSON.parse(out) as RepeatAnswer;
}

const certsOf = (pem: string): X509Certificate[] =>
  (pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (c) => new X509Certificate(c),
  );

/** The leaf the agent of a Pod has on disk now. */
function leafOf(pod: Pod): X509Certificate {
  const [leaf] = certsOf(readFileSync(join(pod.dir, 'certs', 'cert-chain.pem'), 'utf8'));
  if (leaf === undefined) throw new Error(`${pod.spec.name} has no certificate`);
  return leaf;
}

beforeAll(async () => {
  await prepareRig([]);
  rig = new MeshRig('life');
  await rig.start(
    {
      'token-web': { namespace: 'default', serviceAccount: 'web' },
      'token-api': { namespace: 'default', serviceAccount: 'api' },
    },
    { config: SERVER_CONFIG },
  );
  // The drain test below needs more than the rig's 2 s: the last flag wins.
  const agentArgs = ['--ttl', '10s', '--drain', '15s'];
  web = await rig.addPod({ name: 'web', ip: '10.77.0.21', meshed: true, agentArgs });
  api = await rig.addPod({ name: 'api', ip: '10.77.0.22', meshed: true, agentArgs });
  rig.writeMesh('mesh.yaml', [
    serviceObject('api', API_IP, PORTS, { app: 'api' }),
    sliceObject('api', PORTS, [api]),
    ...[web, api].map(podObject),
  ]);
  for (const name of ['web', 'api']) await rig.waitReady(name);
}, 180_000);

afterAll(async () => {
  await rig?.stop();
});

describe('a root rotation of the CA', () => {
  it('drops no request and no connection between sidecars while the workloads move to the new root', async () => {
    const oldRoots = certsOf(rig.bundle());
    expect(oldRoots).toHaveLength(1);
    const oldRoot = oldRoots[0] as X509Certificate;
    expect(leafOf(web).verify(oldRoot.publicKey)).toBe(true);

    const loadMs = 30_000;
    const loads = Promise.all([httpLoad('/rotation', loadMs), tcpLoad(loadMs)]);
    await new Promise((r) => setTimeout(r, 2000));

    const rotate = await run(NODE, [
      MOORING,
      'ca',
      'rotate',
      '--data-dir',
      rig.dataDir,
      '--config',
      join(rig.dir, 'server.json'),
    ]);
    expect(rotate.code).toBe(0);
    const roots = certsOf(rig.bundle());
    expect(roots).toHaveLength(2);
    const newRoot = roots.find((r) => r.fingerprint256 !== oldRoot.fingerprint256);
    if (newRoot === undefined) throw new Error('no new root in the bundle');
    // As the kubelet updates the mooring-ca-root-cert ConfigMap volume of each Pod.
    rig.refreshBundle('web');
    rig.refreshBundle('api');

    // Each agent renews (10 s certificates) from the new root once issuance has moved to it.
    await rig.waitFor(
      'both workloads on the new root',
      () =>
        Promise.resolve(
          [web, api].every((pod) => {
            try {
              return leafOf(pod).verify(newRoot.publicKey);
            } catch {
              return false;
            }
          }),
        ),
      25_000,
    );

    const [http, tcp] = await loads;
    expect(http.failures).toEqual([]);
    expect(tcp.failures).toEqual([]);
    // Traffic kept flowing all along (not a load that stopped early).
    expect(http.ok).toBeGreaterThan(200);
    expect(tcp.ok).toBeGreaterThan(200);
    // New handshakes after the move: a connection now still works, both leaves on the new root.
    const after = await tcpLoad(1000);
    expect(after.failures).toEqual([]);
    expect(after.ok).toBeGreaterThan(0);
  });
});

describe('SIGTERM', () => {
  it('stops inbound: a request in flight finishes, a new one is refused, and the agent exits once it is done', async () => {
    const slow = httpLoad('/delay/3000', 'once');
    await new Promise((r) => setTimeout(r, 800));
    const started = Date.now();
    const exited = rig.stopAgent('api');
    await new Promise((r) => setTimeout(r, 300));
    const refused = await httpLoad('/after-sigterm', 'once');
    // Its inbound listener is closed: the caller's sidecar answers 503 (no healthy upstream).
    expect(refused.ok).toBe(0);
    expect(refused.failures).toEqual([expect.objectContaining({ status: 503 })]);

    const inFlight = await slow;
    expect(inFlight.failures).toEqual([]);
    expect(inFlight.ok).toBe(1);
    expect(await exited).toBe(0);
    // Once nothing was in flight, not after the whole --drain of 15 s.
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it("keeps outbound working while it drains, until the app's calls are done", async () => {
    rig.startAgent(api);
    await rig.waitReady('api');
    const slow = httpLoad('/delay/4000', 'once');
    await new Promise((r) => setTimeout(r, 800));
    const exited = rig.stopAgent('web');
    await new Promise((r) => setTimeout(r, 300));
    // The app, shutting down too, still calls out through its draining sidecar.
    const during = await httpLoad('/during-drain', 'once');
    expect(during.failures).toEqual([]);
    expect(during.ok).toBe(1);
    expect((await slow).ok).toBe(1);
    expect(await exited).toBe(0);
  });
});

// The data plane for real (root: `make netns`): Pods in network namespaces with the rules of
// `mooring iptables`, `mooring agent`s as UID 1337 with no capability carrying every connection
// of their Pod, and a local `mooring serve --mesh-dir` giving them certificates and the mesh.
//
//   web      10.77.0.11  meshed, the client
//   api      10.77.0.12  meshed, behind Service api (ClusterIP 10.96.10.1, only the proxies know it)
//   legacy   10.77.0.13  not meshed, behind Service legacy (10.96.10.2)
//   outside  10.77.0.14  not meshed, in no Service: reached by its address (passthrough)
//   impostor 10.77.0.15  meshed as `impostor`, but Service impostor's endpoint at its address is
//                        Pod `ghost` (service account `api-ghost`): the caller must refuse it
//
// Every app is the echo app of the node tests (test/e2e-node/echo/echo.ts) as UID 1000.

import {
  APP_USER,
  MeshRig,
  peerAuthentication,
  podObject,
  prepareRig,
  serviceObject,
  sliceObject,
  type HttpAnswer,
  type Pod,
  type PortSpec,
} from './mesh-rig';
import { PROXY_BUFFER_POOL_BYTES } from '../../src/agent/proxy/v8-flags';
import { NODE, run } from './support';
import { nowS, testIssuer } from '../fixtures/jwt';

jest.setTimeout(120_000);

const API_IP = '10.96.10.1';
const LEGACY_IP = '10.96.10.2';
const IMPOSTOR_IP = '10.96.10.3';
const PORTS: PortSpec[] = [
  { name: 'http', port: 80, targetPort: 8080 },
  { name: 'grpc', port: 50051, targetPort: 50051 },
  { name: 'tcp-echo', port: 9000, targetPort: 9000 },
  { name: 'tcp-greet', port: 2525, targetPort: 2525 },
  // Undeclared: sniffed (a server-first protocol there waits the detection timeout).
  { name: 'greet', port: 2526, targetPort: 2525 },
];

let rig: MeshRig;
let web: Pod;
let api: Pod;
let legacy: Pod;
let outside: Pod;
let impostor: Pod;
/** Not run: the Pod the mesh believes is at the impostor's address. */
const ghost = {
  spec: { name: 'ghost', ip: '10.77.0.15', meshed: true },
  namespace: 'default',
  serviceAccount: 'api-ghost',
} as Pod;

type Answer = HttpAnswer;

function httpFrom(
  pod: Pod,
  url: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<Answer> {
  return rig.http(pod.spec.name, url, { headers, ...(body ? { body } : {}) });
}

const echoed = (
  a: Answer,
): { pod: string; headers: Record<string, string>; body: string; peer: { address: string } } =>
  JSON.parse(a.body ?? '{}') as never;

function meshObjects(extra: object[] = []): object[] {
  return [
    serviceObject('api', API_IP, PORTS, { app: 'api' }),
    sliceObject('api', PORTS, [api]),
    serviceObject('legacy', LEGACY_IP, PORTS.slice(0, 1), { app: 'legacy' }),
    sliceObject('legacy', PORTS.slice(0, 1), [legacy]),
    serviceObject('impostor', IMPOSTOR_IP, PORTS.slice(0, 1), { app: 'impostor' }),
    sliceObject('impostor', PORTS.slice(0, 1), [ghost]),
    ...[web, api, legacy, impostor, ghost].map(podObject),
    ...extra,
  ];
}

beforeAll(async () => {
  await prepareRig(['tcpdump']);
  rig = new MeshRig('mesh');
  await rig.start({
    'token-web': { namespace: 'default', serviceAccount: 'web' },
    'token-api': { namespace: 'default', serviceAccount: 'api' },
    // The impostor's agent gets a certificate for `impostor`; the mesh expects `api-ghost` there.
    'token-impostor': { namespace: 'default', serviceAccount: 'impostor' },
  });
  web = await rig.addPod({ name: 'web', ip: '10.77.0.11', meshed: true });
  api = await rig.addPod({ name: 'api', ip: '10.77.0.12', meshed: true });
  legacy = await rig.addPod({ name: 'legacy', ip: '10.77.0.13', meshed: false });
  outside = await rig.addPod({ name: 'outside', ip: '10.77.0.14', meshed: false });
  impostor = await rig.addPod({ name: 'impostor', ip: '10.77.0.15', meshed: true });
  rig.writeMesh('mesh.yaml', meshObjects());
  for (const name of ['web', 'api', 'impostor']) await rig.waitReady(name);
}, 180_000);

afterAll(async () => {
  await rig?.stop();
});

describe('a meshed Pod calls a Service', () => {
  it('reaches a ClusterIP that only the sidecar knows, with mutual TLS and the caller identity in XFCC', async () => {
    const answer = await httpFrom(web, `http://${API_IP}/hello?x=1`);
    expect(answer.status).toBe(200);
    const e = echoed(answer);
    expect(e.pod).toBe('api');
    expect(e.headers['x-forwarded-client-cert']).toBe(
      'By=spiffe://cluster.local/ns/default/sa/api;URI=spiffe://cluster.local/ns/default/sa/web',
    );
    expect(e.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(e.headers['x-mooring-peer']).toBeUndefined();
  });

  it('never passes a forged x-forwarded-client-cert on', async () => {
    const forged =
      'By=spiffe://cluster.local/ns/default/sa/api;URI=spiffe://cluster.local/ns/kube-system/sa/admin';
    const viaMesh = echoed(
      await httpFrom(web, `http://${API_IP}/`, { 'x-forwarded-client-cert': forged }),
    );
    expect(viaMesh.headers['x-forwarded-client-cert']).toContain(
      'URI=spiffe://cluster.local/ns/default/sa/web',
    );
    const plain = echoed(
      await httpFrom(legacy, `http://${api.spec.ip}:8080/`, { 'x-forwarded-client-cert': forged }),
    );
    expect(plain.headers['x-forwarded-client-cert']).toBeUndefined();
  });

  it('shows no plaintext between the sidecars on the wire', async () => {
    const marker = `secret-payload-${Date.now()}`;
    const capture = await rig.capture('api', ['tcp', 'and', 'host', api.spec.ip]);
    const answer = await httpFrom(
      web,
      `http://${API_IP}/${marker}`,
      { 'x-secret': marker },
      marker,
    );
    expect(echoed(answer).body).toBe(marker);
    const dump = { stdout: await capture.stop() };
    expect(dump.stdout).toContain(`${web.spec.ip}.`);
    expect(dump.stdout).toContain(`${api.spec.ip}.8080`);
    expect(dump.stdout).not.toContain(marker);
    expect(dump.stdout).not.toContain('x-forwarded-client-cert');
  });

  it('reaches a Pod outside the mesh in plain text, and a host in no Service through passthrough', async () => {
    const plain = await httpFrom(web, `http://${LEGACY_IP}/legacy`);
    expect(plain.status).toBe(200);
    expect(echoed(plain).pod).toBe('legacy');
    expect(echoed(plain).headers['x-forwarded-client-cert']).toBeUndefined();
    const through = await httpFrom(web, `http://${outside.spec.ip}:8080/outside`);
    expect(through.status).toBe(200);
    expect(echoed(through).pod).toBe('outside');
  });

  it('refuses an endpoint that answers with another identity than the mesh expects', async () => {
    const answer = await httpFrom(web, `http://${IMPOSTOR_IP}/`);
    expect(answer.status).toBe(503);
    expect(answer.body).toContain('upstream connect error');
  });
});

describe('other protocols through two sidecars', () => {
  const GRPC = `
const grpc = require('@grpc/grpc-js');
const json = { serialize: (v) => Buffer.from(JSON.stringify(v)), deserialize: (b) => JSON.parse(b.toString() || '{}') };
const m = (name, responseStream = false) => ({ path: '/mooring.e2e.Echo/' + name, requestStream: false, responseStream,
  requestSerialize: json.serialize, requestDeserialize: json.deserialize, responseSerialize: json.serialize, responseDeserialize: json.deserialize });
const Client = grpc.makeGenericClientConstructor({ echo: m('Echo'), fail: m('Fail'), count: m('Count', true) }, 'Echo');
const c = new Client(process.argv[1], grpc.credentials.createInsecure());
const out = {};
c.echo({ hi: 1 }, (err, r) => {
  out.echo = err ? { code: err.code } : r;
  c.fail({ code: 5, details: 'not here' }, (err2) => {
    out.fail = { code: err2.code, details: err2.details };
    const s = c.count({ n: 4 });
    out.count = [];
    s.on('data', (d) => out.count.push(d.i));
    s.on('end', () => { console.log(JSON.stringify(out)); c.close(); });
    s.on('error', (e) => { out.countError = e.code; console.log(JSON.stringify(out)); c.close(); });
  });
});`;

  it('carries gRPC: unary, an error status in the trailers, and server streaming', async () => {
    const out = JSON.parse(await rig.node('web', GRPC, [`${API_IP}:50051`], 40_000)) as {
      echo: { pod: string; metadata: Record<string, string> };
      fail: { code: number; details: string };
      count: number[];
    };
    expect(out.echo.pod).toBe('api');
    expect(out.echo.metadata['x-forwarded-client-cert']).toContain(
      'URI=spiffe://cluster.local/ns/default/sa/web',
    );
    expect(out.fail).toEqual({ code: 5, details: 'not here' });
    expect(out.count).toEqual([1, 2, 3, 4]);
  });

  const RAW = `
const net = require('net');
const [host, port, mode] = [process.argv[1], Number(process.argv[2]), process.argv[3]];
const s = net.connect({ host, port, allowHalfOpen: true });
let text = '';
const t0 = Date.now();
let greetedAt = null;
s.on('data', (d) => { text += d; if (greetedAt === null) greetedAt = Date.now() - t0;
  if (mode === 'greet' && text.includes('HELLO')) s.end(); });
s.on('end', () => { console.log(JSON.stringify({ text, greetedAt })); s.destroy(); });
s.on('error', (e) => console.log(JSON.stringify({ error: e.code })));
s.on('connect', () => {
  if (mode === 'half-close') { s.write('first '); s.end('second'); }
});
if (mode === 'greet') setTimeout(() => s.write('hello\\n'), 1500);`;

  it('keeps half-close on opaque TCP: the client ends its side and still gets the whole echo', async () => {
    const out = JSON.parse(await rig.node('web', RAW, [API_IP, '9000', 'half-close'])) as {
      text: string;
    };
    expect(out.text).toBe('first second');
  });

  it('a server-first protocol answers at once on a declared tcp port', async () => {
    const out = JSON.parse(await rig.node('web', RAW, [API_IP, '2525', 'greet'])) as {
      text: string;
      greetedAt: number;
    };
    expect(out.text).toBe('220 api ready\r\nHELLO\n');
    // The greeting came before the client said anything (it speaks after 1.5 s).
    expect(out.greetedAt).toBeLessThan(1500);
  });

  it('a server-first protocol works on an undeclared port after the detection wait', async () => {
    const out = JSON.parse(await rig.node('web', RAW, [API_IP, '2526', 'greet'])) as {
      text: string;
      greetedAt: number;
    };
    expect(out.text).toBe('220 api ready\r\nHELLO\n');
    expect(out.greetedAt).toBeLessThan(1500);
  });

  it('carries an upgraded connection (WebSocket-style) both ways', async () => {
    const UPGRADE = `
const net = require('net');
const s = net.connect(80, process.argv[1]);
s.write('GET /ws HTTP/1.1\\r\\nHost: api\\r\\nConnection: Upgrade\\r\\nUpgrade: websocket\\r\\n\\r\\n');
let text = '';
s.on('data', (d) => { text += d;
  if (text.includes('\\r\\n\\r\\n') && !text.includes('PING')) s.write('ping');
  if (text.includes('PING')) { console.log(JSON.stringify({ text })); s.destroy(); } });
s.on('error', (e) => console.log(JSON.stringify({ error: e.code })));`;
    const out = JSON.parse(await rig.node('web', UPGRADE, [API_IP])) as { text: string };
    expect(out.text).toMatch(/^HTTP\/1.1 101 /);
    expect(out.text).toContain('PING');
  });
});

describe('PeerAuthentication', () => {
  afterAll(() => rig.writeMesh('mesh.yaml', meshObjects()));

  it('PERMISSIVE (the default) takes plain text from outside the mesh; STRICT refuses it within a second and keeps mTLS', async () => {
    const plain = await httpFrom(legacy, `http://${api.spec.ip}:8080/plain`);
    expect(plain.status).toBe(200);
    rig.writeMesh(
      'mesh.yaml',
      meshObjects([peerAuthentication('strict', 'STRICT', 'default', { app: 'api' })]),
    );
    const start = Date.now();
    await rig.waitFor(
      'STRICT in force',
      async () => (await httpFrom(legacy, `http://${api.spec.ip}:8080/plain`)).error !== undefined,
      10_000,
    );
    expect(Date.now() - start).toBeLessThan(3_000);
    const refused = await httpFrom(legacy, `http://${api.spec.ip}:8080/plain`);
    expect(refused.error).toMatch(/ECONNRESET|socket hang up/);
    const meshed = await httpFrom(web, `http://${API_IP}/still`);
    expect(meshed.status).toBe(200);
  });
});

describe('ServiceEntry', () => {
  const STATIC_IP = '203.0.113.7';
  const entries = [
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'outside', namespace: 'default' },
      spec: {
        hosts: ['static.example.com'],
        addresses: [STATIC_IP],
        ports: [{ number: 80, name: 'http', protocol: 'HTTP', targetPort: 8080 }],
        resolution: 'STATIC',
        endpoints: [{ address: '10.77.0.14' }],
      },
    },
    {
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'by-host', namespace: 'default' },
      spec: {
        hosts: ['outside.example.com'],
        ports: [{ number: 8080, name: 'http', protocol: 'HTTP' }],
        resolution: 'NONE',
      },
    },
  ];
  afterAll(() => rig.writeMesh('mesh.yaml', meshObjects()));

  it("sends an address no network has to the entry's endpoint, and counts a Host the entry names as that host", async () => {
    rig.writeMesh('mesh.yaml', meshObjects(entries));
    // Before the push, a connection to the address is passed through (and goes nowhere).
    await rig.waitFor('the entries pushed', async () =>
      JSON.stringify((await rig.configDump('web')).mesh).includes('"static.example.com"'),
    );
    const answer = await httpFrom(web, `http://${STATIC_IP}/static`);
    expect(echoed(answer).pod).toBe('outside');
    const byHost = await httpFrom(web, `http://${outside.spec.ip}:8080/by-host`, {
      host: 'outside.example.com',
    });
    expect(echoed(byHost).pod).toBe('outside');
    const stats = await rig.stats('web');
    expect(stats).toMatch(
      /istio_requests_total\{reporter="source"[^}]*destination_service="static\.example\.com"[^}]*response_code="200"/,
    );
    expect(stats).toMatch(
      /istio_requests_total\{reporter="source"[^}]*destination_service="outside\.example\.com"[^}]*response_code="200"[^}]*\} 1\n/,
    );
  });
});

describe('locality', () => {
  const NEAR_IP = '10.96.10.4';
  const node = (name: string, zone: string): object => ({
    apiVersion: 'v1',
    kind: 'Node',
    metadata: {
      name,
      labels: { 'topology.kubernetes.io/region': 'r1', 'topology.kubernetes.io/zone': zone },
    },
  });
  /**
   * Service near (trafficDistribution PreferClose) over api and legacy; web on node-a (zone za),
   * api on node-b and legacy on node-c, in the zones given.
   */
  const localityObjects = (zoneB: string, zoneC: string): object[] =>
    meshObjects([
      serviceObject('near', NEAR_IP, PORTS.slice(0, 1), { tier: 'near' }),
      sliceObject('near', PORTS.slice(0, 1), [api, legacy]),
      node('node-a', 'za'),
      node('node-b', zoneB),
      node('node-c', zoneC),
    ]).map((o) => {
      const obj = o as { kind: string; metadata: { name: string }; spec: object };
      if (obj.kind === 'Service' && obj.metadata.name === 'near') {
        return { ...obj, spec: { ...obj.spec, trafficDistribution: 'PreferClose' } };
      }
      const nodeName = { web: 'node-a', api: 'node-b', legacy: 'node-c' }[obj.metadata.name];
      return obj.kind === 'Pod' && nodeName !== undefined
        ? { ...obj, spec: { ...obj.spec, nodeName } }
        : obj;
    });
  const answeredBy = async (n: number): Promise<Set<string>> => {
    const pods = new Set<string>();
    for (let i = 0; i < n; i++) {
      pods.add(echoed(await httpFrom(web, `http://${NEAR_IP}/near`)).pod);
    }
    return pods;
  };
  afterAll(() => rig.writeMesh('mesh.yaml', meshObjects()));

  it("keeps a PreferClose Service's traffic in the caller's zone, and follows its Nodes' labels", async () => {
    rig.writeMesh('mesh.yaml', localityObjects('za', 'zb'));
    await rig.waitFor('the localities pushed', async () => {
      const mesh = (await rig.configDump('web')).mesh as { proxy: { locality?: string } };
      return mesh.proxy.locality === 'r1/za/';
    });
    expect(await answeredBy(12)).toEqual(new Set(['api']));
    // The Nodes relabelled: legacy's is now in web's zone, api's not.
    rig.writeMesh('mesh.yaml', localityObjects('zb', 'za'));
    await rig.waitFor('the new zones pushed', async () => (await answeredBy(1)).has('legacy'));
    expect(await answeredBy(12)).toEqual(new Set(['legacy']));
  });
});

describe("a ServiceEntry's workloadSelector", () => {
  afterAll(() => rig.writeMesh('mesh.yaml', meshObjects()));

  it('sends its address to the Pods it selects, with mutual TLS and their identity', async () => {
    const SELECTED_IP = '203.0.113.8';
    rig.writeMesh(
      'mesh.yaml',
      meshObjects([
        {
          apiVersion: 'networking.istio.io/v1',
          kind: 'ServiceEntry',
          metadata: { name: 'selected', namespace: 'default' },
          spec: {
            hosts: ['selected.example.com'],
            addresses: [SELECTED_IP],
            ports: [{ number: 80, name: 'http', protocol: 'HTTP', targetPort: 8080 }],
            location: 'MESH_INTERNAL',
            resolution: 'STATIC',
            workloadSelector: { labels: { app: 'api' } },
          },
        },
      ]),
    );
    await rig.waitFor('the entry pushed', async () =>
      JSON.stringify((await rig.configDump('web')).mesh).includes('"selected.example.com"'),
    );
    const answer = await httpFrom(web, `http://${SELECTED_IP}/selected`);
    expect(echoed(answer).pod).toBe('api');
    // The api Pod's proxy saw the caller's identity: the hop was mutual TLS.
    expect(echoed(answer).headers['x-forwarded-client-cert']).toContain(
      'URI=spiffe://cluster.local/ns/default/sa/web',
    );
  });
});

describe('WorkloadEntry', () => {
  afterAll(() => rig.writeMesh('mesh.yaml', meshObjects()));

  it("is an endpoint of the Service whose selector its labels match: a workload outside Kubernetes' Pods", async () => {
    const VM_IP = '10.96.10.5';
    rig.writeMesh(
      'mesh.yaml',
      meshObjects([
        serviceObject('vm', VM_IP, PORTS.slice(0, 1), { app: 'vm' }),
        {
          apiVersion: 'networking.istio.io/v1',
          kind: 'WorkloadEntry',
          metadata: { name: 'vm-1', namespace: 'default' },
          // The legacy Pod stands in for a VM: no Pod object of the mesh is at this address.
          spec: { address: legacy.spec.ip, labels: { app: 'vm' } },
        },
      ]),
    );
    await rig.waitFor('the entry pushed', async () =>
      JSON.stringify((await rig.configDump('web')).mesh).includes('"vm-1"'),
    );
    expect(echoed(await httpFrom(web, `http://${VM_IP}/vm`)).pod).toBe('legacy');
  });
});

describe('AuthorizationPolicy', () => {
  afterAll(async () => {
    rig.writeMesh('mesh.yaml', meshObjects());
    await rig.waitFor(
      'the policy gone',
      async () => (await httpFrom(web, `http://${API_IP}/no`)).status === 200,
      10_000,
    );
  });

  it("lets through only what an ALLOW policy names, pushed from the mesh's files: the caller's principal and the path", async () => {
    rig.writeMesh(
      'mesh.yaml',
      meshObjects([
        {
          apiVersion: 'security.istio.io/v1',
          kind: 'AuthorizationPolicy',
          metadata: { name: 'api-from-web', namespace: 'default' },
          spec: {
            selector: { matchLabels: { app: 'api' } },
            rules: [
              {
                from: [{ source: { principals: ['*/ns/default/sa/web'] } }],
                to: [{ operation: { paths: ['/ok*'] } }],
              },
            ],
          },
        },
      ]),
    );
    await rig.waitFor(
      'the policy in force',
      async () => (await httpFrom(web, `http://${API_IP}/no`)).status === 403,
      10_000,
    );
    const denied = await httpFrom(web, `http://${API_IP}/no/ok`);
    expect(denied).toMatchObject({ status: 403, body: 'RBAC: access denied' });
    const ok = await httpFrom(web, `http://${API_IP}/ok/1`);
    expect(ok.status).toBe(200);
    // Plain text from outside the mesh has no principal.
    expect((await httpFrom(legacy, `http://${api.spec.ip}:8080/ok/1`)).status).toBe(403);
  });
});

describe('Sidecar', () => {
  afterAll(async () => {
    rig.writeMesh('mesh.yaml', meshObjects());
    await rig.waitFor(
      'the Sidecar gone',
      async () => (await httpFrom(web, `http://${LEGACY_IP}/back`)).status === 200,
      10_000,
    );
  });

  it("gives the namespace's proxies only the hosts its egress names, and closes the rest with REGISTRY_ONLY", async () => {
    rig.writeMesh(
      'mesh.yaml',
      meshObjects([
        {
          apiVersion: 'networking.istio.io/v1',
          kind: 'Sidecar',
          metadata: { name: 'default', namespace: 'default' },
          spec: {
            egress: [{ hosts: ['./api.default.svc.cluster.local'] }],
            outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' },
          },
        },
      ]),
    );
    await rig.waitFor('the Sidecar pushed', async () => {
      const mesh = (await rig.configDump('web')).mesh as { services: { key: string }[] };
      return mesh.services.map((s) => s.key).join(',') === 'default/api';
    });
    expect((await httpFrom(web, `http://${API_IP}/still`)).status).toBe(200);
    // Legacy's ClusterIP is no destination of web's mesh any more, nor is the outside Pod.
    expect((await httpFrom(web, `http://${LEGACY_IP}/gone`)).error).toMatch(
      /ECONNRESET|socket hang up/,
    );
    expect((await httpFrom(web, `http://${outside.spec.ip}:8080/closed`)).error).toMatch(
      /ECONNRESET|socket hang up/,
    );
  });
});

describe('Sidecar with a workloadSelector', () => {
  afterAll(() => rig.writeMesh('mesh.yaml', meshObjects()));

  it("gives the Pods it selects its own egress over the namespace's Sidecar", async () => {
    const sidecar = (name: string, spec: object): object => ({
      apiVersion: 'networking.istio.io/v1',
      kind: 'Sidecar',
      metadata: { name, namespace: 'default', creationTimestamp: '2026-01-01T00:00:00Z' },
      spec,
    });
    rig.writeMesh(
      'mesh.yaml',
      meshObjects([
        sidecar('default', { egress: [{ hosts: ['./api.default.svc.cluster.local'] }] }),
        sidecar('for-web', {
          workloadSelector: { labels: { app: 'web' } },
          egress: [{ hosts: ['./legacy.default.svc.cluster.local'] }],
        }),
      ]),
    );
    await rig.waitFor('the selecting Sidecar pushed', async () => {
      const mesh = (await rig.configDump('web')).mesh as { services: { key: string }[] };
      return mesh.services.map((s) => s.key).join(',') === 'default/legacy';
    });
    // web's proxy is given legacy (its Sidecar), not api (the namespace's): api's ClusterIP is
    // a destination it does not know (passthrough to an address no network has).
    expect(echoed(await httpFrom(web, `http://${LEGACY_IP}/mine`)).pod).toBe('legacy');
    expect((await rig.configDump('api')).mesh).toMatchObject({
      services: [expect.objectContaining({ key: 'default/api' })],
    });
  });
});

describe('RequestAuthentication', () => {
  const ISS = 'https://issuer.example.com';
  const issuer = testIssuer('ES256');
  const JWKS_PORT = 18080;
  afterAll(async () => {
    rig.writeMesh('mesh.yaml', meshObjects());
    await rig.waitFor(
      'the policies gone',
      async () => (await httpFrom(web, `http://${API_IP}/no`)).status === 200,
      10_000,
    );
  });

  it('the server fetches the jwksUri and pushes the keys: a valid token passes, a forged one gets 401, none 403', async () => {
    // The issuer's keys, served where the server runs (its network namespace).
    rig.spawnLogged(
      [
        'ip',
        'netns',
        'exec',
        rig.hub,
        NODE,
        '-e',
        `require('http').createServer((q, r) => r.end(process.argv[1])).listen(${JWKS_PORT}, '127.0.0.1')`,
        issuer.jwks,
      ],
      () => {},
    );
    // Listening before the policy is written: a first fetch that fails is retried a minute later.
    await rig.waitFor('the keys served', async () => {
      const probe = await run('ip', [
        'netns',
        'exec',
        rig.hub,
        NODE,
        '-e',
        `require('http').get('http://127.0.0.1:${JWKS_PORT}/keys', (r) => process.exit(r.statusCode === 200 ? 0 : 1)).on('error', () => process.exit(1))`,
      ]);
      return probe.code === 0;
    });
    rig.writeMesh(
      'mesh.yaml',
      meshObjects([
        {
          apiVersion: 'security.istio.io/v1',
          kind: 'RequestAuthentication',
          metadata: { name: 'api-jwt', namespace: 'default' },
          spec: {
            selector: { matchLabels: { app: 'api' } },
            jwtRules: [{ issuer: ISS, jwksUri: `http://127.0.0.1:${JWKS_PORT}/keys` }],
          },
        },
        {
          apiVersion: 'security.istio.io/v1',
          kind: 'AuthorizationPolicy',
          metadata: { name: 'api-needs-jwt', namespace: 'default' },
          spec: {
            selector: { matchLabels: { app: 'api' } },
            rules: [{ from: [{ source: { requestPrincipals: [`${ISS}/*`] } }] }],
          },
        },
      ]),
    );
    await rig.waitFor(
      'the keys fetched and pushed',
      async () => {
        const mesh = (await rig.configDump('api')).mesh as {
          proxy: { inbound: { jwt?: { jwks: string | null }[] } };
        };
        return mesh.proxy.inbound.jwt?.[0]?.jwks === issuer.jwks;
      },
      15_000,
    );
    const token = issuer.token({ iss: ISS, sub: 'alice', exp: nowS() + 600 });
    const ok = await httpFrom(web, `http://${API_IP}/jwt`, { authorization: `Bearer ${token}` });
    expect(ok.status).toBe(200);
    // The token is not passed on to the app.
    expect(echoed(ok).headers.authorization).toBeUndefined();
    const forged = testIssuer('ES256', issuer.kid).token({ iss: ISS, sub: 'alice' });
    expect(
      await httpFrom(web, `http://${API_IP}/jwt`, { authorization: `Bearer ${forged}` }),
    ).toMatchObject({ status: 401, body: 'Jwt verification fails' });
    expect(await httpFrom(web, `http://${API_IP}/jwt`)).toMatchObject({
      status: 403,
      body: 'RBAC: access denied',
    });
  });
});

describe('metrics', () => {
  it('counts known traffic on both sides with Istio labels', async () => {
    const count = (text: string, re: RegExp): number =>
      [...text.matchAll(re)].reduce((sum, m) => sum + Number(m[1]), 0);
    const SOURCE =
      /istio_requests_total\{reporter="source",source_workload="web".*destination_workload="api".*destination_service="api\.default\.svc\.cluster\.local".*connection_security_policy="mutual_tls",request_protocol="http",response_code="200".*\} (\d+)/g;
    const DEST =
      /istio_requests_total\{reporter="destination",source_workload="web".*source_principal="spiffe:\/\/cluster\.local\/ns\/default\/sa\/web".*destination_workload="api".*connection_security_policy="mutual_tls",request_protocol="http",response_code="200".*\} (\d+)/g;
    const before = [count(await rig.stats('web'), SOURCE), count(await rig.stats('api'), DEST)];
    for (let i = 0; i < 7; i++)
      expect((await httpFrom(web, `http://${API_IP}/m`)).status).toBe(200);
    const after = [count(await rig.stats('web'), SOURCE), count(await rig.stats('api'), DEST)];
    expect(after[0]! - before[0]!).toBe(7);
    expect(after[1]! - before[1]!).toBe(7);
  });
});

describe('the proxy under the app', () => {
  it('runs as UID 1337 with no capability, and shows its configuration on 127.0.0.1:15000', async () => {
    const pid = web.agent?.pid;
    const status = (await run('cat', [`/proc/${pid}/status`])).stdout;
    expect(status).toMatch(/^Uid:\s+1337\s+1337\s+1337\s+1337$/m);
    expect(status).toMatch(/^CapEff:\s+0+$/m);
    const dump = (await rig.configDump('web')) as {
      source: string;
      ready: boolean;
      mesh: { services: { key: string }[] };
      tls: { spiffeId: string };
    };
    expect(dump.source).toBe('proxy');
    expect(dump.ready).toBe(true);
    expect(dump.tls.spiffeId).toBe('spiffe://cluster.local/ns/default/sa/web');
    expect(dump.mesh.services.map((s) => s.key)).toEqual(
      expect.arrayContaining(['default/api', 'default/legacy']),
    );
    // Where its memory is, with the C heap trimmer of the real addon watching it, and the
    // proxy's small Buffer slabs.
    const memory = (await rig.memory('web')) as {
      rss: number;
      heapUsed: number;
      bufferPoolBytes: number;
      cHeapFreeBytes: number | null;
      trim: { trims: number; baselineBytes: number } | null;
    };
    expect(memory.heapUsed).toBeGreaterThan(0);
    expect(memory.trim?.baselineBytes).toBeGreaterThan(memory.heapUsed);
    expect(memory.trim?.baselineBytes).toBeLessThanOrEqual(memory.rss * 2);
    expect(memory.bufferPoolBytes).toBe(PROXY_BUFFER_POOL_BYTES);
    expect(memory.cHeapFreeBytes).toBeGreaterThan(0);
    expect(memory.cHeapFreeBytes).toBeLessThan(memory.rss);
    // 10 s after it listens, the proxy (UID 1337, no capability) drops the pages of Node's
    // binary only its start used; the tests after this one go through it.
    let cold: { mappings: number; droppedBytes: number; failed: number } | null = null;
    await rig.waitFor(
      'the pages only the start used dropped',
      async () => {
        cold = ((await rig.memory('web')) as { coldPages: typeof cold }).coldPages;
        return cold !== null;
      },
      20_000,
    );
    expect(cold).toMatchObject({ failed: 0 });
    expect(cold!.droppedBytes).toBeGreaterThan(10 * 1024 * 1024);
    // Not reachable from another Pod.
    expect(
      (
        await rig.exec(
          legacy.ns,
          ['curl', '-sf', '--max-time', '2', `http://${web.spec.ip}:15000/config_dump`],
          APP_USER,
        )
      ).code,
    ).not.toBe(0);
  });

  it('refuses a quit request (POST :15020/quitquitquit) from another Pod, and keeps running', async () => {
    const out = await rig.exec(
      legacy.ns,
      [
        'curl',
        '-s',
        '-o',
        '/dev/null',
        '-w',
        '%{http_code}',
        '--max-time',
        '2',
        '-X',
        'POST',
      ].concat(`http://${web.spec.ip}:15020/quitquitquit`),
      APP_USER,
    );
    expect(out.stdout).toBe('403');
    await new Promise((r) => setTimeout(r, 300));
    expect(web.agent?.exitCode).toBeNull();
    expect((await httpFrom(web, `http://${API_IP}/after-quit`)).status).toBe(200);
  });
});

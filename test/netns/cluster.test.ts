// Cluster mode end to end (root: `make netns`): a real kube-apiserver and etcd (the e2e harness),
// `mooring serve --kubeconfig` in the hub namespace, agents as UID 1337 in Pods' namespaces with
// the rules of `mooring iptables`, their tokens from TokenRequest bound to their Pod objects, their
// trust bundle from the mooring-ca-root-cert ConfigMap. Services, EndpointSlices and Pods created
// in the apiserver reach the agents, which route to them. No kubelet or controller runs: Pod IPs
// and EndpointSlices are written by hand, as they would.
//
//   web  10.77.0.31  meshed, the client
//   api  10.77.0.32  meshed, behind Service api (ClusterIP 10.96.0.50)
//   api2 10.77.0.33  meshed, the endpoint that replaces api

import { startControlPlane, type ControlPlane } from '../e2e/harness/control-plane';
import { createNamespace, createObject, createServiceAccount, kubectl } from '../e2e/harness/kube';
import { suffix, testConfig, tokenFor } from '../e2e/support/mooring';
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

const MOORING_NS = `mooring-${suffix()}`;
const NS = `shop-${suffix()}`;
const API_IP = '10.96.0.50';
const PORTS: PortSpec[] = [{ name: 'http', port: 80, targetPort: 8080 }];

let cp: ControlPlane;
let rig: MeshRig;

/** Creates the Pod object (its IP written as the kubelet would), then its agent and app. */
async function meshedPod(name: string, ip: string, serviceAccount: string): Promise<Pod> {
  const spec = { name, ip, meshed: true, namespace: NS, serviceAccount };
  const object = podObject({ spec, namespace: NS, serviceAccount } as Pod);
  const created = (await createObject(cp, object)) as { metadata: { uid: string } };
  await kubectl(cp, [
    ...['patch', 'pod', name, '-n', NS, '--subresource=status', '--type=merge', '-p'],
    JSON.stringify({ status: { podIP: ip, podIPs: [{ ip }] } }),
  ]);
  const token = await tokenFor(cp, NS, serviceAccount, {
    audience: 'mooring-ca',
    pod: { name, uid: created.metadata.uid },
  });
  return rig.addPod({ ...spec, token });
}

async function applySlice(pods: readonly Pod[]): Promise<void> {
  await kubectl(cp, ['apply', '-f', '-'], JSON.stringify(sliceObject('api', PORTS, pods, NS)));
}

const CALL = `
const http = require('http');
http.get(process.argv[1], { agent: false }, (res) => {
  let text = '';
  res.on('data', (d) => (text += d));
  res.on('end', () => console.log(JSON.stringify({ status: res.statusCode, body: text })));
}).on('error', (e) => console.log(JSON.stringify({ error: e.message })));`;

async function call(path: string): Promise<{ status?: number; pod?: string; xfcc?: string }> {
  const answer = JSON.parse(await rig.node('web', CALL, [`http://${API_IP}${path}`])) as {
    status?: number;
    body?: string;
  };
  let body: { pod?: string; headers?: Record<string, string> };
  try {
    body = JSON.parse(answer.body ?? '{}') as typeof body;
  } catch {
    // A local reply of web's sidecar (503 and its text): say what the mesh looked like then.
    const dump = await rig.configDump('web').catch((e: Error) => e.message);
    throw new Error(
      `${path}: ${answer.status} ${answer.body}\n--- web's configuration ---\n${JSON.stringify(dump).slice(0, 4000)}\n--- server log ---\n${rig.serverLog.slice(-4000)}\n--- web's agent ---\n${rig.pod('web').logs.agent.slice(-3000)}`,
    );
  }
  return { status: answer.status, pod: body.pod, xfcc: body.headers?.['x-forwarded-client-cert'] };
}

beforeAll(async () => {
  await prepareRig([]);
  cp = await startControlPlane();
  await createNamespace(cp, MOORING_NS);
  await createNamespace(cp, NS);
  for (const sa of ['web', 'api']) await createServiceAccount(cp, NS, sa);
  rig = new MeshRig('cluster');
  await rig.startCluster({
    apiPort: Number(new URL(cp.server).port),
    kubeconfig: cp.kubeconfigPath,
    config: testConfig(MOORING_NS),
    namespace: MOORING_NS,
    // The ConfigMap the server keeps in every namespace, which the kubelet would mount.
    bundle: async () => {
      for (let i = 0; i < 100; i++) {
        const pem = await kubectl(cp, [
          ...['get', 'configmap', 'mooring-ca-root-cert', '-n', NS],
          ...['-o', 'jsonpath={.data.root-cert\\.pem}', '--ignore-not-found'],
        ]);
        if (pem.includes('BEGIN CERTIFICATE')) return pem;
        await new Promise((r) => setTimeout(r, 200));
      }
      throw new Error(`no mooring-ca-root-cert in ${NS}`);
    },
  });
  await createObject(cp, serviceObject('api', API_IP, PORTS, { app: 'api' }, NS));
  await meshedPod('web', '10.77.0.31', 'web');
  const api = await meshedPod('api', '10.77.0.32', 'api');
  await applySlice([api]);
  await rig.waitReady('web');
  await rig.waitReady('api');
  // Readiness needs a first configuration, which may be one from before the EndpointSlice (the
  // server pushes changes after a short debounce): the test starts once web knows api's endpoint.
  const deadline = Date.now() + 20_000;
  for (;;) {
    const dump = (await rig.configDump('web')) as {
      mesh?: { services?: { key: string; endpoints: unknown[] }[] };
    };
    const apiService = dump.mesh?.services?.find((svc) => svc.key === `${NS}/api`);
    if ((apiService?.endpoints.length ?? 0) > 0) break;
    if (Date.now() > deadline)
      throw new Error(`web never saw api's endpoint: ${JSON.stringify(dump)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}, 240_000);

afterAll(async () => {
  await rig?.stop();
  await cp?.stop();
}, 60_000);

describe('cluster mode', () => {
  it('routes a Service created in the apiserver, with mutual TLS and the identities of the service accounts', async () => {
    const first = await call('/hello');
    expect(first).toEqual({
      status: 200,
      pod: 'api',
      xfcc: `By=spiffe://cluster.local/ns/${NS}/sa/api;URI=spiffe://cluster.local/ns/${NS}/sa/web`,
    });
  });

  it('moves to a new endpoint as soon as its EndpointSlice changes', async () => {
    const api2 = await meshedPod('api2', '10.77.0.33', 'api');
    await rig.waitReady('api2');
    expect((await call('/before')).pod).toBe('api');
    await applySlice([api2]);
    const changed = Date.now();
    let answer = await call('/after');
    while (answer.pod !== 'api2' && Date.now() - changed < 20_000) {
      await new Promise((r) => setTimeout(r, 50));
      answer = await call('/after');
    }
    const tookMs = Date.now() - changed;
    // The push's latency is measured by bench/mesh-push.ts; this is the path end to end.
    console.log(`EndpointSlice applied -> web's sidecar routes to api2: ${tookMs} ms`);
    expect(answer).toMatchObject({ status: 200, pod: 'api2' });
    // Every request since goes there: the old endpoint is gone from web's configuration.
    for (let i = 0; i < 5; i++) expect((await call(`/again-${i}`)).pod).toBe('api2');
  });
});

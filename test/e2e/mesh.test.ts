// Cluster mode's mesh against a real kube-apiserver: `mooring serve --kubeconfig` watches
// Services, EndpointSlices and Pods; a mesh client (the agent's, in this process) authenticated
// with a TokenRequest token bound to its Pod gets them as they are created; refusals for another
// service account or audience; PeerAuthentication off while its CRD is missing (one log line),
// on once the CRD is installed; an AuthorizationPolicy in the apiserver reaches the client's
// scope, stands in closed while it is invalid, and leaves with its deletion. No controller runs
// here: EndpointSlices are created by hand, as the EndpointSlice controller would.
import * as fs from 'node:fs';
import type { MeshClient } from '../../src/agent/mesh-client';
import { openWatch } from '../fixtures/mesh-stream';
import { startControlPlane, type ControlPlane } from './harness/control-plane';
import { waitForCrds } from './harness/crds';
import { createNamespace, createObject, createServiceAccount, kubectl } from './harness/kube';
import { meshClients, stateWhere } from './support/mesh-client';
import {
  request,
  startMooring,
  suffix,
  tokenFor,
  waitFor,
  type MooringServer,
} from './support/mooring';

const MOORING_NS = `mooring-${suffix()}`;
const NS = `shop-${suffix()}`;

let cp: ControlPlane;
let mooring: MooringServer;
let bundle: string[];

const meshedPod = (name: string, serviceAccount: string, app: string) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: {
    name,
    namespace: NS,
    labels: { app },
    annotations: { 'mooring.dev/status': '{"containers":["mooring-proxy"]}' },
  },
  spec: {
    serviceAccountName: serviceAccount,
    containers: [
      {
        name: 'app',
        image: 'registry.invalid/app:1',
        ports: [{ containerPort: 8080, name: 'http' }],
      },
    ],
  },
});

const serviceOf = (name: string, app: string) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: NS },
  spec: { selector: { app }, ports: [{ name: 'http', port: 80, targetPort: 'http' }] },
});

const sliceOf = (service: string, address: string, podName: string) => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: {
    name: `${service}-1`,
    namespace: NS,
    labels: { 'kubernetes.io/service-name': service },
  },
  addressType: 'IPv4',
  endpoints: [
    {
      addresses: [address],
      conditions: { ready: true },
      targetRef: { kind: 'Pod', name: podName, namespace: NS },
    },
  ],
  ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
});

const clients = meshClients(
  () => cp,
  () => mooring,
  () => bundle,
  NS,
);
const meshClient = (podName: string, serviceAccount: string, uid: string): Promise<MeshClient> =>
  clients.client(podName, serviceAccount, uid);

beforeAll(async () => {
  cp = await startControlPlane();
  await createNamespace(cp, MOORING_NS);
  await createNamespace(cp, NS);
  await createServiceAccount(cp, NS, 'web');
  await createServiceAccount(cp, NS, 'api');
  mooring = await startMooring(cp, { namespace: MOORING_NS });
  bundle = await mooring.trustBundle();
}, 120_000);

afterAll(async () => {
  await clients.stopAll();
  await mooring?.stop();
  await cp?.stop();
}, 60_000);

/** A security.istio.io CRD (v1 and v1beta1, any spec), installed and served. */
async function installIstioCrd(kind: string, plural: string): Promise<void> {
  const schema = {
    openAPIV3Schema: {
      type: 'object',
      properties: { spec: { type: 'object', 'x-kubernetes-preserve-unknown-fields': true } },
    },
  };
  await createObject(cp, {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${plural}.security.istio.io` },
    spec: {
      group: 'security.istio.io',
      names: { kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase() },
      scope: 'Namespaced',
      versions: [
        { name: 'v1', served: true, storage: true, schema },
        { name: 'v1beta1', served: true, storage: false, schema },
      ],
    },
  });
  await waitForCrds(cp, [`${plural}.security.istio.io`], 60_000);
}

describe('the mesh in cluster mode', () => {
  let client: MeshClient;

  it('gives a meshed Pod its scope, with the identity of its service account', async () => {
    const created = (await createObject(cp, meshedPod('web-1', 'web', 'web'))) as {
      metadata: { uid: string };
    };
    client = await meshClient('web-1', 'web', created.metadata.uid);
    const state = await client.firstState;
    expect(state.proxy).toMatchObject({
      identity: `spiffe://cluster.local/ns/${NS}/sa/web`,
      workload: { name: 'web-1', namespace: NS, app: 'web' },
      inbound: { mtlsMode: 'PERMISSIVE', source: 'mesh.mtlsMode' },
    });
  }, 60_000);

  it('brings a Service, its EndpointSlice and its Pod created in the apiserver to the mesh client', async () => {
    const api = (await createObject(cp, meshedPod('api-1', 'api', 'api'))) as {
      metadata: { uid: string };
    };
    expect(api.metadata.uid).not.toBe('');
    await createObject(cp, serviceOf('api', 'api'));
    await createObject(cp, sliceOf('api', '10.0.0.7', 'api-1'));
    const latencyMs = await stateWhere(
      client,
      (s) => s.services.get(`${NS}/api`)?.endpoints.length === 1,
    );
    const api1 = client.state()?.services.get(`${NS}/api`);
    expect(api1).toMatchObject({
      hostname: `api.${NS}.svc.cluster.local`,
      ports: [{ port: 80, name: 'http', protocol: 'http' }],
      endpoints: [
        {
          address: '10.0.0.7',
          ports: { '80': 8080 },
          identity: `spiffe://cluster.local/ns/${NS}/sa/api`,
          workload: { name: 'api-1' },
        },
      ],
    });
    expect(api1?.addresses[0]).toMatch(/^10\.96\.0\.\d+$/);
    console.log(`EndpointSlice created -> mesh client: ${Math.round(latencyMs)} ms`);

    // One more endpoint: a change of the slice alone, timed from the end of kubectl.
    await kubectl(
      cp,
      ['apply', '-f', '-'],
      JSON.stringify({ ...sliceOf('api', '10.0.0.8', 'api-1') }),
    );
    const changeMs = await stateWhere(
      client,
      (s) => s.services.get(`${NS}/api`)?.endpoints[0]?.address === '10.0.0.8',
    );
    console.log(`EndpointSlice changed -> mesh client: ${Math.round(changeMs)} ms`);
    // The push's own measure: from the apiserver's event to the delta written.
    expect(
      await mooring.metric('mooring_mesh_messages_total', { type: 'delta' }),
    ).toBeGreaterThanOrEqual(2);

    // Its Pod's own scope: the inbound port, from the Service's named targetPort.
    const apiClient = await meshClient('api-1', 'api', api.metadata.uid);
    expect((await apiClient.firstState).proxy.inbound.ports).toEqual([
      { port: 8080, protocol: 'http' },
    ]);
  }, 60_000);

  it('refuses a token of another service account, and one for another audience', async () => {
    const uid = (
      await kubectl(cp, ['get', 'pod', 'web-1', '-n', NS, '-o', 'jsonpath={.metadata.uid}'])
    ).trim();
    const webToken = await tokenFor(cp, NS, 'web', {
      audience: 'mooring-ca',
      pod: { name: 'web-1', uid },
    });
    const otherPod = await openWatch({
      port: mooring.port,
      ca: bundle,
      token: webToken,
      query: { pod: 'api-1', namespace: NS },
    });
    expect({ status: otherPod.status, code: otherPod.error?.code }).toEqual({
      status: 403,
      code: 'MESH_ERR_FORBIDDEN',
    });
    const vault = await tokenFor(cp, NS, 'web', { audience: 'vault' });
    const wrongAudience = await openWatch({
      port: mooring.port,
      ca: bundle,
      token: vault,
      query: { pod: 'web-1', namespace: NS },
    });
    expect({ status: wrongAudience.status, code: wrongAudience.error?.code }).toEqual({
      status: 401,
      code: 'CA_ERR_UNAUTHENTICATED',
    });
  }, 30_000);

  it('has PeerAuthentication off with one log line while its CRD is missing, and applies it once the CRD is installed', async () => {
    const offLines = () =>
      fs
        .readFileSync(mooring.logPath, 'utf8')
        .split('\n')
        .filter((l) => l.includes('PeerAuthentication is off'));
    expect(offLines()).toHaveLength(1);
    await installIstioCrd('PeerAuthentication', 'peerauthentications');
    await createObject(cp, {
      apiVersion: 'security.istio.io/v1',
      kind: 'PeerAuthentication',
      metadata: { name: 'strict', namespace: NS },
      spec: { mtls: { mode: 'STRICT' } },
    });
    // The CRD is looked for every 30 s.
    await stateWhere(client, (s) => s.proxy.inbound.mtlsMode === 'STRICT', 60_000);
    expect(client.state()?.proxy.inbound.source).toBe(
      `PeerAuthentication ${NS}/strict (namespace)`,
    );
    await waitFor('the "on" line', () =>
      Promise.resolve(
        fs.readFileSync(mooring.logPath, 'utf8').includes('PeerAuthentication is on')
          ? true
          : undefined,
      ),
    );
    expect(offLines()).toHaveLength(1);
  }, 90_000);

  it('brings an AuthorizationPolicy to the scope, closed while it is invalid, and takes it away when deleted', async () => {
    await installIstioCrd('AuthorizationPolicy', 'authorizationpolicies');
    const policy = (paths: string[]) => ({
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'deny-admin', namespace: NS },
      spec: {
        selector: { matchLabels: { app: 'web' } },
        action: 'DENY',
        rules: [{ to: [{ operation: { paths, methods: ['POST'] } }] }],
      },
    });
    const name = `${NS}/deny-admin`;
    const authorization = () => client.state()?.proxy.inbound.authorization;
    await createObject(cp, policy(['/admin*']));
    // The CRD is looked for every 30 s.
    await stateWhere(client, (s) => s.proxy.inbound.authorization !== undefined, 60_000);
    expect(authorization()).toEqual([
      { name, action: 'DENY', rules: [{ to: [{ methods: ['POST'], paths: ['/admin*'] }] }] },
    ]);

    // A path template Mooring cannot match: the policy denies every request of web-1 instead.
    await kubectl(cp, ['apply', '-f', '-'], JSON.stringify(policy(['/admin/{*}'])));
    await stateWhere(
      client,
      (s) => JSON.stringify(s.proxy.inbound.authorization?.[0]?.rules) === '[{}]',
    );
    expect(authorization()).toEqual([{ name, action: 'DENY', rules: [{}] }]);
    const objects = JSON.parse((await request(`${mooring.adminUrl}/debug/mesh/objects`)).body) as {
      problems: { kind: string; name: string; field: string; effect: string }[];
    };
    expect(objects.problems.filter((p) => p.kind === 'AuthorizationPolicy')).toEqual([
      expect.objectContaining({
        name: 'deny-admin',
        field: 'spec.rules[0].to[0].operation.paths[0]',
        effect: 'fail-closed',
      }),
    ]);

    await kubectl(cp, ['delete', 'authorizationpolicy', 'deny-admin', '-n', NS]);
    await stateWhere(client, (s) => s.proxy.inbound.authorization === undefined);
    expect(authorization()).toBeUndefined();
  }, 90_000);
});

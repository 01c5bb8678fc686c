// Traffic management in cluster mode against a real kube-apiserver: Istio's CRDs (istio.io/api
// v1.32.0) and the Gateway API's (sigs.k8s.io/gateway-api v1.6.3, standard then experimental
// channel), fetched through the Go module proxy by test/e2e/harness/fetch-crds.sh; the standard
// ones installed from the chart (crds.install: the chart's copies, test/chart/crds.test.ts keeps
// them equal to upstream); the seed examples (examples/traffic) applied verbatim with kubectl
// reach a proxy's mesh client; an invalid object is reported and skipped while the rest keeps
// working; the chart's ValidatingWebhookConfiguration makes kubectl refuse it. TCPRoute is read at
// v1alpha2, which only the experimental channel's CRD serves: its test installs that one. A
// ServiceEntry (the chart's CRD) reaches a proxy as a service of its host, a RequestAuthentication
// the scope of the proxies it selects, a namespace's Sidecar the services its proxies are given,
// the root namespace's and a namespace's Telemetry the tracing, access log and metrics of their
// proxies' scope (the server's config dump, and pushed), a WorkloadEntry an endpoint of the
// Services of its namespace that select its labels (the config dump, and pushed).
// A Node's topology labels are the locality of the Pods on it: in their proxies' scope and their
// endpoints (the server's config dump, and pushed), followed when the Node is relabelled.
import { generateKeyPairSync } from 'node:crypto';
import * as fs from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import type { MeshClient } from '../../src/agent/mesh-client';
import type { MeshConfigDump, ProxyScope } from '../../src/api/mesh';
import { CHART_DIR, parseObjects, runHelm } from '../chart/helm';
import { startControlPlane, type ControlPlane } from './harness/control-plane';
import { waitForCrds } from './harness/crds';
import {
  createNamespace,
  createObject,
  createServiceAccount,
  kubectl,
  kubectlJson,
} from './harness/kube';
import { meshClients, stateWhere } from './support/mesh-client';
import { request, startMooring, suffix, waitFor, type MooringServer } from './support/mooring';

const ROOT = path.join(__dirname, '../..');
const CRDS = path.join(ROOT, '.cache/crds');
const EXAMPLES = path.join(ROOT, 'examples/traffic');
const MOORING_NS = `mooring-${suffix()}`;
const NS = `bookinfo-${suffix()}`;

let cp: ControlPlane;
let mooring: MooringServer;
let bundle: string[];
const clients = meshClients(
  () => cp,
  () => mooring,
  () => bundle,
  NS,
);
let client: MeshClient;

const podOf = (name: string, labels: Record<string, string>) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: {
    name,
    namespace: NS,
    labels,
    annotations: { 'mooring.dev/status': '{"containers":["mooring-proxy"]}' },
  },
  spec: {
    serviceAccountName: 'bookinfo',
    containers: [
      {
        name: 'app',
        image: 'registry.invalid/app:1',
        ports: [{ containerPort: 9080, name: 'http' }],
      },
    ],
  },
});

const serviceOf = (name: string, selector: Record<string, string>) => ({
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name, namespace: NS },
  spec: { selector, ports: [{ name: 'http', port: 9080, targetPort: 'http' }] },
});

/** The EndpointSlice the controller would write (no controller runs here). */
const sliceOf = (service: string, endpoints: [address: string, pod: string][]) => ({
  apiVersion: 'discovery.k8s.io/v1',
  kind: 'EndpointSlice',
  metadata: {
    name: `${service}-1`,
    namespace: NS,
    labels: { 'kubernetes.io/service-name': service },
  },
  addressType: 'IPv4',
  endpoints: endpoints.map(([address, pod]) => ({
    addresses: [address],
    conditions: { ready: true },
    targetRef: { kind: 'Pod', name: pod, namespace: NS },
  })),
  ports: [{ name: 'http', port: 9080, protocol: 'TCP' }],
});

/** `kubectl apply --server-side` of files (Istio's CRDs are too large for client-side apply). */
const applyFiles = (files: string[], namespace?: string): Promise<string> =>
  kubectl(cp, [
    'apply',
    '--server-side',
    '--force-conflicts',
    ...(namespace === undefined ? [] : ['-n', namespace]),
    ...files.flatMap((f) => ['-f', f]),
  ]);

/** `helm template` of one template of the chart, with these `--set` values. */
async function chartTemplate(template: string, set: readonly string[] = []): Promise<string> {
  const result = await runHelm([
    ...['template', 'mooring', CHART_DIR, '--namespace', MOORING_NS],
    ...['--show-only', template, ...set.flatMap((v) => ['--set', v])],
  ]);
  if (result.code !== 0) throw new Error(`helm template ${template}: ${result.stderr}`);
  return result.stdout;
}

/** `kubectl apply` of one object into the test namespace. */
const applyObject = (object: object): Promise<string> =>
  kubectl(cp, ['apply', '-n', NS, '-f', '-'], JSON.stringify(object));

const service = (name: string) => client.state()?.services.get(`${NS}/${name}`);

/** What the server would push to Pod `name` of NS (its admin port's config dump). */
const configDump = async (name: string): Promise<MeshConfigDump | undefined> => {
  const answer = await request(`${mooring.adminUrl}/debug/mesh/config_dump?pod=${NS}/${name}`);
  if (answer.status !== 200) return undefined;
  return (JSON.parse(answer.body) as { mesh: MeshConfigDump }).mesh;
};

beforeAll(async () => {
  if (!fs.existsSync(path.join(CRDS, 'istio.yaml'))) {
    throw new Error(
      'no CRDs in .cache/crds: run `bash test/e2e/harness/fetch-crds.sh` (make crds)',
    );
  }
  cp = await startControlPlane();
  // The CRDs as the chart installs them (crds.install: Istio's VirtualService, DestinationRule,
  // ServiceEntry, Sidecar, WorkloadEntry, PeerAuthentication, AuthorizationPolicy,
  // RequestAuthentication, Telemetry and the Gateway API's standard channel): a CRD the template
  // breaks fails here. Server-side: Istio's are too large for client-side apply.
  const crds = await chartTemplate('charts/crds/templates/crds.yaml', ['crds.install=true']);
  await kubectl(cp, ['apply', '--server-side', '-f', '-'], crds);
  await waitForCrds(cp, [
    'virtualservices.networking.istio.io',
    'destinationrules.networking.istio.io',
    'serviceentries.networking.istio.io',
    'sidecars.networking.istio.io',
    'workloadentries.networking.istio.io',
    'peerauthentications.security.istio.io',
    'authorizationpolicies.security.istio.io',
    'requestauthentications.security.istio.io',
    'telemetries.telemetry.istio.io',
    'httproutes.gateway.networking.k8s.io',
    'grpcroutes.gateway.networking.k8s.io',
    'tlsroutes.gateway.networking.k8s.io',
  ]);
  await createNamespace(cp, MOORING_NS);
  await createNamespace(cp, NS);
  await createServiceAccount(cp, NS, 'bookinfo');
  mooring = await startMooring(cp, { namespace: MOORING_NS });
  bundle = await mooring.trustBundle();
  const created = (await createObject(cp, podOf('productpage-1', { app: 'productpage' }))) as {
    metadata: { uid: string };
  };
  client = await clients.client('productpage-1', 'bookinfo', created.metadata.uid);
  await client.firstState;
}, 240_000);

afterAll(async () => {
  await clients.stopAll();
  await mooring?.stop();
  await cp?.stop();
}, 60_000);

describe('traffic management in cluster mode, with the real CRDs', () => {
  it('watches the kinds whose CRDs are installed', () => {
    const log = fs.readFileSync(mooring.logPath, 'utf8');
    for (const kind of [
      'VirtualService',
      'DestinationRule',
      'ServiceEntry',
      'Sidecar',
      'WorkloadEntry',
      'PeerAuthentication',
      'AuthorizationPolicy',
      'RequestAuthentication',
      'Telemetry',
      'HTTPRoute',
      'GRPCRoute',
      'TLSRoute',
    ]) {
      expect(log).toContain(`"${kind} is on"`);
    }
  });

  it('brings the seed canary (95/5 between subsets v1 and v2), applied with kubectl as written, to a proxy', async () => {
    for (const version of ['v1', 'v2', 'v3']) {
      await createObject(cp, podOf(`reviews-${version}`, { app: 'reviews', version }));
    }
    await createObject(cp, serviceOf('reviews', { app: 'reviews' }));
    await createObject(
      cp,
      sliceOf('reviews', [
        ['10.1.0.1', 'reviews-v1'],
        ['10.1.0.2', 'reviews-v2'],
        ['10.1.0.3', 'reviews-v3'],
      ]),
    );
    await applyFiles([path.join(EXAMPLES, 'canary-95-5.yaml')], NS);
    await stateWhere(client, (s) => s.services.get(`${NS}/reviews`)?.routes !== undefined, 60_000);
    expect(service('reviews')?.routes).toEqual({
      source: { kind: 'VirtualService', namespace: NS, name: 'reviews' },
      rules: [
        {
          matches: [],
          destinations: [
            { service: `${NS}/reviews`, subset: 'v1', weight: 95 },
            { service: `${NS}/reviews`, subset: 'v2', weight: 5 },
          ],
        },
      ],
    });
    await stateWhere(client, (s) =>
      (s.services.get(`${NS}/reviews`)?.endpoints ?? []).every((e) => e.subsets?.length === 1),
    );
    expect(service('reviews')?.endpoints.map((e) => [e.address, e.subsets])).toEqual([
      ['10.1.0.1', ['v1']],
      ['10.1.0.2', ['v2']],
      ['10.1.0.3', ['v3']],
    ]);
  }, 90_000);

  it('brings the retries and timeout, and the outlier detection examples, as written', async () => {
    for (const name of ['ratings', 'details']) {
      await createObject(cp, serviceOf(name, { app: name }));
    }
    await applyFiles(
      [path.join(EXAMPLES, 'retries-timeout.yaml'), path.join(EXAMPLES, 'outlier-detection.yaml')],
      NS,
    );
    await stateWhere(
      client,
      (s) =>
        s.services.get(`${NS}/ratings`)?.routes !== undefined &&
        s.services.get(`${NS}/details`)?.policy !== undefined,
      60_000,
    );
    expect(service('ratings')?.routes?.rules[0]).toMatchObject({
      timeoutMs: 10_000,
      retries: {
        attempts: 3,
        perTryTimeoutMs: 2000,
        retryOn: ['connect-failure', 'refused-stream'],
      },
    });
    expect(service('details')?.policy?.trafficPolicy?.outlierDetection).toEqual({
      consecutive5xxErrors: 2,
      consecutiveGatewayErrors: 0,
      intervalMs: 1000,
      baseEjectionTimeMs: 180_000,
      maxEjectionPercent: 100,
    });
  }, 90_000);

  it('brings an HTTPRoute attached to a Service (standard channel), then one from the experimental channel', async () => {
    for (const name of ['reviews-v1', 'reviews-v2', 'catalog']) {
      await createObject(cp, serviceOf(name, { app: name }));
    }
    // The example names Service reviews, which the VirtualService above already routes: it is
    // shadowed there (a VirtualService wins), visible in the pushed table.
    await applyFiles([path.join(EXAMPLES, 'httproute-canary.yaml')], NS);
    await stateWhere(
      client,
      (s) => (s.services.get(`${NS}/reviews`)?.routes?.shadowed?.length ?? 0) > 0,
      60_000,
    );
    expect(service('reviews')?.routes?.shadowed).toEqual([
      {
        kind: 'HTTPRoute',
        namespace: NS,
        name: 'reviews',
        reason: `VirtualService ${NS}/reviews names the same host: a VirtualService wins over an HTTPRoute`,
      },
    ]);
    await waitFor('the precedence log line', () =>
      Promise.resolve(
        fs
          .readFileSync(mooring.logPath, 'utf8')
          .includes(`traffic rules for ${NS}/reviews not used`)
          ? true
          : undefined,
      ),
    );

    // The experimental channel's HTTPRoute has `retry`.
    await applyFiles([
      path.join(CRDS, 'gateway-api-experimental/gateway.networking.k8s.io_httproutes.yaml'),
    ]);
    await waitForCrds(cp, ['httproutes.gateway.networking.k8s.io']);
    const catalogRoute = {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'catalog' },
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'catalog', port: 9080 }],
        rules: [
          {
            matches: [{ path: { type: 'PathPrefix', value: '/api' } }],
            backendRefs: [{ name: 'catalog', port: 9080 }],
            timeouts: { request: '4s', backendRequest: '1s' },
            retry: { attempts: 3, codes: [503] },
          },
        ],
      },
    };
    // Established comes before every apiserver handler serves the new schema: until then
    // `retry` is pruned. Apply until it is kept.
    await waitFor(
      'the experimental schema',
      async () => {
        await applyObject(catalogRoute);
        const stored = (await kubectlJson(cp, ['get', 'httproute', 'catalog', '-n', NS])) as {
          spec: { rules: { retry?: unknown }[] };
        };
        if (stored.spec.rules[0]?.retry !== undefined) return true;
        await new Promise((r) => setTimeout(r, 500));
        return undefined;
      },
      30_000,
    );
    // The server's watch handed on the route as the old schema pruned it, and `retry` did not
    // move its resourceVersion: the CRD's new generation makes the server list it again (its
    // CRD recheck, every 30 s).
    await stateWhere(
      client,
      (s) => s.services.get(`${NS}/catalog`)?.routes?.rules[0]?.retries?.attempts === 3,
      75_000,
    );
    expect(service('catalog')?.routes?.rules).toEqual([
      {
        matches: [{ pathPrefix: '/api', port: 9080 }],
        destinations: [{ service: `${NS}/catalog`, port: 9080, weight: 1 }],
        noBackendStatus: 500,
        timeoutMs: 4000,
        retries: {
          attempts: 3,
          perTryTimeoutMs: 1000,
          retriableStatusCodes: [503],
          retryOn: [
            'connect-failure',
            'refused-stream',
            'unavailable',
            'cancelled',
            'retriable-status-codes',
          ],
        },
      },
    ]);
  }, 150_000);

  it('writes the status of HTTPRoutes: Accepted, ResolvedRefs, a missing backend, the VirtualService that wins', async () => {
    await applyObject({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'catalog-missing' },
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'catalog', port: 9080 }],
        rules: [
          {
            matches: [{ path: { type: 'Exact', value: '/gone' } }],
            backendRefs: [{ name: 'nowhere', port: 80 }],
          },
        ],
      },
    });
    type Status = {
      status?: {
        parents?: {
          controllerName: string;
          parentRef: { name: string };
          conditions: { type: string; status: string; reason: string; message: string }[];
        }[];
      };
    };
    const conditionsOf = async (name: string) =>
      waitFor(
        `the status of HTTPRoute ${name}`,
        async () => {
          const route = (await kubectlJson(cp, ['get', 'httproute', name, '-n', NS])) as Status;
          const mine = route.status?.parents?.find((p) => p.controllerName === 'mooring.dev/mesh');
          return mine === undefined
            ? undefined
            : Object.fromEntries(mine.conditions.map((c) => [c.type, c]));
        },
        30_000,
      );
    expect(await conditionsOf('catalog')).toMatchObject({
      Accepted: { status: 'True', reason: 'Accepted' },
      ResolvedRefs: { status: 'True', reason: 'ResolvedRefs' },
    });
    expect(await conditionsOf('catalog-missing')).toMatchObject({
      Accepted: { status: 'True' },
      ResolvedRefs: {
        status: 'False',
        reason: 'BackendNotFound',
        message: expect.stringContaining(`${NS}/nowhere`),
      },
    });
    expect(await conditionsOf('reviews')).toMatchObject({
      Accepted: {
        status: 'True',
        message: expect.stringContaining(`VirtualService ${NS}/reviews`),
      },
      ResolvedRefs: { status: 'True' },
    });
  }, 90_000);

  it('brings a GRPCRoute applied with kubectl to a proxy; an HTTPRoute on its port is Conflicted', async () => {
    await createObject(cp, {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'greeter', namespace: NS },
      spec: {
        selector: { app: 'greeter' },
        ports: [
          { name: 'grpc', port: 50051, targetPort: 50051, appProtocol: 'grpc' },
          { name: 'http', port: 9080, targetPort: 9080 },
        ],
      },
    });
    const parent = (port?: number) => ({
      group: '',
      kind: 'Service',
      name: 'greeter',
      ...(port === undefined ? {} : { port }),
    });
    await applyObject({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'GRPCRoute',
      metadata: { name: 'greeter' },
      spec: {
        parentRefs: [parent(50051)],
        rules: [
          {
            matches: [{ method: { service: 'helloworld.Greeter', method: 'SayHello' } }],
            backendRefs: [{ name: 'greeter', port: 50051 }],
          },
        ],
      },
    });
    for (const [name, port] of [
      ['greeter-grpc-port', 50051],
      ['greeter-all-ports', undefined],
    ] as const) {
      await applyObject({
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'HTTPRoute',
        metadata: { name },
        spec: {
          parentRefs: [parent(port)],
          rules: [{ backendRefs: [{ name: 'greeter', port: 9080 }] }],
        },
      });
    }
    await stateWhere(
      client,
      (s) => (s.services.get(`${NS}/greeter`)?.routes?.rules.length ?? 0) === 2,
      60_000,
    );
    const routes = service('greeter')?.routes;
    expect(routes?.source).toEqual({ kind: 'GRPCRoute', namespace: NS, name: 'greeter' });
    expect(routes?.ports).toEqual([9080, 50051]);
    expect(routes?.rules.map((r) => r.matches)).toEqual([
      [{ uri: { exact: '/helloworld.Greeter/SayHello' }, port: 50051 }],
      [{ pathPrefix: '/', port: 9080 }],
    ]);

    const conditionsOf = (resource: string, name: string) =>
      waitFor(
        `the status of ${resource} ${name}`,
        async () => {
          const route = (await kubectlJson(cp, ['get', resource, name, '-n', NS])) as {
            status?: {
              parents?: {
                controllerName: string;
                conditions: { type: string; status: string; reason: string; message: string }[];
              }[];
            };
          };
          const mine = route.status?.parents?.find((p) => p.controllerName === 'mooring.dev/mesh');
          return mine === undefined
            ? undefined
            : Object.fromEntries(mine.conditions.map((c) => [c.type, c]));
        },
        30_000,
      );
    expect(await conditionsOf('grpcroute', 'greeter')).toMatchObject({
      Accepted: { status: 'True', reason: 'Accepted' },
      ResolvedRefs: { status: 'True' },
    });
    expect(await conditionsOf('httproute', 'greeter-grpc-port')).toMatchObject({
      Accepted: {
        status: 'False',
        reason: 'Conflicted',
        message: expect.stringContaining(`GRPCRoute ${NS}/greeter`) as unknown,
      },
    });
    expect(await conditionsOf('httproute', 'greeter-all-ports')).toMatchObject({
      Accepted: {
        status: 'True',
        message: expect.stringContaining('except on port 50051') as unknown,
      },
    });
  }, 90_000);

  it('brings a TCPRoute (the chart’s CRD, v1) attached to a Service port to a proxy, and writes its status', async () => {
    for (const name of ['postgres', 'postgres-v2']) {
      await createObject(cp, {
        apiVersion: 'v1',
        kind: 'Service',
        metadata: { name, namespace: NS },
        spec: {
          selector: { app: name },
          ports: [{ name: 'tcp-postgres', port: 5432, targetPort: 5432 }],
        },
      });
    }
    // The chart's CRD (the standard channel's) serves TCPRoute at v1, which Mooring reads.
    const tcpRoute = {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'TCPRoute',
      metadata: { name: 'postgres' },
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'postgres', port: 5432 }],
        rules: [{ backendRefs: [{ name: 'postgres-v2', port: 5432 }] }],
      },
    };
    await applyObject(tcpRoute);
    await stateWhere(
      client,
      (s) => s.services.get(`${NS}/postgres`)?.tcpRoutes !== undefined,
      75_000,
    );
    expect(service('postgres')?.tcpRoutes).toEqual({
      source: { kind: 'TCPRoute', namespace: NS, name: 'postgres' },
      rules: [
        {
          matches: [{ port: 5432 }],
          destinations: [{ service: `${NS}/postgres-v2`, port: 5432, weight: 1 }],
        },
      ],
    });
    const on = fs
      .readFileSync(mooring.logPath, 'utf8')
      .split('\n')
      .filter((l) => l.includes('"TCPRoute is on"'))
      .map((l) => (JSON.parse(l) as { apiVersion?: string }).apiVersion);
    expect(on).toEqual(['gateway.networking.k8s.io/v1']);

    const mine = await waitFor(
      'the status of TCPRoute postgres',
      async () => {
        const stored = (await kubectlJson(cp, ['get', 'tcproute', 'postgres', '-n', NS])) as {
          status?: {
            parents?: {
              controllerName: string;
              parentRef: Record<string, unknown>;
              conditions: { type: string; status: string; reason: string; message: string }[];
            }[];
          };
        };
        return stored.status?.parents?.find((p) => p.controllerName === 'mooring.dev/mesh');
      },
      30_000,
    );
    expect(mine.parentRef).toMatchObject({ kind: 'Service', name: 'postgres', port: 5432 });
    expect(Object.fromEntries(mine.conditions.map((c) => [c.type, c]))).toMatchObject({
      Accepted: { status: 'True', reason: 'Accepted' },
      ResolvedRefs: { status: 'True', reason: 'ResolvedRefs' },
    });
  }, 150_000);

  it('brings a ServiceEntry (the chart’s CRD, v1) to a proxy as the service of its host, and takes it away when deleted', async () => {
    await applyObject({
      apiVersion: 'networking.istio.io/v1',
      kind: 'ServiceEntry',
      metadata: { name: 'external-api' },
      spec: {
        hosts: ['api.example.com'],
        location: 'MESH_EXTERNAL',
        ports: [{ number: 443, name: 'https', protocol: 'HTTPS' }],
        resolution: 'DNS',
      },
    });
    const external = () => client.state()?.services.get('api.example.com');
    await stateWhere(client, (s) => s.services.has('api.example.com'), 60_000);
    // HTTPS: the app's own TLS, carried as TCP; DNS without endpoints: the host itself, resolved
    // by the proxy when it connects.
    expect(external()).toMatchObject({
      key: 'api.example.com',
      name: 'api.example.com',
      namespace: NS,
      hostname: 'api.example.com',
      ports: [{ port: 443, name: 'https', protocol: 'tcp', tls: true }],
      endpoints: [{ address: 'api.example.com', ports: { '443': 443 } }],
      entry: {
        source: { namespace: NS, name: 'external-api' },
        location: 'MESH_EXTERNAL',
        resolution: 'DNS',
      },
    });
    const on = fs
      .readFileSync(mooring.logPath, 'utf8')
      .split('\n')
      .filter((l) => l.includes('"ServiceEntry is on"'))
      .map((l) => (JSON.parse(l) as { apiVersion?: string }).apiVersion);
    expect(on).toEqual(['networking.istio.io/v1']);

    await kubectl(cp, ['delete', 'serviceentry', 'external-api', '-n', NS]);
    await stateWhere(client, (s) => !s.services.has('api.example.com'), 30_000);
    expect(external()).toBeUndefined();
  }, 90_000);

  it('brings a RequestAuthentication (the chart’s CRD, v1) with an inline jwks to the scope of the proxies it selects, and takes it away when deleted', async () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwks = JSON.stringify({
      keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'ES256', use: 'sig' }],
    });
    const issuer = 'https://issuer.example.com';
    await applyObject({
      apiVersion: 'security.istio.io/v1',
      kind: 'RequestAuthentication',
      metadata: { name: 'productpage-jwt' },
      spec: {
        selector: { matchLabels: { app: 'productpage' } },
        jwtRules: [{ issuer, jwks }],
      },
    });
    const jwt = () => client.state()?.proxy.inbound.jwt;
    await stateWhere(client, (s) => (s.proxy.inbound.jwt?.length ?? 0) > 0, 60_000);
    expect(jwt()).toEqual([
      expect.objectContaining({ source: `${NS}/productpage-jwt`, issuer, jwks }),
    ]);
    expect(jwt()?.[0]?.issuer).toBe(issuer);
    expect(jwt()?.[0]?.jwks).toBe(jwks);
    const on = fs
      .readFileSync(mooring.logPath, 'utf8')
      .split('\n')
      .filter((l) => l.includes('"RequestAuthentication is on"'))
      .map((l) => (JSON.parse(l) as { apiVersion?: string }).apiVersion);
    expect(on).toEqual(['security.istio.io/v1']);

    await kubectl(cp, ['delete', 'requestauthentication', 'productpage-jwt', '-n', NS]);
    await stateWhere(client, (s) => (s.proxy.inbound.jwt?.length ?? 0) === 0, 30_000);
    expect(jwt()).toBeUndefined();
  }, 90_000);

  it("limits the services of its namespace's proxies to a Sidecar's egress hosts (the chart's CRD, v1), and gives them back when it is deleted", async () => {
    const other = `vault-${suffix()}`;
    await createNamespace(cp, other);
    await createObject(cp, {
      ...serviceOf('vault', { app: 'vault' }),
      metadata: { name: 'vault', namespace: other },
    });
    await createObject(cp, serviceOf('cashier', { app: 'cashier' }));
    const vault = `${other}/vault`;
    const cashier = `${NS}/cashier`;
    await stateWhere(client, (s) => s.services.has(vault) && s.services.has(cashier), 60_000);
    expect(client.state()?.proxy.outboundTrafficPolicy).toBeUndefined();

    await applyObject({
      apiVersion: 'networking.istio.io/v1',
      kind: 'Sidecar',
      metadata: { name: 'default' },
      spec: { egress: [{ hosts: ['./*'] }], outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } },
    });
    try {
      await stateWhere(client, (s) => !s.services.has(vault), 60_000);
      // Its own namespace's services stay.
      expect(client.state()?.services.has(cashier)).toBe(true);
      expect(client.state()?.proxy.outboundTrafficPolicy).toBe('REGISTRY_ONLY');
      const on = fs
        .readFileSync(mooring.logPath, 'utf8')
        .split('\n')
        .filter((l) => l.includes('"Sidecar is on"'))
        .map((l) => (JSON.parse(l) as { apiVersion?: string }).apiVersion);
      expect(on).toEqual(['networking.istio.io/v1']);
    } finally {
      await kubectl(cp, ['delete', 'sidecar', 'default', '-n', NS]);
    }
    await stateWhere(client, (s) => s.services.has(vault), 30_000);
    expect(client.state()?.services.has(cashier)).toBe(true);
    expect(client.state()?.proxy.outboundTrafficPolicy).toBeUndefined();
  }, 120_000);

  it("brings the root namespace's Telemetry (the chart's CRD, v1) and its namespace's to a proxy's scope, and takes them away when deleted", async () => {
    // The mesh's default, in the root namespace (the server's own), and one of the namespace.
    await kubectl(
      cp,
      ['apply', '-n', MOORING_NS, '-f', '-'],
      JSON.stringify({
        apiVersion: 'telemetry.istio.io/v1',
        kind: 'Telemetry',
        metadata: { name: 'mesh-default' },
        spec: { tracing: [{ randomSamplingPercentage: 25 }] },
      }),
    );
    await applyObject({
      apiVersion: 'telemetry.istio.io/v1',
      kind: 'Telemetry',
      metadata: { name: 'bookinfo' },
      spec: {
        accessLogging: [{ match: { mode: 'SERVER' } }],
        metrics: [
          { overrides: [{ match: { metric: 'REQUEST_COUNT', mode: 'CLIENT' }, disabled: true }] },
        ],
      },
    });
    const telemetryOf = (scope: ProxyScope | undefined) =>
      scope === undefined
        ? undefined
        : {
            traceSamplingPercent: scope.traceSamplingPercent,
            accessLog: scope.accessLog,
            accessLogSide: scope.accessLogSide,
            metricOverrides: scope.metricOverrides,
          };
    const both = {
      traceSamplingPercent: 25,
      accessLog: true,
      accessLogSide: 'inbound',
      metricOverrides: [{ metric: 'REQUEST_COUNT', mode: 'CLIENT', disabled: true }],
    };
    try {
      const dumped = await waitFor(
        'both Telemetries in the config dump',
        async () => {
          const dump = await configDump('productpage-1');
          return dump?.proxy.traceSamplingPercent === 25 && dump.proxy.accessLog === true
            ? dump
            : undefined;
        },
        60_000,
      );
      expect(telemetryOf(dumped.proxy)).toEqual(both);
      // Pushed as well.
      await stateWhere(client, (st) => st.proxy.accessLogSide === 'inbound', 30_000);
      expect(telemetryOf(client.state()?.proxy)).toEqual(both);
      const on = fs
        .readFileSync(mooring.logPath, 'utf8')
        .split('\n')
        .filter((l) => l.includes('"Telemetry is on"'))
        .map((l) => (JSON.parse(l) as { apiVersion?: string }).apiVersion);
      expect(on).toEqual(['telemetry.istio.io/v1']);
    } finally {
      await kubectl(cp, ['delete', 'telemetry', 'mesh-default', '-n', MOORING_NS]);
      await kubectl(cp, ['delete', 'telemetry', 'bookinfo', '-n', NS]);
    }
    const none = {
      traceSamplingPercent: undefined,
      accessLog: undefined,
      accessLogSide: undefined,
      metricOverrides: undefined,
    };
    const gone = await waitFor(
      'no Telemetry in the config dump',
      async () => {
        const dump = await configDump('productpage-1');
        return dump !== undefined && isDeepStrictEqual(telemetryOf(dump.proxy), none)
          ? dump
          : undefined;
      },
      30_000,
    );
    expect(telemetryOf(gone.proxy)).toEqual(none);
    await stateWhere(client, (st) => st.proxy.accessLog === undefined, 30_000);
    expect(telemetryOf(client.state()?.proxy)).toEqual(none);
  }, 120_000);

  it("makes a WorkloadEntry (the chart's CRD, v1) an endpoint of the Service of its namespace that selects its labels, meshed by its service account, and takes it away when deleted", async () => {
    // A Service whose targetPort is a name: the entry's port of that name. No Pod has its labels.
    await createObject(cp, serviceOf('billing', { app: 'billing' }));
    const key = `${NS}/billing`;
    const endpointsOf = (services: Iterable<{ key: string; endpoints: readonly object[] }>) =>
      [...services].find((svc) => svc.key === key)?.endpoints;
    await stateWhere(client, (st) => st.services.has(key), 60_000);
    expect(service('billing')?.endpoints).toEqual([]);

    // A VM with a service account (meshed), one without (plain text), and one of another
    // namespace with the same labels (no endpoint of this Service).
    const other = `vms-${suffix()}`;
    await createNamespace(cp, other);
    const entryOf = (name: string, spec: object) => ({
      apiVersion: 'networking.istio.io/v1',
      kind: 'WorkloadEntry',
      metadata: { name },
      spec,
    });
    await applyObject(
      entryOf('billing-vm-1', {
        address: '10.9.0.1',
        labels: { app: 'billing' },
        ports: { http: 8080 },
        serviceAccount: 'vm',
      }),
    );
    await applyObject(
      entryOf('billing-vm-2', {
        address: '10.9.0.2',
        labels: { app: 'billing' },
        ports: { http: 8081 },
      }),
    );
    await kubectl(
      cp,
      ['apply', '-n', other, '-f', '-'],
      JSON.stringify(entryOf('billing-vm-3', { address: '10.9.0.3', labels: { app: 'billing' } })),
    );
    const expected = [
      {
        address: '10.9.0.1',
        ports: { '9080': 8080 },
        identity: `spiffe://cluster.local/ns/${NS}/sa/vm`,
      },
      { address: '10.9.0.2', ports: { '9080': 8081 }, identity: null },
    ];
    /** How many WorkloadEntries the server's model holds. */
    const entriesRead = async () => {
      const answer = await request(`${mooring.adminUrl}/debug/mesh/objects`);
      return (JSON.parse(answer.body) as { counts: Record<string, number> }).counts.WorkloadEntry;
    };
    await waitFor('the three entries read', async () =>
      (await entriesRead()) === 3 ? true : undefined,
    );
    const sorted = (endpoints: readonly object[] | undefined) =>
      [...((endpoints ?? []) as { address: string }[])].sort((a, b) =>
        a.address < b.address ? -1 : 1,
      );
    try {
      const dumped = await waitFor(
        'both entries in the config dump',
        async () => {
          const dump = await configDump('productpage-1');
          return endpointsOf(dump?.services ?? [])?.length === 2 ? dump : undefined;
        },
        60_000,
      );
      expect(sorted(endpointsOf(dumped.services))).toMatchObject(expected);
      // Pushed as well.
      await stateWhere(client, (st) => st.services.get(key)?.endpoints.length === 2, 30_000);
      expect(sorted(service('billing')?.endpoints)).toMatchObject(expected);
      const on = fs
        .readFileSync(mooring.logPath, 'utf8')
        .split('\n')
        .filter((l) => l.includes('"WorkloadEntry is on"'))
        .map((l) => (JSON.parse(l) as { apiVersion?: string }).apiVersion);
      expect(on).toEqual(['networking.istio.io/v1']);
    } finally {
      await kubectl(cp, ['delete', 'workloadentry', 'billing-vm-1', '-n', NS]);
      await kubectl(cp, ['delete', 'workloadentry', 'billing-vm-2', '-n', NS]);
    }
    const gone = await waitFor(
      'no entry in the config dump',
      async () => {
        const dump = await configDump('productpage-1');
        return endpointsOf(dump?.services ?? [])?.length === 0 ? dump : undefined;
      },
      30_000,
    );
    expect(endpointsOf(gone.services)).toEqual([]);
    // The other namespace's entry is still read, and still no endpoint of it.
    expect(await entriesRead()).toBe(1);
    await stateWhere(client, (st) => st.services.get(key)?.endpoints.length === 0, 30_000);
  }, 120_000);

  it('applies a VirtualService of another namespace only where its exportTo sends it', async () => {
    const other = `exports-${suffix()}`;
    await createNamespace(cp, other);
    await createObject(cp, serviceOf('ledger', { app: 'ledger' }));
    const host = `ledger.${NS}.svc.cluster.local`;
    const ledgerVs = (name: string, exportTo: string[], timeout: string) => ({
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name, namespace: other },
      spec: { hosts: [host], exportTo, http: [{ route: [{ destination: { host } }], timeout }] },
    });
    // The older one, were exportTo ignored, would win for every proxy.
    await kubectl(cp, ['apply', '-f', '-'], JSON.stringify(ledgerVs('own-namespace', ['.'], '1s')));
    await kubectl(cp, ['apply', '-f', '-'], JSON.stringify(ledgerVs('to-bookinfo', [NS], '2s')));
    await stateWhere(client, (s) => s.services.get(`${NS}/ledger`)?.routes !== undefined, 60_000);
    expect(service('ledger')?.routes?.source).toEqual({
      kind: 'VirtualService',
      namespace: other,
      name: 'to-bookinfo',
    });
    expect(service('ledger')?.routes?.rules[0]?.timeoutMs).toBe(2000);
  }, 90_000);

  it("looks a DestinationRule up in the proxy's namespace, then the Service's, merges those of one namespace, and leaves another namespace's to its own proxies", async () => {
    const other = `lookup-${suffix()}`;
    await createNamespace(cp, other);
    await createObject(cp, serviceOf('inventory', { app: 'inventory' }));
    const host = `inventory.${NS}.svc.cluster.local`;
    const inventoryDr = (namespace: string, name: string, spec: object) => ({
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name, namespace },
      spec: { host, ...spec },
    });
    const apply = (o: object) => kubectl(cp, ['apply', '-f', '-'], JSON.stringify(o));
    // Exported everywhere, but in neither the proxy's namespace nor the Service's.
    await apply(
      inventoryDr(other, 'elsewhere', { trafficPolicy: { loadBalancer: { simple: 'RANDOM' } } }),
    );
    await apply(
      inventoryDr(NS, 'own', { trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' } } }),
    );
    await apply(
      inventoryDr(NS, 'own-subsets', { subsets: [{ name: 'v1', labels: { version: 'v1' } }] }),
    );
    await stateWhere(
      client,
      (s) => (s.services.get(`${NS}/inventory`)?.policy?.merged?.length ?? 0) > 0,
      60_000,
    );
    const policy = service('inventory')?.policy;
    expect(policy?.source).toEqual({ namespace: NS, name: 'own' });
    expect(policy?.merged).toEqual([{ namespace: NS, name: 'own-subsets' }]);
    expect(policy?.shadowed).toBeUndefined();
    expect(policy?.trafficPolicy?.loadBalancer).toBe('ROUND_ROBIN');
    expect(policy?.subsets?.map((x) => x.name)).toEqual(['v1']);
  }, 90_000);

  it('applies the rules of a delegate VirtualService under its root, and follows a change to the delegate', async () => {
    await createObject(cp, serviceOf('payments', { app: 'payments' }));
    const host = `payments.${NS}.svc.cluster.local`;
    const delegate = (timeout: string) => ({
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'payments-api' },
      spec: {
        http: [
          { match: [{ uri: { prefix: '/api/v2' } }], route: [{ destination: { host } }], timeout },
        ],
      },
    });
    await applyObject(delegate('3s'));
    await applyObject({
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'payments' },
      spec: {
        hosts: [host],
        http: [
          {
            match: [{ uri: { prefix: '/api' } }],
            delegate: { name: 'payments-api', namespace: NS },
          },
          { route: [{ destination: { host } }] },
        ],
      },
    });
    await stateWhere(
      client,
      (s) => s.services.get(`${NS}/payments`)?.routes?.rules[0]?.timeoutMs === 3000,
      60_000,
    );
    expect(service('payments')?.routes?.rules.map((r) => r.matches)).toEqual([
      [{ uri: { prefix: '/api/v2' } }],
      [],
    ]);
    await applyObject(delegate('5s'));
    await stateWhere(
      client,
      (s) => s.services.get(`${NS}/payments`)?.routes?.rules[0]?.timeoutMs === 5000,
      30_000,
    );
  }, 90_000);

  it('reports an invalid VirtualService the CRD lets through, skips it, and keeps the rest working', async () => {
    await applyObject({
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'details-broken' },
      spec: {
        hosts: ['details'],
        http: [
          {
            match: [{ uri: { regex: '(?<=a)b' } }],
            route: [{ destination: { host: 'details' } }],
          },
        ],
      },
    });
    const text = await waitFor('the problem in the log', () =>
      Promise.resolve(
        fs
          .readFileSync(mooring.logPath, 'utf8')
          .split('\n')
          .find((l) => l.includes('invalid mesh object') && l.includes('details-broken')),
      ),
    );
    const line = JSON.parse(text) as Record<string, unknown>;
    expect(line).toMatchObject({
      kind: 'VirtualService',
      namespace: NS,
      name: 'details-broken',
      field: 'spec.http[0].match[0].uri.regex',
      effect: 'skipped',
    });
    // The rest goes on: a change to the canary still reaches the proxy.
    await kubectl(cp, [
      'patch',
      'virtualservice',
      'reviews',
      '-n',
      NS,
      '--type=json',
      '-p',
      '[{"op":"replace","path":"/spec/http/0/route/0/weight","value":50},{"op":"replace","path":"/spec/http/0/route/1/weight","value":50}]',
    ]);
    await stateWhere(
      client,
      (s) => s.services.get(`${NS}/reviews`)?.routes?.rules[0]?.destinations[0]?.weight === 50,
      30_000,
    );
    expect(service('details')?.routes).toBeUndefined();
  }, 90_000);

  it("refuses a bad VirtualService at kubectl apply through the chart's validating webhook (POST /validate), naming the field", async () => {
    // The chart's ValidatingWebhookConfiguration as `helm template` renders it with its defaults
    // (failurePolicy Ignore, no caBundle), with one change: no Service routes to the server
    // here, so its clientConfig is the server's URL (the path the chart gives the Service).
    const [vwc, ...more] = parseObjects(
      await chartTemplate('templates/validatingwebhookconfiguration.yaml'),
    ) as unknown as {
      metadata: { name: string };
      webhooks: { clientConfig: { url?: string; service?: { path: string }; caBundle?: string } }[];
    }[];
    expect(more).toEqual([]);
    if (vwc === undefined) throw new Error('the chart rendered no ValidatingWebhookConfiguration');
    for (const webhook of vwc.webhooks) {
      const { service: target, ...rest } = webhook.clientConfig;
      expect([target?.path, rest]).toEqual(['/validate', {}]);
      webhook.clientConfig = { url: `${mooring.url}${target?.path}` };
    }
    await createObject(cp, vwc);
    // The server sets its caBundle, as it does the injector's (config.cluster
    // .validatingWebhookConfigName, by default the chart's name).
    const caBundle = await waitFor(
      'the caBundle patched by the server',
      async () => {
        const live = (await kubectlJson(cp, [
          ...['get', 'validatingwebhookconfiguration', vwc.metadata.name],
        ])) as typeof vwc;
        return live.webhooks[0]?.clientConfig.caBundle;
      },
      30_000,
    );
    expect(Buffer.from(caBundle, 'base64').toString('utf8').replace(/\s+/g, '')).toBe(
      bundle.join('').replace(/\s+/g, ''),
    );
    const bad = {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'refused' },
      spec: {
        hosts: ['details'],
        http: [
          {
            route: [
              { destination: { host: 'details', subset: 'a' }, weight: 0 },
              { destination: { host: 'details', subset: 'b' }, weight: 0 },
            ],
          },
        ],
      },
    };
    // The configuration reaches the apiserver's webhook cache within a few seconds.
    const message = await waitFor(
      'the refusal',
      async () => {
        try {
          await applyObject(bad);
          await kubectl(cp, ['delete', 'virtualservice', 'refused', '-n', NS]);
          return undefined;
        } catch (err) {
          return String((err as Error).message);
        }
      },
      30_000,
    );
    expect(message).toContain('denied the request');
    expect(message).toContain(
      `VirtualService ${NS}/refused is invalid for Mooring: spec.http[0].route: the weights add up to 0`,
    );
    // The Gateway API's kind too (the rule of gateway.networking.k8s.io): a path regex RE2 cannot
    // run, which the CRD lets through.
    await expect(
      applyObject({
        apiVersion: 'gateway.networking.k8s.io/v1',
        kind: 'HTTPRoute',
        metadata: { name: 'refused-route' },
        spec: {
          parentRefs: [{ group: '', kind: 'Service', name: 'details', port: 9080 }],
          rules: [
            {
              matches: [{ path: { type: 'RegularExpression', value: '(?<=a)b' } }],
              backendRefs: [{ name: 'details', port: 9080 }],
            },
          ],
        },
      }),
    ).rejects.toThrow(
      `HTTPRoute ${NS}/refused-route is invalid for Mooring: spec.rules[0].matches[0].path.value`,
    );
    // A TCPRoute made at v1, which Mooring does not read, goes to the webhook converted to
    // v1alpha2 (its rule names v1alpha2 only; matchPolicy Equivalent): refused for what Mooring
    // refuses in it (a backend that is no Service, which the CRD lets through), not for its
    // version; a valid one goes in.
    const tcpAtV1 = (name: string, backend: Record<string, unknown>) => ({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'TCPRoute',
      metadata: { name },
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'postgres', port: 5432 }],
        rules: [{ backendRefs: [backend] }],
      },
    });
    await expect(
      applyObject(tcpAtV1('to-a-bucket', { group: 'example.com', kind: 'Bucket', name: 'b' })),
    ).rejects.toThrow(
      `TCPRoute ${NS}/to-a-bucket is invalid for Mooring: spec.rules[0].backendRefs[0].kind: only Services are supported as backends`,
    );
    expect(await applyObject(tcpAtV1('at-v1', { name: 'postgres-v2', port: 5432 }))).toContain(
      'tcproute.gateway.networking.k8s.io/at-v1 created',
    );
    // A ServiceEntry (the rule of networking.istio.io) with a workloadSelector and resolution
    // DNS, which the CRD lets through (a workloadSelector beside listed endpoints its own CEL rule
    // refuses: "only one of WorkloadSelector or Endpoints can be set").
    await expect(
      applyObject({
        apiVersion: 'networking.istio.io/v1',
        kind: 'ServiceEntry',
        metadata: { name: 'by-selector' },
        spec: {
          hosts: ['vm.example.com'],
          ports: [{ number: 80, name: 'http', protocol: 'HTTP' }],
          resolution: 'DNS',
          workloadSelector: { labels: { app: 'vm' } },
        },
      }),
    ).rejects.toThrow(
      `ServiceEntry ${NS}/by-selector is invalid for Mooring: spec.resolution: must be STATIC with a workloadSelector`,
    );
    // A RequestAuthentication (the rule of security.istio.io) attached by targetRef, which the
    // CRD lets through and Mooring does not do.
    await expect(
      applyObject({
        apiVersion: 'security.istio.io/v1',
        kind: 'RequestAuthentication',
        metadata: { name: 'by-target' },
        spec: {
          targetRef: { group: '', kind: 'Service', name: 'details' },
          jwtRules: [
            { issuer: 'https://issuer.example.com', jwksUri: 'https://issuer.example.com/jwks' },
          ],
        },
      }),
    ).rejects.toThrow(
      `RequestAuthentication ${NS}/by-target is invalid for Mooring: spec.targetRef: attaches a policy to a Gateway or Service, which Mooring does not do: use spec.selector`,
    );
    // A Sidecar (the rule of networking.istio.io) with ingress listeners, which the CRD lets
    // through and Mooring does not do.
    await expect(
      applyObject({
        apiVersion: 'networking.istio.io/v1',
        kind: 'Sidecar',
        metadata: { name: 'by-selector' },
        spec: {
          ingress: [{ port: { number: 9080, protocol: 'HTTP' } }],
          egress: [{ hosts: ['./*'] }],
        },
      }),
    ).rejects.toThrow(
      `Sidecar ${NS}/by-selector is invalid for Mooring: spec.ingress: is not supported by Mooring yet`,
    );
    // A WorkloadEntry (the rule of networking.istio.io) whose address is a DNS name, which the
    // CRD lets through and Mooring does not resolve.
    await expect(
      applyObject({
        apiVersion: 'networking.istio.io/v1',
        kind: 'WorkloadEntry',
        metadata: { name: 'by-name' },
        spec: { address: 'vm.example.com', labels: { app: 'details' }, serviceAccount: 'vm' },
      }),
    ).rejects.toThrow(`WorkloadEntry ${NS}/by-name is invalid for Mooring: spec.address: `);
    // A Telemetry (the rule of telemetry.istio.io) attached by targetRefs, which the CRD lets
    // through and Mooring does not do.
    await expect(
      applyObject({
        apiVersion: 'telemetry.istio.io/v1',
        kind: 'Telemetry',
        metadata: { name: 'by-target' },
        spec: {
          targetRefs: [{ group: '', kind: 'Service', name: 'details' }],
          tracing: [{ randomSamplingPercentage: 100 }],
        },
      }),
    ).rejects.toThrow(
      `Telemetry ${NS}/by-target is invalid for Mooring: spec.targetRefs: attaches a policy to a Gateway or Service, which Mooring does not do: use spec.selector`,
    );
    // A valid object still goes in, with the fields Mooring ignores as warnings.
    const out = await applyObject({
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: 'details-tls' },
      spec: { host: 'details', trafficPolicy: { tls: { mode: 'ISTIO_MUTUAL' } } },
    });
    expect(out).toContain('destinationrule.networking.istio.io/details-tls created');
  }, 90_000);
});

describe('locality in cluster mode: the Nodes the Pods run on', () => {
  const REGION = 'topology.kubernetes.io/region';
  const ZONE = 'topology.kubernetes.io/zone';
  const SUBZONE = 'topology.istio.io/subzone';
  /** The locality of each endpoint of `service`, by address. */
  const localities = (
    services: Iterable<{ key: string; endpoints: readonly object[] }>,
    key: string,
  ) => {
    const svc = [...services].find((s) => s.key === key);
    return svc === undefined
      ? undefined
      : Object.fromEntries(
          svc.endpoints.map((e) => {
            const { address, locality } = e as { address: string; locality?: string };
            return [address, locality ?? null];
          }),
        );
  };

  it("brings the locality of a Pod's Node to its proxy's scope and to its endpoints, and follows the Node's labels", async () => {
    const node = `node-${suffix()}`;
    // A Node object without a kubelet: the apiserver stores it as any other.
    await createObject(cp, {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name: node, labels: { [REGION]: 'region1', [ZONE]: 'zone1' } },
    });
    const pod = podOf('ratings-loc-1', { app: 'ratings-loc' });
    await createObject(cp, { ...pod, spec: { ...pod.spec, nodeName: node } });
    const svc = serviceOf('ratings-loc', { app: 'ratings-loc' });
    await createObject(cp, { ...svc, spec: { ...svc.spec, trafficDistribution: 'PreferClose' } });
    // The controller's slice: the Pod's endpoint with its nodeName and zone, and one without a
    // Pod whose only locality is the slice's zone.
    const slice = sliceOf('ratings-loc', [['10.1.9.1', 'ratings-loc-1']]);
    await createObject(cp, {
      ...slice,
      endpoints: [
        { ...slice.endpoints[0], nodeName: node, zone: 'zone1' },
        { addresses: ['10.1.9.2'], conditions: { ready: true }, zone: 'zone7' },
      ],
    });
    const key = `${NS}/ratings-loc`;

    const first = await waitFor('the locality in the config dump', async () => {
      const dump = await configDump('ratings-loc-1');
      return dump?.proxy.locality === 'region1/zone1/' &&
        localities(dump.services, key)?.['10.1.9.1'] === 'region1/zone1/'
        ? dump
        : undefined;
    });
    expect(first.proxy.locality).toBe('region1/zone1/');
    expect(localities(first.services, key)).toEqual({
      '10.1.9.1': 'region1/zone1/',
      '10.1.9.2': '/zone7/',
    });
    expect(first.services.find((s) => s.key === key)?.preferClose).toBe(true);
    // Pushed as well: the proxy of productpage-1 (no node: no locality of its own) gets them.
    await stateWhere(
      client,
      (st) => localities(st.services.values(), key)?.['10.1.9.1'] === 'region1/zone1/',
    );
    expect(client.state()?.services.get(key)?.preferClose).toBe(true);
    expect(client.state()?.proxy.locality).toBeUndefined();

    // Moved to another zone, a subzone added: the scope and the endpoint follow.
    await kubectl(cp, ['label', 'node', node, `${ZONE}=zone2`, `${SUBZONE}=rack-1`, '--overwrite']);
    // (The dump's scope is the model's as it is; its services are those of the last push,
    // debounced: wait for both.)
    const moved = await waitFor('the new locality in the config dump', async () => {
      const dump = await configDump('ratings-loc-1');
      return dump?.proxy.locality === 'region1/zone2/rack-1' &&
        localities(dump.services, key)?.['10.1.9.1'] === 'region1/zone2/rack-1'
        ? dump
        : undefined;
    });
    expect(localities(moved.services, key)).toEqual({
      '10.1.9.1': 'region1/zone2/rack-1',
      '10.1.9.2': '/zone7/',
    });
    await stateWhere(
      client,
      (st) => localities(st.services.values(), key)?.['10.1.9.1'] === 'region1/zone2/rack-1',
    );

    // The Node deleted: the Pod's locality is unknown, so absent from its scope; its endpoint
    // falls back to the slice's zone.
    await kubectl(cp, ['delete', 'node', node]);
    const gone = await waitFor('no Node locality in the config dump', async () => {
      const dump = await configDump('ratings-loc-1');
      return dump !== undefined &&
        dump.proxy.locality === undefined &&
        localities(dump.services, key)?.['10.1.9.1'] === '/zone1/'
        ? dump
        : undefined;
    });
    expect(localities(gone.services, key)).toEqual({
      '10.1.9.1': '/zone1/',
      '10.1.9.2': '/zone7/',
    });
  }, 60_000);
});

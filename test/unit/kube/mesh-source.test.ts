// Cluster mode's mesh source over the in-memory apiserver: lists (items without kind, as the API
// gives them) and watches into the model, PeerAuthentication off while its CRD is missing and on
// once it appears, invalid objects logged once and skipped or kept at their last valid version,
// an invalid AuthorizationPolicy put in closed instead, a ServiceEntry a service of its host, a
// RequestAuthentication the JWT providers of the scopes of the Pods it selects, a namespace's
// Sidecar the services its proxies see, a Telemetry the tracing, access log and metrics of the
// scopes of the Pods it applies to, a WorkloadEntry an endpoint of the Services that select it.
// test/e2e/mesh.test.ts runs it against a real kube-apiserver.
import { generateKeyPairSync } from 'node:crypto';
import { ClusterMeshSource, slimNode, slimPod } from '../../../src/adapters/kube/mesh-source';
import { KubeApiError, type KubeApi, type KubeRequest } from '../../../src/adapters/kube/api';
import { MeshModel } from '../../../src/mesh';
import {
  endpointSlice,
  inNamespace,
  meshed,
  MODEL_OPTIONS,
  peerAuthentication,
  pod,
  service,
  withEndpoint,
  withField,
  withIP,
  withMode,
  withPort,
  withServiceAccount,
  withSlicePort,
  type Raw,
} from '../../fixtures/mesh-objects';
import { FakeKubeApi } from './fake-api';

const SERVICES = '/api/v1/namespaces/shop/services';
const SLICES = '/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices';
const PODS = '/api/v1/namespaces/shop/pods';
const PAS = '/apis/security.istio.io/v1/namespaces/shop/peerauthentications';
const APS = '/apis/security.istio.io/v1/namespaces/shop/authorizationpolicies';
const NODES = '/api/v1/nodes';

/** A Node (cluster-scoped) with topology labels and what a kubelet reports, as the API gives it. */
const node = (name: string, labels: Record<string, string>, heartbeat = 'T0'): Raw => ({
  apiVersion: 'v1',
  kind: 'Node',
  metadata: {
    name,
    uid: `uid-${name}`,
    creationTimestamp: '2026-01-02T03:04:05Z',
    labels: { 'kubernetes.io/hostname': name, ...labels },
    annotations: { 'node.alpha.kubernetes.io/ttl': '0' },
    managedFields: [{ manager: 'kubelet', operation: 'Update', apiVersion: 'v1' }],
  },
  spec: { podCIDR: '10.244.1.0/24', taints: [{ key: 'k', effect: 'NoSchedule' }] },
  status: {
    capacity: { cpu: '8', memory: '32Gi' },
    conditions: [{ type: 'Ready', status: 'True', lastHeartbeatTime: heartbeat }],
    addresses: [{ type: 'InternalIP', address: '192.168.0.7' }],
    images: [{ names: ['registry.example/app:1'], sizeBytes: 123456789 }],
  },
});
const zoned = (region: string, zone: string, subzone?: string): Record<string, string> => ({
  'topology.kubernetes.io/region': region,
  'topology.kubernetes.io/zone': zone,
  ...(subzone === undefined ? {} : { 'topology.istio.io/subzone': subzone }),
});

/** An AuthorizationPolicy of `shop` with one rule on `paths`. */
const authorizationPolicy = (name: string, action: string, paths: string[]): Raw => ({
  apiVersion: 'security.istio.io/v1',
  kind: 'AuthorizationPolicy',
  metadata: { name, namespace: 'shop' },
  spec: { action, rules: [{ to: [{ operation: { paths } }] }] },
});

/** A JWKS of one P-256 public key, as a RequestAuthentication's inline `jwks` holds it. */
function jwksText(): string {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = publicKey.export({ format: 'jwk' });
  return JSON.stringify({ keys: [{ ...jwk, kid: 'k1', alg: 'ES256', use: 'sig' }] });
}

/** The in-memory apiserver, with the API groups of the CRDs served or not. */
class Cluster implements KubeApi {
  readonly fake = new FakeKubeApi();
  istioVersions: string[] = [];
  /** Other CRD groups served, with their versions. */
  readonly groups = new Map<string, string[]>();
  /** CRDs by name, with their generation (absent: 404, as for a CRD not installed). */
  readonly crds = new Map<string, number>();
  /** The schema's pruning of objects read at a collection path (lists and watch events). */
  readonly pruning = new Map<string, (raw: Raw) => Raw>();

  request<T>(req: KubeRequest): Promise<T> {
    const crd = /^\/apis\/apiextensions\.k8s\.io\/v1\/customresourcedefinitions\/(.+)$/.exec(
      req.path,
    );
    if (crd !== null) {
      const generation = this.crds.get(crd[1] as string);
      if (generation === undefined) {
        return Promise.reject(new KubeApiError(404, 'NotFound', 'not found'));
      }
      return Promise.resolve({ metadata: { name: crd[1], generation } } as T);
    }
    const prune = this.pruning.get(req.path);
    if (prune !== undefined && req.method === 'GET') {
      return this.fake
        .request<{ items: Raw[] }>(req)
        .then((list) => ({ ...list, items: list.items.map(prune) }) as T);
    }
    for (const [group, versions] of this.groups) {
      if (req.path === `/apis/${group}`) {
        return Promise.resolve({
          versions: versions.map((v) => ({ groupVersion: `${group}/${v}`, version: v })),
        } as T);
      }
    }
    if (req.path === '/apis/security.istio.io') {
      if (this.istioVersions.length === 0) {
        return Promise.reject(
          new KubeApiError(404, 'NotFound', 'the server could not find the requested resource'),
        );
      }
      return Promise.resolve({
        versions: this.istioVersions.map((v) => ({
          groupVersion: `security.istio.io/${v}`,
          version: v,
        })),
      } as T);
    }
    if (
      req.path.startsWith('/apis/security.istio.io/') &&
      !this.istioVersions.some((v) => req.path.startsWith(`/apis/security.istio.io/${v}/`))
    ) {
      return Promise.reject(new KubeApiError(404, 'NotFound', 'not found'));
    }
    return this.fake.request(req);
  }

  watch(...args: Parameters<KubeApi['watch']>): Promise<void> {
    const [path, query, onEvent, signal] = args;
    const prune = this.pruning.get(path);
    if (prune === undefined) return this.fake.watch(...args);
    return this.fake.watch(
      path,
      query,
      (event) => onEvent({ ...event, object: prune(event.object as Raw) }),
      signal,
    );
  }
}

/** As the apiserver stores it: no kind in list items is tested by the source itself. */
const put = (cluster: Cluster, path: string, raw: Raw) => cluster.fake.seed(path, raw);

interface Logged {
  readonly msg: string;
  readonly fields: Record<string, unknown>;
}

const sources: ClusterMeshSource[] = [];
afterEach(async () => {
  for (const s of sources.splice(0)) await s.stop();
});

function setup(cluster = new Cluster()) {
  const model = new MeshModel(MODEL_OPTIONS);
  const logs: Logged[] = [];
  const log = (fields: object, msg: string) =>
    logs.push({ msg, fields: fields as Record<string, unknown> });
  let changes = 0;
  const source = new ClusterMeshSource({
    api: cluster,
    model,
    log: { info: log, warn: log, debug: log },
    onChange: () => {
      changes += 1;
      model.commit();
    },
    crdRecheckMs: 30,
  });
  sources.push(source);
  return { cluster, model, logs, source, changes: () => changes };
}

async function until<T>(
  what: string,
  probe: () => T | undefined | false,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

const inShop = (raw: Raw): Raw => withField('metadata.namespace', 'shop')(raw);

function seedWeb(cluster: Cluster): void {
  put(cluster, SERVICES, inShop(service('web', withPort(80, 'http', 8080))));
  put(
    cluster,
    SLICES,
    inShop(
      endpointSlice('web', withSlicePort(8080, 'http'), withEndpoint('10.0.0.1', { pod: 'web-1' })),
    ),
  );
  put(cluster, PODS, inShop(pod('web-1', meshed(), withServiceAccount('web'), withIP('10.0.0.1'))));
}

describe("cluster mode's mesh source", () => {
  it('lists Services, EndpointSlices and Pods into the model, then follows their changes', async () => {
    const { cluster, model, source } = setup();
    seedWeb(cluster);
    await source.start();
    model.commit();
    expect(model.service('shop/web')?.service.endpoints).toMatchObject([
      { address: '10.0.0.1', identity: 'spiffe://cluster.local/ns/shop/sa/web' },
    ]);
    put(
      cluster,
      SLICES,
      inShop(
        endpointSlice(
          'web',
          withSlicePort(8080, 'http'),
          withEndpoint('10.0.0.2', { pod: 'web-1' }),
        ),
      ),
    );
    await until(
      'the new endpoint',
      () => model.service('shop/web')?.service.endpoints[0]?.address === '10.0.0.2',
    );
    cluster.fake.remove(`${PODS}/web-1`);
    await until(
      'the plain-text endpoint',
      () => model.service('shop/web')?.service.endpoints[0]?.identity === null,
    );
  });

  it('reads the list items, which carry no kind or apiVersion', async () => {
    const { cluster, model, source } = setup();
    const bare = (raw: Raw): Raw => {
      const { kind: _kind, apiVersion: _apiVersion, ...rest } = inShop(raw);
      return rest;
    };
    put(cluster, SERVICES, bare(service('web', withPort(80, 'http'))));
    await source.start();
    model.commit();
    expect(model.service('shop/web')).toBeDefined();
  });

  it('keeps only what the model reads of a Pod in its cache, its nodeName included', () => {
    const slim = slimPod(
      inShop(
        pod(
          'web-1',
          meshed(),
          withServiceAccount('web'),
          withField('spec.nodeName', 'node-a'),
          withField('spec.tolerations', [{ key: 'k', operator: 'Exists' }]),
          withField('spec.containers', [
            {
              name: 'app',
              image: 'big',
              env: [{ name: 'A', value: 'x' }],
              ports: [{ containerPort: 8080 }],
            },
          ]),
        ),
      ),
    );
    expect(slim.spec).toEqual({
      serviceAccountName: 'web',
      serviceAccount: undefined,
      nodeName: 'node-a',
      containers: [{ ports: [{ containerPort: 8080 }] }],
      initContainers: undefined,
    });
    expect(JSON.stringify(slim)).not.toContain('"image"');
    expect(JSON.stringify(slim)).not.toContain('tolerations');
    // Of its status, the addresses and the Ready condition only.
    const withStatus = slimPod({
      ...inShop(pod('web-2')),
      status: {
        podIP: '10.0.0.2',
        conditions: [
          { type: 'PodScheduled', status: 'True' },
          { type: 'Ready', status: 'False', lastTransitionTime: '2026-01-01T00:00:00Z' },
        ],
        containerStatuses: [{ name: 'app', ready: false }],
      },
    });
    expect(withStatus.status).toEqual({
      podIP: '10.0.0.2',
      podIPs: undefined,
      conditions: [{ type: 'Ready', status: 'False', lastTransitionTime: '2026-01-01T00:00:00Z' }],
    });
  });

  it('keeps only the name, labels, resourceVersion and creationTimestamp of a Node in its cache', () => {
    const raw = { ...node('n1', zoned('region1', 'zone1')) };
    raw.metadata = { ...(raw.metadata as Raw), resourceVersion: '42' };
    const slim = slimNode(raw);
    expect(slim).toStrictEqual({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name: 'n1',
        resourceVersion: '42',
        creationTimestamp: '2026-01-02T03:04:05Z',
        labels: {
          'kubernetes.io/hostname': 'n1',
          'topology.kubernetes.io/region': 'region1',
          'topology.kubernetes.io/zone': 'zone1',
        },
      },
    });
    // As a list item (no kind, no apiVersion) it is still the same few fields.
    const { kind: _kind, apiVersion: _apiVersion, ...item } = raw;
    expect(Object.keys(slimNode(item).metadata ?? {}).sort()).toEqual([
      'creationTimestamp',
      'labels',
      'name',
      'resourceVersion',
    ]);
    expect(JSON.stringify(slimNode(item))).not.toMatch(/status|spec|managedFields|annotations/);
  });

  it('lists the Nodes and follows their label changes into the model, with their locality; a heartbeat changes nothing', async () => {
    const { cluster, model, source, changes } = setup();
    const nodes: unknown[] = [];
    const upsert = model.upsert.bind(model);
    jest.spyOn(model, 'upsert').mockImplementation((obj) => {
      if (obj.kind === 'Node') nodes.push(obj);
      return upsert(obj);
    });
    const removed: unknown[] = [];
    const remove = model.remove.bind(model);
    jest.spyOn(model, 'remove').mockImplementation((ref) => {
      if (ref.kind === 'Node') removed.push(ref);
      return remove(ref);
    });
    seedWeb(cluster);
    put(cluster, NODES, node('n1', zoned('region1', 'zone1')));
    put(cluster, NODES, node('n2', { 'failure-domain.beta.kubernetes.io/zone': 'old-zone' }));
    await source.start();
    expect(source.describe()).toMatchObject({
      kinds: { Node: { apiVersion: 'v1', synced: true } },
    });
    expect(nodes).toEqual([
      {
        kind: 'Node',
        meta: expect.objectContaining({ name: 'n1', namespace: '' }),
        locality: 'region1/zone1/',
      },
      {
        kind: 'Node',
        meta: expect.objectContaining({ name: 'n2', namespace: '' }),
        locality: '/old-zone/',
      },
    ]);
    expect(source.problems()).toEqual([]);

    // Relabelled (moved to another zone, a subzone added): through the watch.
    put(cluster, NODES, node('n1', zoned('region1', 'zone2', 'rack-7')));
    await until('the new locality', () => nodes.length === 3);
    expect(nodes[2]).toMatchObject({ meta: { name: 'n1' }, locality: 'region1/zone2/rack-7' });

    // Only its status moved (the kubelet's heartbeat): read, and nothing for the proxies.
    const before = changes();
    put(cluster, NODES, node('n1', zoned('region1', 'zone2', 'rack-7'), 'T1'));
    await until('the heartbeat read', () => nodes.length === 4);
    expect(nodes[3]).toEqual(nodes[2]);
    expect(changes()).toBe(before);

    cluster.fake.remove(`${NODES}/n2`);
    await until('n2 removed', () => removed.length === 1);
    expect(removed).toEqual([{ kind: 'Node', namespace: '', name: 'n2' }]);
  });

  it("brings a Node's locality to the scope of the Pods on it and to their endpoints, and follows it", async () => {
    const { cluster, model, source } = setup();
    seedWeb(cluster);
    put(
      cluster,
      PODS,
      inShop(
        pod(
          'web-1',
          meshed(),
          withServiceAccount('web'),
          withIP('10.0.0.1'),
          withField('spec.nodeName', 'n1'),
        ),
      ),
    );
    put(cluster, NODES, node('n1', zoned('region1', 'zone1')));
    await source.start();
    model.commit();
    expect(model.proxyScope('shop/web-1')?.locality).toBe('region1/zone1/');
    expect(model.service('shop/web')?.service.endpoints[0]?.locality).toBe('region1/zone1/');

    put(cluster, NODES, node('n1', zoned('region2', 'zone9', 'rack-1')));
    await until(
      'the new locality',
      () => model.proxyScope('shop/web-1')?.locality === 'region2/zone9/rack-1',
    );
    expect(model.service('shop/web')?.service.endpoints[0]?.locality).toBe('region2/zone9/rack-1');

    // The Node gone: the locality is unknown, so absent.
    cluster.fake.remove(`${NODES}/n1`);
    await until('no locality', () => model.proxyScope('shop/web-1')?.locality === undefined);
    expect(model.service('shop/web')?.service.endpoints[0]?.locality).toBeUndefined();
  });

  it('has PeerAuthentication off, said once, while its CRD is missing, and on once it appears', async () => {
    const { cluster, model, logs, source } = setup();
    seedWeb(cluster);
    await source.start();
    await new Promise((r) => setTimeout(r, 150));
    expect(logs.filter((l) => l.msg.startsWith('PeerAuthentication is off'))).toHaveLength(1);
    expect(model.proxyScope('shop/web-1')?.inbound.mtlsMode).toBe('PERMISSIVE');

    cluster.istioVersions = ['v1', 'v1beta1'];
    put(cluster, PAS, inShop(peerAuthentication('strict', withMode('STRICT'))));
    await until(
      'the STRICT policy',
      () => model.proxyScope('shop/web-1')?.inbound.mtlsMode === 'STRICT',
    );
    expect(
      logs.filter((l) => l.msg === 'PeerAuthentication is on').map((l) => l.fields.apiVersion),
    ).toEqual(['security.istio.io/v1']);

    cluster.istioVersions = [];
    await until(
      'the policy gone with its CRD',
      () => model.proxyScope('shop/web-1')?.inbound.mtlsMode === 'PERMISSIVE',
    );
    expect(logs.filter((l) => l.msg.startsWith('PeerAuthentication is off'))).toHaveLength(2);
  });

  it('reads PeerAuthentication v1beta1 where v1 is not served', async () => {
    const cluster = new Cluster();
    cluster.istioVersions = ['v1beta1'];
    const { model, source } = setup(cluster);
    seedWeb(cluster);
    put(
      cluster,
      '/apis/security.istio.io/v1beta1/namespaces/shop/peerauthentications',
      inShop(peerAuthentication('off', withMode('DISABLE'))),
    );
    await source.start();
    model.commit();
    expect(model.proxyScope('shop/web-1')?.inbound.mtlsMode).toBe('DISABLE');
  });

  it('waits at start for the PeerAuthentications of an installed CRD before it says it is loaded', async () => {
    const cluster = new Cluster();
    cluster.istioVersions = ['v1'];
    const { model, source } = setup(cluster);
    seedWeb(cluster);
    put(cluster, PAS, inShop(peerAuthentication('strict', withMode('STRICT'))));
    await source.start();
    expect(model.proxyScope('shop/web-1')?.inbound.mtlsMode).toBe('STRICT');
  });

  it('logs an invalid object once and skips it; keeps the last valid version of one an update broke', async () => {
    const { cluster, model, logs, source } = setup();
    seedWeb(cluster);
    put(cluster, SERVICES, inShop(service('bad', withPort(80, 'http', 'No_Name'))));
    await source.start();
    model.commit();
    expect(model.service('shop/bad')).toBeUndefined();
    expect(source.problems()).toEqual([
      expect.objectContaining({
        source: 'cluster',
        kind: 'Service',
        namespace: 'shop',
        name: 'bad',
        field: 'spec.ports[0].targetPort',
        effect: 'skipped',
      }),
    ]);
    put(cluster, SERVICES, inShop(service('web', withPort(80, 'http', 'No_Name'))));
    await until('the problem of web', () => source.problems().some((p) => p.name === 'web'));
    expect(source.problems().find((p) => p.name === 'web')?.effect).toBe('kept-last-valid');
    expect(model.service('shop/web')?.service.ports).toEqual([
      { port: 80, name: 'http', protocol: 'http' },
    ]);
    // The same invalid object again (an update of something else, a resync): not logged again.
    put(cluster, SERVICES, inShop(service('bad', withPort(80, 'http', 'No_Name'))));
    put(cluster, SERVICES, inShop(service('api', withPort(80, 'http'))));
    await until('the next object', () => model.service('shop/api'));
    expect(logs.filter((l) => l.msg === 'invalid mesh object')).toHaveLength(2);
    cluster.fake.remove(`${SERVICES}/bad`);
    await until(
      'the problem gone with its object',
      () => !source.problems().some((p) => p.name === 'bad'),
    );
  });

  it('puts an AuthorizationPolicy into the model as it is, and an invalid one in closed, whatever it held before', async () => {
    const cluster = new Cluster();
    cluster.istioVersions = ['v1'];
    const { model, logs, source } = setup(cluster);
    const upserted: unknown[] = [];
    const upsert = model.upsert.bind(model);
    jest.spyOn(model, 'upsert').mockImplementation((obj) => {
      if (obj.kind === 'AuthorizationPolicy') upserted.push(obj);
      return upsert(obj);
    });
    seedWeb(cluster);
    put(cluster, APS, authorizationPolicy('deny', 'DENY', ['/admin*']));
    await source.start();
    model.commit();
    expect(logs.filter((l) => l.msg === 'AuthorizationPolicy is on')).toHaveLength(1);
    expect(upserted).toEqual([
      {
        kind: 'AuthorizationPolicy',
        meta: expect.objectContaining({ namespace: 'shop', name: 'deny' }),
        selector: null,
        action: 'DENY',
        rules: [{ to: [{ paths: ['/admin*'] }] }],
      },
    ]);
    expect(model.proxyScope('shop/web-1')?.inbound.authorization).toEqual([
      { name: 'shop/deny', action: 'DENY', rules: [{ to: [{ paths: ['/admin*'] }] }] },
    ]);
    expect(source.problems()).toEqual([]);

    // A path template: not the last valid version (which lets /admin/x through) but the
    // validator's closed stand-in, which denies every request.
    put(cluster, APS, authorizationPolicy('deny', 'DENY', ['/a/{*}']));
    await until('the problem of deny', () => source.problems().some((p) => p.name === 'deny'));
    expect(upserted[1]).toEqual({
      kind: 'AuthorizationPolicy',
      meta: expect.objectContaining({ namespace: 'shop', name: 'deny' }),
      selector: null,
      action: 'DENY',
      rules: [{}],
      failClosed: expect.stringContaining('spec.rules[0].to[0].operation.paths[0]'),
    });
    expect(model.proxyScope('shop/web-1')?.inbound.authorization).toEqual([
      { name: 'shop/deny', action: 'DENY', rules: [{}] },
    ]);
    expect(source.problems()).toEqual([
      expect.objectContaining({
        source: 'cluster',
        kind: 'AuthorizationPolicy',
        namespace: 'shop',
        name: 'deny',
        field: 'spec.rules[0].to[0].operation.paths[0]',
        effect: 'fail-closed',
      }),
    ]);
    expect(logs.filter((l) => l.msg === 'invalid mesh object').map((l) => l.fields.effect)).toEqual(
      ['fail-closed'],
    );

    // Never valid (CUSTOM: no external authorizer): in closed as well, not skipped.
    put(cluster, APS, authorizationPolicy('ext', 'CUSTOM', ['/admin*']));
    await until('the policy ext', () =>
      model.proxyScope('shop/web-1')?.inbound.authorization?.some((a) => a.name === 'shop/ext'),
    );
    expect(upserted[2]).toMatchObject({
      action: 'DENY',
      rules: [{}],
      failClosed: expect.any(String),
    });
    expect(model.proxyScope('shop/web-1')?.inbound.authorization).toEqual([
      { name: 'shop/deny', action: 'DENY', rules: [{}] },
      { name: 'shop/ext', action: 'DENY', rules: [{}] },
    ]);
    expect(source.problems().find((p) => p.name === 'ext')).toMatchObject({
      field: 'spec.action',
      effect: 'fail-closed',
    });

    // Mended, then deleted: the policy as written, then none, and no problem left.
    put(cluster, APS, authorizationPolicy('deny', 'DENY', ['/admin*']));
    cluster.fake.remove(`${APS}/ext`);
    await until(
      'the mended policy alone',
      () => model.proxyScope('shop/web-1')?.inbound.authorization?.length === 1,
    );
    expect(model.proxyScope('shop/web-1')?.inbound.authorization).toEqual([
      { name: 'shop/deny', action: 'DENY', rules: [{ to: [{ paths: ['/admin*'] }] }] },
    ]);
    expect(source.problems()).toEqual([]);
    cluster.fake.remove(`${APS}/deny`);
    await until(
      'no policy',
      () => model.proxyScope('shop/web-1')?.inbound.authorization === undefined,
    );
  });

  it('has RequestAuthentication off while its CRD is missing; once served, brings it to the scopes of the Pods it selects, skips an invalid one, and takes it away when deleted', async () => {
    const { cluster, model, logs, source } = setup();
    seedWeb(cluster);
    put(
      cluster,
      PODS,
      inShop(pod('api-1', meshed(), withServiceAccount('api'), withIP('10.0.0.9'))),
    );
    await source.start();
    expect(logs.map((l) => l.msg)).toContain(
      'RequestAuthentication is off: its CRD (requestauthentications.security.istio.io) is not installed',
    );
    expect(source.describe()).toMatchObject({ kinds: { RequestAuthentication: 'off' } });

    // Served at v1beta1 only (an older Istio): read there.
    const ras = '/apis/security.istio.io/v1beta1/namespaces/shop/requestauthentications';
    cluster.istioVersions = ['v1beta1'];
    const jwks = jwksText();
    put(cluster, ras, {
      apiVersion: 'security.istio.io/v1beta1',
      kind: 'RequestAuthentication',
      metadata: { name: 'web-jwt', namespace: 'shop' },
      spec: {
        selector: { matchLabels: { app: 'web' } },
        jwtRules: [{ issuer: 'https://issuer.example.com', jwks, audiences: ['web'] }],
      },
    });
    await until('the JWT provider in the scope of web-1', () =>
      model.proxyScope('shop/web-1')?.inbound.jwt?.at(0),
    );
    expect(
      logs.filter((l) => l.msg === 'RequestAuthentication is on').map((l) => l.fields.apiVersion),
    ).toEqual(['security.istio.io/v1beta1']);
    expect(model.counts()).toMatchObject({ RequestAuthentication: 1 });
    expect(model.proxyScope('shop/web-1')?.inbound.jwt).toEqual([
      expect.objectContaining({
        source: 'shop/web-jwt',
        issuer: 'https://issuer.example.com',
        jwks,
        audiences: ['web'],
      }),
    ]);
    // Its selector does not match api-1.
    expect(model.proxyScope('shop/api-1')?.inbound.jwt ?? []).toEqual([]);
    expect(source.problems()).toEqual([]);

    // spec.targetRef (which the CRD lets through): logged and skipped, the field named.
    put(cluster, ras, {
      apiVersion: 'security.istio.io/v1beta1',
      kind: 'RequestAuthentication',
      metadata: { name: 'by-target', namespace: 'shop' },
      spec: {
        targetRef: { group: '', kind: 'Service', name: 'api' },
        jwtRules: [{ issuer: 'https://other.example.com', jwks }],
      },
    });
    await until('the problem of by-target', () =>
      source.problems().some((p) => p.name === 'by-target'),
    );
    expect(source.problems()).toEqual([
      expect.objectContaining({
        source: 'cluster',
        kind: 'RequestAuthentication',
        namespace: 'shop',
        name: 'by-target',
        field: 'spec.targetRef',
        effect: 'skipped',
      }),
    ]);
    model.commit();
    expect(model.counts()).toMatchObject({ RequestAuthentication: 1 });
    expect(model.proxyScope('shop/api-1')?.inbound.jwt ?? []).toEqual([]);
    expect(model.proxyScope('shop/web-1')?.inbound.jwt?.map((j) => j.issuer)).toEqual([
      'https://issuer.example.com',
    ]);

    cluster.fake.remove(`${ras}/web-jwt`);
    await until(
      'the provider gone',
      () => (model.proxyScope('shop/web-1')?.inbound.jwt ?? []).length === 0,
    );
    expect(model.counts()).toMatchObject({ RequestAuthentication: 0 });
  });

  it('watches VirtualServices, DestinationRules and HTTPRoutes once their CRDs are served', async () => {
    const { cluster, model, logs, source } = setup();
    seedWeb(cluster);
    await source.start();
    expect(logs.map((l) => l.msg)).toEqual(
      expect.arrayContaining([
        'VirtualService is off: its CRD (virtualservices.networking.istio.io) is not installed',
        'HTTPRoute is off: its CRD (httproutes.gateway.networking.k8s.io) is not installed',
      ]),
    );
    cluster.groups.set('networking.istio.io', ['v1', 'v1beta1']);
    cluster.groups.set('gateway.networking.k8s.io', ['v1']);
    put(cluster, '/apis/networking.istio.io/v1/namespaces/shop/virtualservices', {
      apiVersion: 'networking.istio.io/v1',
      kind: 'VirtualService',
      metadata: { name: 'web', namespace: 'shop' },
      spec: {
        hosts: ['web'],
        http: [{ route: [{ destination: { host: 'web' } }], timeout: '3s' }],
      },
    });
    put(cluster, '/apis/networking.istio.io/v1/namespaces/shop/destinationrules', {
      apiVersion: 'networking.istio.io/v1',
      kind: 'DestinationRule',
      metadata: { name: 'web', namespace: 'shop' },
      spec: { host: 'web', trafficPolicy: { loadBalancer: { simple: 'ROUND_ROBIN' } } },
    });
    await until('the routes and the policy', () => {
      const s = model.service('shop/web')?.service;
      return s?.routes !== undefined && s.policy !== undefined;
    });
    expect(model.service('shop/web')?.service.routes?.rules[0]?.timeoutMs).toBe(3000);
    expect(model.counts()).toMatchObject({ VirtualService: 1, DestinationRule: 1, HTTPRoute: 0 });
    expect(logs.filter((l) => l.msg === 'HTTPRoute is on').map((l) => l.fields.apiVersion)).toEqual(
      ['gateway.networking.k8s.io/v1'],
    );
  });

  it('has ServiceEntry off while its CRD is missing; once served, brings each entry to the model as a service of its host, and takes it away when deleted', async () => {
    const { cluster, model, logs, source } = setup();
    seedWeb(cluster);
    await source.start();
    expect(logs.map((l) => l.msg)).toContain(
      'ServiceEntry is off: its CRD (serviceentries.networking.istio.io) is not installed',
    );
    expect(source.describe()).toMatchObject({ kinds: { ServiceEntry: 'off' } });

    // The CRD serves v1beta1 only (an older Istio): the entry is read there.
    const entries = '/apis/networking.istio.io/v1beta1/namespaces/shop/serviceentries';
    cluster.groups.set('networking.istio.io', ['v1beta1']);
    put(cluster, entries, {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'ServiceEntry',
      metadata: { name: 'external-api', namespace: 'shop' },
      spec: {
        hosts: ['api.example.com'],
        ports: [{ number: 443, name: 'https', protocol: 'HTTPS' }],
        resolution: 'DNS',
      },
    });
    const built = await until('the entry in the model', () => model.service('api.example.com'));
    expect(
      logs.filter((l) => l.msg === 'ServiceEntry is on').map((l) => l.fields.apiVersion),
    ).toEqual(['networking.istio.io/v1beta1']);
    expect(model.counts()).toMatchObject({ ServiceEntry: 1 });
    expect(built.service).toMatchObject({
      key: 'api.example.com',
      namespace: 'shop',
      hostname: 'api.example.com',
      ports: [{ port: 443, name: 'https', protocol: 'tcp', tls: true }],
      endpoints: [{ address: 'api.example.com', ports: { '443': 443 } }],
      entry: {
        source: { namespace: 'shop', name: 'external-api' },
        location: 'MESH_EXTERNAL',
        resolution: 'DNS',
      },
    });
    expect(source.problems()).toEqual([]);

    // An invalid entry (a workloadSelector beside endpoints, which the CRD lets through): logged
    // and skipped.
    put(cluster, entries, {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'ServiceEntry',
      metadata: { name: 'by-selector', namespace: 'shop' },
      spec: {
        hosts: ['vm.example.com'],
        ports: [{ number: 80, name: 'http', protocol: 'HTTP' }],
        resolution: 'STATIC',
        workloadSelector: { labels: { app: 'vm' } },
        endpoints: [{ address: '192.0.2.1' }],
      },
    });
    await until('the problem of by-selector', () =>
      source.problems().some((p) => p.name === 'by-selector'),
    );
    expect(source.problems()).toEqual([
      expect.objectContaining({
        kind: 'ServiceEntry',
        namespace: 'shop',
        name: 'by-selector',
        field: 'spec.endpoints',
        effect: 'skipped',
      }),
    ]);
    expect(model.service('vm.example.com')).toBeUndefined();

    cluster.fake.remove(`${entries}/external-api`);
    await until('the entry gone', () => model.service('api.example.com') === undefined);
    expect(model.counts()).toMatchObject({ ServiceEntry: 0 });
  });

  it("has Sidecar off while its CRD is missing; once served, limits its namespace's proxies to the services of its egress hosts, skips one with ingress listeners, and gives them back when deleted", async () => {
    const { cluster, model, logs, source } = setup();
    seedWeb(cluster);
    put(
      cluster,
      '/api/v1/namespaces/bank/services',
      withField('metadata.namespace', 'bank')(service('ledger', withPort(80, 'http', 8080))),
    );
    await source.start();
    model.commit();
    expect(logs.map((l) => l.msg)).toContain(
      'Sidecar is off: its CRD (sidecars.networking.istio.io) is not installed',
    );
    expect(source.describe()).toMatchObject({ kinds: { Sidecar: 'off' } });
    const seenFrom = (namespace: string) => model.visibleServices(namespace).map((b) => b.key);
    expect(seenFrom('shop')).toEqual(['bank/ledger', 'shop/web']);

    // Served at v1beta1 only (an older Istio): read there. Egress to the proxies' own namespace.
    const sidecars = (ns: string) => `/apis/networking.istio.io/v1beta1/namespaces/${ns}/sidecars`;
    cluster.groups.set('networking.istio.io', ['v1beta1']);
    put(cluster, sidecars('shop'), {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'Sidecar',
      metadata: { name: 'default', namespace: 'shop' },
      spec: { egress: [{ hosts: ['./*'] }], outboundTrafficPolicy: { mode: 'REGISTRY_ONLY' } },
    });
    await until('bank/ledger hidden from shop', () => !seenFrom('shop').includes('bank/ledger'));
    expect(logs.filter((l) => l.msg === 'Sidecar is on').map((l) => l.fields.apiVersion)).toEqual([
      'networking.istio.io/v1beta1',
    ]);
    expect(model.counts()).toMatchObject({ Sidecar: 1 });
    expect(seenFrom('shop')).toEqual(['shop/web']);
    expect(model.proxyScope('shop/web-1')?.outboundTrafficPolicy).toBe('REGISTRY_ONLY');
    // Another namespace's proxies still see everything.
    expect(seenFrom('bank')).toEqual(['bank/ledger', 'shop/web']);
    expect(source.problems()).toEqual([]);

    // spec.ingress (which the CRD lets through): logged and skipped, the field named; taken, it
    // would hide shop/web from bank.
    put(cluster, sidecars('bank'), {
      apiVersion: 'networking.istio.io/v1beta1',
      kind: 'Sidecar',
      metadata: { name: 'by-selector', namespace: 'bank' },
      spec: { ingress: [{ port: { number: 8080 } }], egress: [{ hosts: ['./*'] }] },
    });
    await until('the problem of by-selector', () =>
      source.problems().some((p) => p.name === 'by-selector'),
    );
    expect(source.problems()).toEqual([
      expect.objectContaining({
        source: 'cluster',
        kind: 'Sidecar',
        namespace: 'bank',
        name: 'by-selector',
        field: 'spec.ingress',
        effect: 'skipped',
      }),
    ]);
    model.commit();
    expect(model.counts()).toMatchObject({ Sidecar: 1 });
    expect(seenFrom('bank')).toEqual(['bank/ledger', 'shop/web']);

    cluster.fake.remove(`${sidecars('shop')}/default`);
    await until('bank/ledger seen from shop again', () => seenFrom('shop').includes('bank/ledger'));
    expect(model.counts()).toMatchObject({ Sidecar: 0 });
    expect(seenFrom('shop')).toEqual(['bank/ledger', 'shop/web']);
    expect(model.proxyScope('shop/web-1')?.outboundTrafficPolicy).toBeUndefined();
  });

  it("has Telemetry off while its CRD is missing; once served, brings the root namespace's and a namespace's to the scopes of their Pods, skips one with targetRefs, and takes them away when deleted", async () => {
    const { cluster, model, logs, source } = setup();
    seedWeb(cluster);
    put(
      cluster,
      '/api/v1/namespaces/bank/pods',
      inNamespace('bank')(
        pod('ledger-1', meshed(), withServiceAccount('ledger'), withIP('10.0.1.1')),
      ),
    );
    await source.start();
    model.commit();
    expect(logs.map((l) => l.msg)).toContain(
      'Telemetry is off: its CRD (telemetries.telemetry.istio.io) is not installed',
    );
    expect(source.describe()).toMatchObject({ kinds: { Telemetry: 'off' } });
    expect(model.proxyScope('shop/web-1')?.traceSamplingPercent).toBeUndefined();

    // Served at v1alpha1 only (an older Istio): read there. The root namespace's applies to
    // every Pod of the mesh, shop's to shop's only.
    const telemetries = (ns: string) =>
      `/apis/telemetry.istio.io/v1alpha1/namespaces/${ns}/telemetries`;
    cluster.groups.set('telemetry.istio.io', ['v1alpha1']);
    put(cluster, telemetries('mooring-system'), {
      apiVersion: 'telemetry.istio.io/v1alpha1',
      kind: 'Telemetry',
      metadata: { name: 'mesh-default', namespace: 'mooring-system' },
      spec: { tracing: [{ randomSamplingPercentage: 25 }] },
    });
    put(cluster, telemetries('shop'), {
      apiVersion: 'telemetry.istio.io/v1alpha1',
      kind: 'Telemetry',
      metadata: { name: 'shop', namespace: 'shop' },
      spec: {
        accessLogging: [{ match: { mode: 'SERVER' } }],
        metrics: [
          { overrides: [{ match: { metric: 'REQUEST_COUNT', mode: 'CLIENT' }, disabled: true }] },
        ],
      },
    });
    await until(
      'both Telemetries in the scope of web-1',
      () =>
        model.proxyScope('shop/web-1')?.traceSamplingPercent === 25 &&
        model.proxyScope('shop/web-1')?.accessLog === true,
    );
    expect(logs.filter((l) => l.msg === 'Telemetry is on').map((l) => l.fields.apiVersion)).toEqual(
      ['telemetry.istio.io/v1alpha1'],
    );
    expect(model.counts()).toMatchObject({ Telemetry: 2 });
    expect(model.proxyScope('shop/web-1')).toMatchObject({
      traceSamplingPercent: 25,
      accessLog: true,
      accessLogSide: 'inbound',
      metricOverrides: [{ metric: 'REQUEST_COUNT', mode: 'CLIENT', disabled: true }],
    });
    const ledger = model.proxyScope('bank/ledger-1');
    expect(ledger?.traceSamplingPercent).toBe(25);
    expect([ledger?.accessLog, ledger?.accessLogSide, ledger?.metricOverrides]).toEqual([
      undefined,
      undefined,
      undefined,
    ]);
    expect(source.problems()).toEqual([]);

    // spec.targetRefs (which the CRD lets through): logged and skipped, the field named; taken,
    // it would sample every request of bank.
    put(cluster, telemetries('bank'), {
      apiVersion: 'telemetry.istio.io/v1alpha1',
      kind: 'Telemetry',
      metadata: { name: 'by-target', namespace: 'bank' },
      spec: {
        targetRefs: [{ group: '', kind: 'Service', name: 'ledger' }],
        tracing: [{ randomSamplingPercentage: 100 }],
      },
    });
    await until('the problem of by-target', () =>
      source.problems().some((p) => p.name === 'by-target'),
    );
    expect(source.problems()).toEqual([
      expect.objectContaining({
        source: 'cluster',
        kind: 'Telemetry',
        namespace: 'bank',
        name: 'by-target',
        field: 'spec.targetRefs',
        effect: 'skipped',
      }),
    ]);
    model.commit();
    expect(model.counts()).toMatchObject({ Telemetry: 2 });
    expect(model.proxyScope('bank/ledger-1')?.traceSamplingPercent).toBe(25);

    cluster.fake.remove(`${telemetries('mooring-system')}/mesh-default`);
    cluster.fake.remove(`${telemetries('shop')}/shop`);
    await until(
      'no Telemetry in the scope of web-1',
      () =>
        model.proxyScope('shop/web-1')?.traceSamplingPercent === undefined &&
        model.proxyScope('shop/web-1')?.accessLog === undefined,
    );
    expect(model.counts()).toMatchObject({ Telemetry: 0 });
    const web = model.proxyScope('shop/web-1');
    expect([web?.accessLogSide, web?.metricOverrides]).toEqual([undefined, undefined]);
    expect(model.proxyScope('bank/ledger-1')?.traceSamplingPercent).toBeUndefined();
  });

  it('has WorkloadEntry off while its CRD is missing; once served, makes an entry an endpoint of the Services of its namespace that select its labels, skips one whose address is a name, and takes it away when deleted', async () => {
    const { cluster, model, logs, source } = setup();
    seedWeb(cluster);
    await source.start();
    model.commit();
    expect(logs.map((l) => l.msg)).toContain(
      'WorkloadEntry is off: its CRD (workloadentries.networking.istio.io) is not installed',
    );
    expect(source.describe()).toMatchObject({ kinds: { WorkloadEntry: 'off' } });
    const endpoints = () => model.service('shop/web')?.service.endpoints ?? [];
    const addresses = () => endpoints().map((e) => e.address);
    expect(addresses()).toEqual(['10.0.0.1']);

    // Served at v1 and v1beta1, as the chart's CRD serves it: read at v1. A VM with web's labels
    // (shop/web selects app=web, port 80 to targetPort 8080) and a service account: meshed.
    const entries = (ns: string) => `/apis/networking.istio.io/v1/namespaces/${ns}/workloadentries`;
    cluster.groups.set('networking.istio.io', ['v1', 'v1beta1']);
    put(cluster, entries('shop'), {
      apiVersion: 'networking.istio.io/v1',
      kind: 'WorkloadEntry',
      metadata: { name: 'vm-1', namespace: 'shop' },
      spec: { address: '10.9.0.1', labels: { app: 'web' }, serviceAccount: 'vm' },
    });
    await until('the VM an endpoint of shop/web', () => addresses().includes('10.9.0.1'));
    expect(
      logs.filter((l) => l.msg === 'WorkloadEntry is on').map((l) => l.fields.apiVersion),
    ).toEqual(['networking.istio.io/v1']);
    expect(model.counts()).toMatchObject({ WorkloadEntry: 1 });
    expect(endpoints().find((e) => e.address === '10.9.0.1')).toMatchObject({
      address: '10.9.0.1',
      ports: { '80': 8080 },
      identity: 'spiffe://cluster.local/ns/shop/sa/vm',
    });
    // The Pod's endpoint stays beside it.
    expect(addresses().sort()).toEqual(['10.0.0.1', '10.9.0.1']);
    expect(source.problems()).toEqual([]);

    // Another namespace's entry with the same labels is read, but is no endpoint of shop/web; an
    // entry whose address is a DNS name (which the CRD lets through) is logged and skipped, the
    // field named.
    put(cluster, entries('bank'), {
      apiVersion: 'networking.istio.io/v1',
      kind: 'WorkloadEntry',
      metadata: { name: 'vm-2', namespace: 'bank' },
      spec: { address: '10.9.0.2', labels: { app: 'web' } },
    });
    put(cluster, entries('shop'), {
      apiVersion: 'networking.istio.io/v1',
      kind: 'WorkloadEntry',
      metadata: { name: 'by-name', namespace: 'shop' },
      spec: { address: 'vm.example.com', labels: { app: 'web' } },
    });
    await until('the problem of by-name', () =>
      source.problems().some((p) => p.name === 'by-name'),
    );
    expect(source.problems()).toEqual([
      expect.objectContaining({
        source: 'cluster',
        kind: 'WorkloadEntry',
        namespace: 'shop',
        name: 'by-name',
        field: 'spec.address',
        effect: 'skipped',
      }),
    ]);
    model.commit();
    expect(model.counts()).toMatchObject({ WorkloadEntry: 2 });
    expect(addresses().sort()).toEqual(['10.0.0.1', '10.9.0.1']);

    cluster.fake.remove(`${entries('shop')}/vm-1`);
    await until('the VM gone from shop/web', () => !addresses().includes('10.9.0.1'));
    expect(model.counts()).toMatchObject({ WorkloadEntry: 1 });
    expect(addresses()).toEqual(['10.0.0.1']);
  });

  it("reads its objects again when a CRD's schema changes, though their resourceVersion did not move", async () => {
    const { cluster, model, logs, source } = setup();
    seedWeb(cluster);
    const routes = '/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes';
    cluster.groups.set('gateway.networking.k8s.io', ['v1']);
    cluster.crds.set('httproutes.gateway.networking.k8s.io', 1);
    // The standard channel's schema: no `retry` (the apiserver prunes it when it reads).
    const standard = (raw: Raw): Raw => {
      const spec = raw.spec as { rules: Record<string, unknown>[] };
      return { ...raw, spec: { ...spec, rules: spec.rules.map(({ retry: _pruned, ...r }) => r) } };
    };
    cluster.pruning.set(routes, standard);
    cluster.pruning.set('/apis/gateway.networking.k8s.io/v1/httproutes', standard);
    put(cluster, routes, {
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'web', namespace: 'shop' },
      spec: {
        parentRefs: [{ group: '', kind: 'Service', name: 'web', port: 80 }],
        rules: [{ backendRefs: [{ name: 'web', port: 80 }], retry: { attempts: 3, codes: [503] } }],
      },
    });
    await source.start();
    const rule = () => model.service('shop/web')?.service.routes?.rules[0];
    await until('the route', () => rule() !== undefined);
    expect(rule()?.retries).toBeUndefined(); // The field was pruned: the defaults apply.

    // The experimental channel's CRD replaces it: same objects, more of them kept.
    cluster.pruning.clear();
    cluster.crds.set('httproutes.gateway.networking.k8s.io', 2);
    await until('the retry of the new schema', () => rule()?.retries?.attempts === 3);
    expect(rule()?.retries?.retriableStatusCodes).toEqual([503]);
    expect(logs.map((l) => l.msg)).toContain(
      'the CRD of HTTPRoute changed: listing its objects again',
    );
  });
});

describe("cluster mode's mesh source: TCPRoutes and TLSRoutes (GAMMA)", () => {
  const GATEWAY = '/apis/gateway.networking.k8s.io';
  const TCP_ROUTES = `${GATEWAY}/v1alpha2/namespaces/shop/tcproutes`;
  const TLS_ROUTES = `${GATEWAY}/v1alpha2/namespaces/shop/tlsroutes`;

  const route = (kind: string, apiVersion: string, name: string, spec: Raw): Raw => ({
    apiVersion: `gateway.networking.k8s.io/${apiVersion}`,
    kind,
    metadata: { name, namespace: 'shop' },
    spec,
  });

  type Parent = {
    controllerName: string;
    parentRef: Record<string, unknown>;
    conditions: { type: string; status: string; reason: string }[];
  };
  const parentsOf = (cluster: Cluster, path: string): Parent[] | undefined =>
    cluster.fake.get<{ status?: { parents?: Parent[] } }>(path)?.status?.parents;
  const conditions = (parents: Parent[] | undefined) =>
    Object.fromEntries(
      (parents?.find((p) => p.controllerName === 'mooring.dev/mesh')?.conditions ?? []).map((c) => [
        c.type,
        [c.status, c.reason],
      ]),
    );

  it('watches them at a version the apiserver serves (v1alpha2 alone, as an older experimental channel), brings them to the model, and writes their status', async () => {
    const cluster = new Cluster();
    cluster.groups.set('gateway.networking.k8s.io', ['v1alpha2']);
    const { model, logs, source } = setup(cluster);
    seedWeb(cluster);
    for (const [name, port, portName] of [
      ['db', 5432, 'tcp-db'],
      ['db-v2', 5432, 'tcp-db'],
      ['vault', 443, 'tls'],
      ['vault-v2', 443, 'tls'],
    ] as const) {
      put(cluster, SERVICES, inShop(service(name, withPort(port, portName))));
    }
    await source.start();
    expect(
      logs
        .filter((l) => l.msg === 'TCPRoute is on' || l.msg === 'TLSRoute is on')
        .map((l) => [l.msg, l.fields.apiVersion])
        .sort(),
    ).toEqual([
      ['TCPRoute is on', 'gateway.networking.k8s.io/v1alpha2'],
      ['TLSRoute is on', 'gateway.networking.k8s.io/v1alpha2'],
    ]);
    // The status written after the Services' events is long done: what follows is written
    // because the routes' own events ask for it.
    await new Promise((r) => setTimeout(r, 400));

    put(
      cluster,
      TCP_ROUTES,
      route('TCPRoute', 'v1alpha2', 'db', {
        parentRefs: [{ group: '', kind: 'Service', name: 'db', port: 5432 }],
        rules: [{ backendRefs: [{ name: 'db-v2', port: 5432 }] }],
      }),
    );
    put(
      cluster,
      TLS_ROUTES,
      route('TLSRoute', 'v1alpha2', 'vault', {
        hostnames: ['vault.example.com'],
        parentRefs: [{ group: '', kind: 'Service', name: 'vault', port: 443 }],
        rules: [{ backendRefs: [{ name: 'vault-v2', port: 443 }] }],
      }),
    );
    await until('both routes in the model', () => {
      const db = model.service('shop/db')?.service;
      const vault = model.service('shop/vault')?.service;
      return db?.tcpRoutes !== undefined && vault?.tlsRoutes !== undefined;
    });
    expect(model.counts()).toMatchObject({ TCPRoute: 1, TLSRoute: 1 });
    expect(model.service('shop/db')?.service.tcpRoutes).toMatchObject({
      source: { kind: 'TCPRoute', namespace: 'shop', name: 'db' },
      rules: [
        {
          matches: [{ port: 5432 }],
          destinations: [{ service: 'shop/db-v2', port: 5432, weight: 1 }],
        },
      ],
    });
    expect(model.service('shop/vault')?.service.tlsRoutes).toMatchObject({
      source: { kind: 'TLSRoute', namespace: 'shop', name: 'vault' },
      rules: [
        {
          matches: [{ port: 443, sniHosts: ['vault.example.com'] }],
          destinations: [{ service: 'shop/vault-v2', port: 443, weight: 1 }],
        },
      ],
    });

    const tcpStatus = await until('the TCPRoute status', () =>
      parentsOf(cluster, `${TCP_ROUTES}/db`),
    );
    const tlsStatus = await until('the TLSRoute status', () =>
      parentsOf(cluster, `${TLS_ROUTES}/vault`),
    );
    for (const parents of [tcpStatus, tlsStatus]) {
      expect(conditions(parents)).toEqual({
        Accepted: ['True', 'Accepted'],
        ResolvedRefs: ['True', 'ResolvedRefs'],
      });
    }
    expect(tcpStatus[0]?.parentRef).toMatchObject({ kind: 'Service', name: 'db', port: 5432 });
    // Each through its kind's /status subresource, at the version it is watched at.
    const puts = cluster.fake.calls.filter((c) => c.method === 'PUT').map((c) => c.path);
    expect(puts).toEqual(
      expect.arrayContaining([`${TCP_ROUTES}/db/status`, `${TLS_ROUTES}/vault/status`]),
    );
    expect(
      cluster.fake.calls.find((c) => c.path === `${TCP_ROUTES}/db/status`)?.body,
    ).toMatchObject({ apiVersion: 'gateway.networking.k8s.io/v1alpha2', kind: 'TCPRoute' });

    // A backend gone: the TCPRoute's status says so.
    cluster.fake.remove(`${SERVICES}/db-v2`);
    await until(
      'ResolvedRefs False',
      () => conditions(parentsOf(cluster, `${TCP_ROUTES}/db`)).ResolvedRefs?.[0] === 'False',
    );
    expect(conditions(parentsOf(cluster, `${TCP_ROUTES}/db`)).ResolvedRefs).toEqual([
      'False',
      'BackendNotFound',
    ]);
  });
});

// The built-in proxy inside real Pods on a node: two Deployments behind Services talking through
// both sidecars with mutual TLS (HTTP and gRPC), a Pod outside the mesh reached in plain text,
// PERMISSIVE then STRICT (a PeerAuthentication applied with kubectl), an AuthorizationPolicy
// applied with kubectl, a RequestAuthentication (JWT) with one, a rolling update of the
// server that drops no request, Istio's traffic rules (a weighted split, a header route)
// honoured by real Pods, locality load balancing (a PreferClose Service keeps a caller in its
// Node's zone, and fails over to the next zone of its region), and Istio's Telemetry API (the
// access log's side, metric overrides on /stats/prometheus). There is no kube-proxy on
// this node: a ClusterIP works only through the caller's sidecar, so every call to one below
// went through it.
import * as path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { REPO_ROOT } from '../e2e/harness/control-plane';
import { kubectl, kubectlJson } from '../e2e/harness/kube';
import { request, waitFor } from '../e2e/support/mooring';
import { nowS, testIssuer } from '../fixtures/jwt';
import {
  apply,
  deployEcho,
  echoed,
  grpcFrom,
  httpFrom,
  isReady,
  listPods,
  loopFrom,
  meshNamespace,
  plainNamespace,
  proxyConfig,
  repeatFrom,
  setHealth,
  spiffeId,
  useMeshCluster,
  waitForPod,
  type Echo,
  type EchoOptions,
  type Pod,
  type ProxyConfigDump,
} from './support/mesh';

const env = useMeshCluster();

describe('meshed Deployments behind Services, and a Pod outside the mesh', () => {
  let ns: string;
  let server: Echo;
  let client: Echo;
  let outside: Echo;

  beforeAll(async () => {
    ns = await meshNamespace(env);
    const plain = await plainNamespace(env);
    [server, client, outside] = await Promise.all([
      deployEcho(env, ns, 'server', { replicas: 2 }),
      deployEcho(env, ns, 'client'),
      deployEcho(env, plain, 'outside'),
    ]);
  }, 300_000);

  it('a request to the other’s ClusterIP goes through both sidecars with mutual TLS: the app sees the caller’s SPIFFE ID', async () => {
    const answer = echoed(
      await httpFrom(client.pods[0]!, `http://${server.clusterIP}:8080/hello`, {
        // A header of that name from the app is never believed.
        headers: { 'x-forwarded-client-cert': `By=x;URI=${spiffeId('kube-system', 'admin')}` },
      }),
    );
    expect(answer.path).toBe('/hello');
    expect(server.pods.map((p) => p.metadata.name)).toContain(answer.pod);
    expect(answer.headers['x-forwarded-client-cert']).toBe(
      `By=${spiffeId(ns, 'server')};URI=${spiffeId(ns, 'client')}`,
    );
    // The server's sidecar counted it as mutual TLS from the client's identity (15090 is never
    // captured: the host reads it at the Pod's address).
    const served = server.pods.find((p) => p.metadata.name === answer.pod)!;
    const stats = await request(`http://${served.status.podIP}:15090/stats/prometheus`);
    expect(stats.body).toMatch(
      new RegExp(
        `istio_requests_total\\{reporter="destination",[^}]*source_principal="${spiffeId(ns, 'client')}"` +
          `[^}]*connection_security_policy="mutual_tls"[^}]*response_code="200"[^}]*\\} [1-9]`,
      ),
    );
  });

  it('a gRPC call to the ClusterIP goes through both sidecars too', async () => {
    const answer = await grpcFrom(client.pods[0]!, `${server.clusterIP}:50051`, { say: 'hi' });
    expect(answer.error).toBeUndefined();
    expect(answer.response?.message).toEqual({ say: 'hi' });
    expect(answer.response?.metadata['x-forwarded-client-cert']).toBe(
      `By=${spiffeId(ns, 'server')};URI=${spiffeId(ns, 'client')}`,
    );
  });

  it('a Pod outside the mesh, behind its Service, is reached in plain text', async () => {
    const answer = echoed(
      await httpFrom(client.pods[0]!, `http://${outside.clusterIP}:8080/to-outside`),
    );
    expect(answer.pod).toBe(outside.pods[0]!.metadata.name);
    expect(answer.path).toBe('/to-outside');
    expect(answer.headers['x-forwarded-client-cert']).toBeUndefined();
    // From the client's own address: its sidecar dialled the endpoint (a plain HTTP server read
    // the request, so it was plain text).
    expect(answer.peer.address).toBe(client.pods[0]!.status.podIP);
  });

  it('takes plain text from outside the mesh while PERMISSIVE; STRICT, applied with kubectl, refuses it and keeps mutual TLS', async () => {
    const target = server.pods[0]!;
    const plainUrl = `http://${target.status.podIP}:8080/plain`;
    const before = echoed(await httpFrom(outside.pods[0]!, plainUrl));
    expect(before.pod).toBe(target.metadata.name);
    expect(before.headers['x-forwarded-client-cert']).toBeUndefined();

    await apply(env, ns, {
      apiVersion: 'security.istio.io/v1',
      kind: 'PeerAuthentication',
      metadata: { name: 'default' },
      spec: { mtls: { mode: 'STRICT' } },
    });
    const refused = await waitFor(
      'plain text refused',
      async () => {
        const a = await httpFrom(outside.pods[0]!, plainUrl);
        return a.status === undefined ? a : undefined;
      },
      60_000,
    );
    expect(refused.error).toBeDefined();
    // Mutual TLS from a meshed Pod still passes, to the same Pod.
    const meshed = echoed(
      await httpFrom(client.pods[0]!, `http://${target.status.podIP}:8080/strict`),
    );
    expect(meshed.pod).toBe(target.metadata.name);
    expect(meshed.headers['x-forwarded-client-cert']).toBe(
      `By=${spiffeId(ns, 'server')};URI=${spiffeId(ns, 'client')}`,
    );

    // The policy deleted: plain text is taken again.
    await kubectl(env.cluster.controlPlane, [
      ...['delete', 'peerauthentication', 'default', '-n', ns],
    ]);
    await waitFor(
      'plain text taken again',
      async () => ((await httpFrom(outside.pods[0]!, plainUrl)).status === 200 ? true : undefined),
      60_000,
    );
  }, 150_000);

  it('an AuthorizationPolicy applied with kubectl lets through only what it names: the client’s service account on GET /api/*', async () => {
    const target = server.pods[0]!;
    const url = (p: string): string => `http://${server.clusterIP}:8080${p}`;
    await apply(env, ns, {
      apiVersion: 'security.istio.io/v1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'server-from-client' },
      spec: {
        selector: { matchLabels: { app: 'server' } },
        rules: [
          {
            from: [{ source: { principals: [spiffeId(ns, 'client').slice('spiffe://'.length)] } }],
            to: [{ operation: { methods: ['GET'], paths: ['/api/*'] } }],
          },
        ],
      },
    });
    const denied = await waitFor(
      'the policy in force',
      async () => {
        const a = await httpFrom(client.pods[0]!, url('/other'));
        return a.status === 403 ? a : undefined;
      },
      60_000,
    );
    expect(denied.body).toBe('RBAC: access denied');
    expect(echoed(await httpFrom(client.pods[0]!, url('/api/items'))).path).toBe('/api/items');
    // Plain text from outside the mesh has no principal.
    const plain = await httpFrom(outside.pods[0]!, `http://${target.status.podIP}:8080/api/items`);
    expect(plain.status).toBe(403);

    await kubectl(env.cluster.controlPlane, [
      ...['delete', 'authorizationpolicy', 'server-from-client', '-n', ns],
    ]);
    await waitFor(
      'the policy gone',
      async () =>
        (await httpFrom(client.pods[0]!, url('/other'))).status === 200 ? true : undefined,
      60_000,
    );
  }, 150_000);

  it('a RequestAuthentication (JWT) with an AuthorizationPolicy on requestPrincipals, applied with kubectl: no token 403, a valid one passes as x-user, a forged one 401', async () => {
    const issuer = 'https://issuer.example.com';
    const keys = testIssuer('ES256');
    // Another key pair under the same kid: its signature cannot verify with the JWKS above.
    const forger = testIssuer('ES256', keys.kid);
    const claims = { iss: issuer, sub: 'alice', iat: nowS(), exp: nowS() + 3600 };
    const url = `http://${server.clusterIP}:8080/jwt`;
    const call = (token?: string, to = url): ReturnType<typeof httpFrom> =>
      httpFrom(client.pods[0]!, to, {
        headers: {
          // The claim's header is the proxy's alone: one sent by the client is dropped.
          'x-user': 'mallory',
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
        },
      });
    await apply(
      env,
      ns,
      {
        apiVersion: 'security.istio.io/v1',
        kind: 'RequestAuthentication',
        metadata: { name: 'server-jwt' },
        spec: {
          selector: { matchLabels: { app: 'server' } },
          jwtRules: [
            { issuer, jwks: keys.jwks, outputClaimToHeaders: [{ header: 'x-user', claim: 'sub' }] },
          ],
        },
      },
      {
        apiVersion: 'security.istio.io/v1',
        kind: 'AuthorizationPolicy',
        metadata: { name: 'server-needs-jwt' },
        spec: {
          selector: { matchLabels: { app: 'server' } },
          rules: [{ from: [{ source: { requestPrincipals: [`${issuer}/*`] } }] }],
        },
      },
    );
    try {
      // In force on every server Pod (called at its own address, through the client's sidecar):
      // no token refused, a valid one taken.
      await waitFor(
        'the policies in force on every server Pod',
        async () => {
          for (const pod of server.pods) {
            const at = `http://${pod.status.podIP}:8080/jwt`;
            if ((await call(undefined, at)).status !== 403) return undefined;
            if ((await call(keys.token(claims), at)).status !== 200) return undefined;
          }
          return true;
        },
        60_000,
      );
      const denied = await call();
      expect(denied.status).toBe(403);
      expect(denied.body).toBe('RBAC: access denied');
      const answer = echoed(await call(keys.token(claims)));
      expect(answer.path).toBe('/jwt');
      expect(answer.headers['x-user']).toBe('alice');
      expect(answer.headers.authorization).toBeUndefined();
      for (let i = 0; i < 4; i++) {
        const again = echoed(await call(keys.token({ ...claims, sub: `user-${i}` })));
        expect(again.headers['x-user']).toBe(`user-${i}`);
        expect(again.headers.authorization).toBeUndefined();
      }

      const forged = await call(forger.token(claims));
      expect(forged.status).toBe(401);
      expect(forged.body).toBe('Jwt verification fails');
      expect(forged.headers?.['www-authenticate']).toMatch(
        /^Bearer realm=".*", error="invalid_token"$/,
      );
      // And still no token: 403.
      const none = await call();
      expect(none.status).toBe(403);
      expect(none.body).toBe('RBAC: access denied');
    } finally {
      await kubectl(env.cluster.controlPlane, [
        ...['delete', '-n', ns, '--ignore-not-found'],
        ...['requestauthentication/server-jwt', 'authorizationpolicy/server-needs-jwt'],
      ]);
      await waitFor(
        'the policies gone from every server Pod',
        async () => {
          for (const pod of server.pods) {
            const at = `http://${pod.status.podIP}:8080/jwt`;
            if ((await call(undefined, at)).status !== 200) return undefined;
          }
          return true;
        },
        60_000,
      );
    }
  }, 150_000);
});

describe('a rolling update of the server Deployment', () => {
  it('drops no request between meshed Pods', async () => {
    const ns = await meshNamespace(env);
    // A graceful server: it keeps serving 5 s into its termination (preStop sleep), the time
    // for the mesh to take its endpoint out, as with any Kubernetes Service.
    const [server, client] = await Promise.all([
      deployEcho(env, ns, 'server', {
        replicas: 2,
        env: { ECHO_VERSION: 'v1' },
        preStopSleepSeconds: 5,
      }),
      deployEcho(env, ns, 'client'),
    ]);
    const loop = loopFrom(client.pods[0]!, `http://${server.clusterIP}:8080/rollout`);
    await kubectl(env.cluster.controlPlane, [
      ...['set', 'env', 'deployment/server', '-n', ns, '-c', 'echo', 'ECHO_VERSION=v2'],
    ]);
    await kubectl(env.cluster.controlPlane, [
      ...['rollout', 'status', 'deployment/server', '-n', ns, '--timeout=300s'],
    ]);
    // Until the old Pods are gone (their preStop and their sidecars' drain over).
    const old = new Set(server.pods.map((p) => p.metadata.name));
    await waitFor(
      'the old Pods gone',
      async () =>
        (await listPods(env, ns, 'app=server')).some((p) => old.has(p.metadata.name))
          ? undefined
          : true,
      120_000,
    );
    const calls = await loop.stop();
    expect(calls.failures).toEqual([]);
    expect(calls.ok).toBe(calls.sent);
    expect(calls.sent).toBeGreaterThan(50);
    expect(calls.byVersion.v1).toBeGreaterThan(0);
    expect(calls.byVersion.v2).toBeGreaterThan(0);
  }, 420_000);
});

describe('traffic rules applied with kubectl, as written in examples/traffic', () => {
  // reviews: one Service over three Deployments (version v1, v2, v3), as in Istio's Bookinfo.
  let ns: string;
  let productpage: Echo;
  let reviews: string;

  const example = (file: string): string => path.join(REPO_ROOT, 'examples', 'traffic', file);
  const kubectlIn = (args: string[]): Promise<string> =>
    kubectl(env.cluster.controlPlane, [...args, '-n', ns]);
  /** Resolves once the caller's own proxy routes reviews by `source` (its config dump). */
  const routedBy = (source: string, subsets: boolean): Promise<true> =>
    waitFor(
      `the caller's proxy routing reviews by VirtualService ${source}`,
      async () => {
        const dump = await proxyConfig(env, productpage.pods[0]!);
        const svc = dump.mesh?.services.find((s) => s.key === `${ns}/reviews`);
        const withSubsets = (svc?.endpoints ?? []).every((e) => (e.subsets?.length ?? 0) > 0);
        return svc?.routes?.source.name === source && (!subsets || withSubsets) ? true : undefined;
      },
      60_000,
    );

  beforeAll(async () => {
    ns = await meshNamespace(env);
    const version = (v: string): EchoOptions => ({
      app: 'reviews',
      serviceAccount: 'reviews',
      labels: { version: v },
      env: { ECHO_VERSION: v },
    });
    // v1 first: it creates the shared Service and service account.
    const v1 = await deployEcho(env, ns, 'reviews-v1', version('v1'));
    [productpage] = await Promise.all([
      deployEcho(env, ns, 'productpage'),
      deployEcho(env, ns, 'reviews-v2', version('v2')),
      deployEcho(env, ns, 'reviews-v3', version('v3')),
    ]);
    reviews = `http://${v1.clusterIP}:8080/reviews`;
  }, 300_000);

  it('a weighted split (canary-95-5.yaml: VirtualService and DestinationRule subsets) sends 95% to v1 and 5% to v2, none to v3', async () => {
    await kubectlIn(['apply', '-f', example('canary-95-5.yaml')]);
    await routedBy('reviews', true);
    const calls = await repeatFrom(productpage.pods[0]!, reviews, { count: 400 });
    expect(calls.failures).toEqual([]);
    expect(calls.ok).toBe(400);
    // Binomial(400, 0.05): mean 20, sd 4.4; 5..40 holds with odds above 99.9%, while an
    // unweighted pick (a third each) gives about 133.
    expect(calls.byVersion.v2 ?? 0).toBeGreaterThanOrEqual(5);
    expect(calls.byVersion.v2 ?? 0).toBeLessThanOrEqual(40);
    expect(calls.byVersion.v3).toBeUndefined();
    expect(calls.byVersion.v1).toBe(400 - (calls.byVersion.v2 ?? 0));
    await kubectlIn(['delete', 'virtualservice', 'reviews']);
  }, 150_000);

  it('a header route (dark-launch.yaml) sends only the requests with the header to v3, the rest to v1', async () => {
    await kubectlIn(['apply', '-f', example('dark-launch.yaml')]);
    await routedBy('reviews-dark-launch', true);
    const dark = await repeatFrom(productpage.pods[0]!, reviews, {
      count: 30,
      headers: { 'custom-header-dark-launch': 'v3' },
    });
    expect(dark.byVersion).toEqual({ v3: 30 });
    const others = await repeatFrom(productpage.pods[0]!, reviews, {
      count: 30,
      headers: { 'custom-header-dark-launch': 'v2' },
    });
    expect(others.byVersion).toEqual({ v1: 30 });
  }, 150_000);
});

describe('locality load balancing: a Service with trafficDistribution PreferClose', () => {
  // The node is put in region r1, zone za by its topology labels (as a cloud's nodes are): the
  // client and backend-za run there, with no locality of their own. One node cannot be in two
  // zones, so the two other backends say where they are by their Pods' istio-locality label:
  // backend-zb in r1/zb (another zone of the caller's region), backend-r2 in r2/zc (another
  // region). A third backend makes the failover tell "the same region next" from any balancing.
  const REGION = 'topology.kubernetes.io/region';
  const ZONE = 'topology.kubernetes.io/zone';
  let ns: string;
  let client: Echo;
  let backends: { za: Pod; zb: Pod; r2: Pod };
  let url: string;
  /** The node's own values of the labels set here (undefined: absent), put back in afterAll. */
  let nodeLabels: Record<string, string | undefined> | undefined;

  const labelNode = (labels: Record<string, string | undefined>): Promise<string> =>
    kubectl(env.cluster.controlPlane, [
      ...['label', 'node', env.cluster.nodeName, '--overwrite'],
      ...Object.entries(labels).map(([k, v]) => (v === undefined ? `${k}-` : `${k}=${v}`)),
    ]);
  /** The client proxy's config dump, and the locality of each backend endpoint in it. */
  const clientView = async (): Promise<{
    dump: ProxyConfigDump;
    localities: Record<string, string | null>;
  }> => {
    const dump = await proxyConfig(env, client.pods[0]!);
    const svc = dump.mesh?.services.find((s) => s.key === `${ns}/backend`);
    const localities = Object.fromEntries(
      (svc?.endpoints ?? []).map((e) => [e.address, e.locality ?? null]),
    );
    return { dump, localities };
  };
  const ip = (pod: Pod): string => pod.status.podIP!;

  beforeAll(async () => {
    const node = (await kubectlJson(env.cluster.controlPlane, [
      ...['get', 'node', env.cluster.nodeName],
    ])) as { metadata: { labels?: Record<string, string> } };
    nodeLabels = { [REGION]: node.metadata.labels?.[REGION], [ZONE]: node.metadata.labels?.[ZONE] };
    await labelNode({ [REGION]: 'r1', [ZONE]: 'za' });

    ns = await meshNamespace(env);
    const backend = (zone: string, locality?: string): EchoOptions => ({
      app: 'backend',
      serviceAccount: 'backend',
      labels: { version: zone, ...(locality === undefined ? {} : { 'istio-locality': locality }) },
      env: { ECHO_VERSION: zone },
    });
    // backend-za first: it creates the shared Service and service account.
    const za = await deployEcho(env, ns, 'backend-za', backend('za'));
    const [c, zb, r2] = await Promise.all([
      deployEcho(env, ns, 'client'),
      deployEcho(env, ns, 'backend-zb', backend('zb', 'r1.zb')),
      deployEcho(env, ns, 'backend-r2', backend('r2', 'r2.zc')),
    ]);
    client = c;
    backends = { za: za.pods[0]!, zb: zb.pods[0]!, r2: r2.pods[0]! };
    url = `http://${za.clusterIP}:8080/near`;
    // The field is GA in this apiserver (1.33 on); read back below through the proxy's view.
    await kubectl(env.cluster.controlPlane, [
      ...['patch', 'service', 'backend', '-n', ns, '--type=merge'],
      ...['-p', JSON.stringify({ spec: { trafficDistribution: 'PreferClose' } })],
    ]);
  }, 300_000);

  afterAll(async () => {
    if (nodeLabels !== undefined) await labelNode(nodeLabels);
  }, 60_000);

  it('keeps the client’s requests in its zone, fails over to its region’s other zone when none is ready there, and comes back', async () => {
    // The client's proxy knows where it is (its Node's labels) and where each backend is (the
    // Node's, or the Pod's own label), and that the Service prefers close endpoints.
    const want = {
      [ip(backends.za)]: 'r1/za/',
      [ip(backends.zb)]: 'r1/zb/',
      [ip(backends.r2)]: 'r2/zc/',
    };
    const { dump } = await waitFor(
      'the localities in the client’s proxy',
      async () => {
        const view = await clientView();
        const svc = view.dump.mesh?.services.find((s) => s.key === `${ns}/backend`);
        return view.dump.mesh?.proxy.locality === 'r1/za/' &&
          svc?.preferClose === true &&
          isDeepStrictEqual(view.localities, want)
          ? view
          : undefined;
      },
      60_000,
    );
    expect(dump.mesh?.proxy.locality).toBe('r1/za/');

    // Every request to the zone's own backend, though three are ready (each a new connection).
    const near = await repeatFrom(client.pods[0]!, url, { count: 20 });
    expect(near.failures).toEqual([]);
    expect(near.byVersion).toEqual({ za: 20 });
    expect(near.byPod).toEqual({ [backends.za.metadata.name]: 20 });
    // The set the proxy balanced over: three priority levels, nearest first.
    const balanced = (await proxyConfig(env, client.pods[0]!)).endpointSets[`${ns}/backend|8080|`];
    expect(balanced).toEqual({
      priorities: [
        { locality: 'r1/za/', endpoints: [`${ip(backends.za)}:8080`] },
        { locality: 'r1/zb/', endpoints: [`${ip(backends.zb)}:8080`] },
        { locality: 'r2/zc/', endpoints: [`${ip(backends.r2)}:8080`] },
      ],
    });

    // backend-za unready (its readiness probe fails; it would still answer): the requests go to
    // the next zone of the region, none to the other region.
    await setHealth(backends.za, { http: false });
    try {
      await waitForPod(env, ns, backends.za.metadata.name, 'not Ready', (p) => !isReady(p));
      await waitFor(
        'backend-za out of the client’s proxy',
        async () => (ip(backends.za) in (await clientView()).localities ? undefined : true),
        60_000,
      );
      const failover = await repeatFrom(client.pods[0]!, url, { count: 20 });
      expect(failover.failures).toEqual([]);
      expect(failover.byVersion).toEqual({ zb: 20 });
    } finally {
      await setHealth(backends.za, { http: true });
    }

    // Ready again: back to the client's zone.
    await waitForPod(env, ns, backends.za.metadata.name, 'Ready', isReady);
    await waitFor(
      'backend-za back in the client’s proxy',
      async () =>
        (await clientView()).localities[ip(backends.za)] === 'r1/za/' ? true : undefined,
      60_000,
    );
    const back = await repeatFrom(client.pods[0]!, url, { count: 20 });
    expect(back.failures).toEqual([]);
    expect(back.byVersion).toEqual({ za: 20 });
  }, 180_000);
});

describe("Istio's Telemetry API applied with kubectl: the access log's side and metric overrides", () => {
  // A namespace of its own: a Telemetry there applies to its Pods alone (one in the root
  // namespace, the server's MOORING_NAMESPACE, would reach every Pod of this file).
  let ns: string;
  let server: Echo;
  let client: Echo;

  const TELEMETRY = {
    apiVersion: 'telemetry.istio.io/v1',
    kind: 'Telemetry',
    metadata: { name: 'telemetry' },
    spec: {
      accessLogging: [{ match: { mode: 'SERVER' } }],
      metrics: [
        {
          overrides: [
            { match: { metric: 'REQUEST_COUNT', mode: 'CLIENT' }, disabled: true },
            {
              match: { metric: 'ALL_METRICS', mode: 'SERVER' },
              tagOverrides: { source_principal: { operation: 'REMOVE' } },
            },
          ],
        },
      ],
    },
  };
  const deleteTelemetry = (): Promise<string> =>
    kubectl(env.cluster.controlPlane, [
      ...['delete', 'telemetry', 'telemetry', '-n', ns, '--ignore-not-found'],
    ]);
  /** The Telemetry part of a proxy's scope, as its own config dump has it. */
  const telemetryScope = async (pod: Pod): Promise<Record<string, unknown>> => {
    const proxy = (await proxyConfig(env, pod)).mesh?.proxy;
    return {
      accessLog: proxy?.accessLog,
      accessLogSide: proxy?.accessLogSide,
      metricOverrides: proxy?.metricOverrides,
    };
  };
  const inScope = (want: Record<string, unknown>, what: string): Promise<true> =>
    waitFor(
      what,
      async () => {
        for (const pod of [client.pods[0]!, server.pods[0]!]) {
          if (!isDeepStrictEqual(await telemetryScope(pod), want)) return undefined;
        }
        return true;
      },
      60_000,
    );
  /** The access log lines (JSON, with a direction) among the mooring-proxy container's output. */
  const accessLog = async (pod: Pod): Promise<Record<string, unknown>[]> => {
    const out = await kubectl(env.cluster.controlPlane, [
      ...['logs', pod.metadata.name, '-n', ns, '-c', 'mooring-proxy'],
    ]);
    return out.split('\n').flatMap((line) => {
      try {
        const entry = JSON.parse(line) as Record<string, unknown> | null;
        return typeof entry === 'object' && entry !== null && 'direction' in entry ? [entry] : [];
      } catch {
        return []; // the agent's own log, or a line still being written
      }
    });
  };
  const logged = async (pod: Pod, path: string): Promise<Record<string, unknown>[]> =>
    (await accessLog(pod)).filter((l) => l.path === path);
  /** The series of `metric` on the Pod's 15090 (read by the host at the Pod's address). */
  const series = async (
    pod: Pod,
    metric: string,
  ): Promise<{ labels: Record<string, string>; value: number }[]> => {
    const stats = await request(`http://${pod.status.podIP}:15090/stats/prometheus`);
    expect(stats.status).toBe(200);
    return stats.body.split('\n').flatMap((line) => {
      const m = /^([a-z_]+)\{(.*)\} (\S+)$/.exec(line);
      if (m?.[1] !== metric) return [];
      const labels = Object.fromEntries(
        [...m[2]!.matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((l) => [l[1]!, l[2]!]),
      );
      return [{ labels, value: Number(m[3]) }];
    });
  };
  /** The sum of the series of `metric` whose labels include `where`. */
  const total = (s: { labels: Record<string, string>; value: number }[], where: object): number =>
    s
      .filter((x) => Object.entries(where).every(([k, v]) => x.labels[k] === v))
      .reduce((n, x) => n + x.value, 0);

  beforeAll(async () => {
    ns = await meshNamespace(env, 'telemetry');
    [server, client] = await Promise.all([
      deployEcho(env, ns, 'server'),
      deployEcho(env, ns, 'client'),
    ]);
  }, 300_000);

  afterAll(async () => {
    if (ns !== undefined) await deleteTelemetry();
  }, 60_000);

  it('logs only the server side’s requests, hides the client’s request count and the server’s source_principal label; deleted, back to the defaults', async () => {
    const url = (p: string): string => `http://${server.clusterIP}:8080${p}`;
    const fromClient = { source_workload: 'client', destination_workload: 'server' };
    const ok = { ...fromClient, response_code: '200' };
    await apply(env, ns, TELEMETRY);
    // Both proxies resolved it (their own config dump) before a request is made.
    await inScope(
      {
        accessLog: true,
        accessLogSide: 'inbound',
        metricOverrides: [
          { metric: 'REQUEST_COUNT', mode: 'CLIENT', disabled: true },
          { metric: 'ALL_METRICS', mode: 'SERVER', removeTags: ['source_principal'] },
        ],
      },
      'the Telemetry in both proxies’ scope',
    );
    const on = await repeatFrom(client.pods[0]!, url('/telemetry-on'), { count: 5 });
    expect(on.byStatus).toEqual({ 200: 5 });

    // The access log (off in this mesh's settings) is on, for the server side only: the server's
    // sidecar logged each request as inbound (the caller's principal still in the line: the
    // label removal is the metrics' alone)...
    const inbound = await waitFor(
      'the server’s access log lines',
      async () => {
        const lines = await logged(server.pods[0]!, '/telemetry-on');
        return lines.length >= 5 ? lines : undefined;
      },
      30_000,
    );
    expect(inbound).toHaveLength(5);
    for (const line of inbound) {
      expect(line).toMatchObject({
        direction: 'inbound',
        method: 'GET',
        response_code: 200,
        source_principal: spiffeId(ns, 'client'),
        connection_security_policy: 'mutual_tls',
      });
    }

    // ...the client's request count is gone from its side (reporter="source"), its other
    // metrics stay, its labels whole (the SERVER override is not its side's)...
    const clientCount = await series(client.pods[0]!, 'istio_requests_total');
    expect(clientCount.filter((s) => s.labels.reporter === 'source')).toEqual([]);
    const clientDuration = await series(
      client.pods[0]!,
      'istio_request_duration_milliseconds_count',
    );
    const sourceDuration = clientDuration.filter(
      (s) => s.labels.reporter === 'source' && s.labels.destination_workload === 'server',
    );
    expect(sourceDuration.length).toBeGreaterThan(0);
    expect(total(sourceDuration, {})).toBe(5);
    for (const s of sourceDuration) expect(s.labels.source_principal).toBe(spiffeId(ns, 'client'));

    // ...and the server's metrics (reporter="destination") lost source_principal, the rest of
    // their labels kept.
    const serverCount = await series(server.pods[0]!, 'istio_requests_total');
    const destination = serverCount.filter((s) => s.labels.reporter === 'destination');
    expect(total(destination, { ...ok, connection_security_policy: 'mutual_tls' })).toBe(5);
    for (const s of destination) expect(s.labels).not.toHaveProperty('source_principal');
    const serverDuration = await series(
      server.pods[0]!,
      'istio_request_duration_milliseconds_count',
    );
    expect(total(serverDuration, ok)).toBe(5);
    for (const s of serverDuration) expect(s.labels).not.toHaveProperty('source_principal');

    // The client's sidecar logged none of them (read after the checks above: any line of those
    // requests would have been written by now).
    expect(await logged(client.pods[0]!, '/telemetry-on')).toEqual([]);

    // Deleted: both scopes back to the mesh's settings, without a restart.
    await deleteTelemetry();
    await inScope(
      { accessLog: undefined, accessLogSide: undefined, metricOverrides: undefined },
      'the Telemetry gone from both proxies’ scope',
    );
    expect((await proxyConfig(env, server.pods[0]!)).mesh?.settings.accessLog).toBe(false);
    const off = await repeatFrom(client.pods[0]!, url('/telemetry-off'), { count: 5 });
    expect(off.byStatus).toEqual({ 200: 5 });
    // The client's request count is back, the requests made while it was hidden counted too (an
    // override applies when the metrics are read)...
    expect(
      total(await series(client.pods[0]!, 'istio_requests_total'), {
        reporter: 'source',
        ...ok,
      }),
    ).toBe(10);
    // ...the server's series has source_principal again...
    const again = (await series(server.pods[0]!, 'istio_requests_total')).filter(
      (s) => s.labels.reporter === 'destination' && s.labels.source_workload === 'client',
    );
    expect(again.length).toBeGreaterThan(0);
    for (const s of again) expect(s.labels.source_principal).toBe(spiffeId(ns, 'client'));
    expect(total(again, ok)).toBe(10);
    // ...and the access log is off on both sides again, as the mesh's settings have it
    // (mesh.accessLog false): the server logged no new request.
    expect(await logged(server.pods[0]!, '/telemetry-off')).toEqual([]);
    expect(await logged(client.pods[0]!, '/telemetry-off')).toEqual([]);
    expect(await logged(server.pods[0]!, '/telemetry-on')).toHaveLength(5);
  }, 180_000);
});

// Cluster mode with exactly the RBAC of the Helm chart: the chart's ServiceAccount, Role,
// ClusterRole and bindings (helm template, applied), and `mooring serve --kubeconfig` running
// with a token of that ServiceAccount. Everything the cluster adapters do must work without a
// single 403: the CA Secret, the Lease, trust distribution, TokenReview, SubjectAccessReview,
// the webhook caBundle, the CSR signer and the auto-approver, and the mesh's watches (Nodes
// included: the locality of the Pods on them).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { CHART_DIR, runHelm } from '../chart/helm';
import { startControlPlane, type ControlPlane } from './harness/control-plane';
import {
  createNamespace,
  createObject,
  createServiceAccount,
  kubectl,
  kubectlJson,
} from './harness/kube';
import {
  createIdlePod,
  kubeconfigWithToken,
  makeCsr,
  opensslVerify,
  request,
  runMooring,
  sansOf,
  startMooring,
  suffix,
  testConfig,
  tokenFor,
  waitFor,
  type MooringServer,
} from './support/mooring';

const NS = 'mooring-system';
const RELEASE = 'mooring';
const MWC = 'mooring-sidecar-injector';

let cp: ControlPlane;
let mooring: MooringServer;
let bundle: string[];
let tmp: string;

beforeAll(async () => {
  cp = await startControlPlane();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-e2e-rbac-'));
  await createNamespace(cp, NS);
  const rendered = await runHelm([
    ...['template', RELEASE, CHART_DIR, '--namespace', NS],
    ...['--show-only', 'templates/serviceaccount.yaml', '--show-only', 'templates/rbac.yaml'],
    ...['--set', 'config.cluster.csrAutoApprove=true'],
  ]);
  if (rendered.code !== 0) throw new Error(`helm template: ${rendered.stderr}`);
  await kubectl(cp, ['apply', '-n', NS, '-f', '-'], rendered.stdout);
  const token = await tokenFor(cp, NS, RELEASE, { durationSeconds: 3600 });
  const kubeconfig = kubeconfigWithToken(cp, token, tmp, 'mooring-sa');
  // The webhook configuration exists, with a caBundle that is not Mooring's (the API server's
  // CA): the server must put its own trust bundle in.
  const webhook = await runMooring([
    'webhook-config',
    ...['--url', 'https://127.0.0.1:9/inject', '--ca-bundle', cp.caCertPath],
    ...['--failure-policy', 'Ignore'],
  ]);
  await kubectl(cp, ['apply', '-f', '-'], webhook.stdout);
  mooring = await startMooring(cp, {
    namespace: NS,
    kubeconfig,
    config: testConfig(NS, { cluster: { csrAutoApprove: true } }),
  });
  bundle = await mooring.trustBundle();
}, 120_000);

afterAll(async () => {
  await mooring?.stop();
  await cp?.stop();
  if (tmp !== undefined) fs.rmSync(tmp, { recursive: true, force: true });
}, 60_000);

describe("mooring serve with the chart's RBAC", () => {
  it('creates the CA Secret and holds the Lease as its ServiceAccount', async () => {
    await kubectl(cp, ['get', 'secret', 'mooring-ca', '-n', NS]);
    const lease = await waitFor('the Lease', async () => {
      const l = (await kubectlJson(cp, ['get', 'lease', 'mooring-ca-rotation', '-n', NS])) as {
        spec: { holderIdentity?: string };
      };
      return l.spec.holderIdentity ?? undefined;
    });
    expect(lease).toBeTruthy();
  });

  it('distributes the trust bundle and restores a deleted ConfigMap', async () => {
    const ns = `app-${suffix()}`;
    await createNamespace(cp, ns);
    const read = async (): Promise<string | undefined> =>
      (
        (await kubectlJson(cp, ['get', 'configmap', 'mooring-ca-root-cert', '-n', ns]).catch(
          () => undefined,
        )) as { data?: Record<string, string> } | undefined
      )?.data?.['root-cert.pem'];
    await waitFor('the ConfigMap', read, 10_000);
    await kubectl(cp, ['delete', 'configmap', 'mooring-ca-root-cert', '-n', ns]);
    expect(await waitFor('the ConfigMap back', read, 10_000)).toContain('BEGIN CERTIFICATE');
  }, 30_000);

  it('sets the caBundle of its webhook configuration to its trust bundle', async () => {
    const expected = bundle.join('');
    await waitFor(
      'the caBundle',
      async () => {
        const mwc = (await kubectlJson(cp, ['get', 'mutatingwebhookconfiguration', MWC])) as {
          webhooks: { clientConfig: { caBundle?: string } }[];
        };
        const pems = mwc.webhooks.map((w) =>
          Buffer.from(w.clientConfig.caBundle ?? '', 'base64')
            .toString('utf8')
            .replace(/\s+/g, ''),
        );
        return pems.every((p) => p === expected.replace(/\s+/g, '')) ? true : undefined;
      },
      10_000,
    );
  }, 30_000);

  it('authenticates workloads with TokenReview and admins with SubjectAccessReview', async () => {
    const ns = `app-${suffix()}`;
    await createNamespace(cp, ns);
    await createServiceAccount(cp, ns, 'web');
    const pod = await createIdlePod(cp, ns, 'web-0', 'web');
    const token = await tokenFor(cp, ns, 'web', {
      audience: 'mooring-ca',
      pod: { name: 'web-0', uid: pod.uid },
    });
    const issued = await mooring.post(
      '/v1/certificates',
      { csr: (await makeCsr()).csrPem },
      { authorization: `Bearer ${token}` },
      bundle.join('\n'),
    );
    expect(issued.status).toBe(200);
    const refused = await mooring.post(
      '/v1/admin/certificates',
      { csr: (await makeCsr()).csrPem, spiffeId: 'spiffe://cluster.local/vm/x' },
      { authorization: `Bearer ${await tokenFor(cp, ns, 'web')}` },
      bundle.join('\n'),
    );
    expect(refused.status).toBe(403);
  }, 30_000);

  it('auto-approves and signs a CSR naming exactly its requester, and leaves another pending', async () => {
    const ns = `csr-${suffix()}`;
    await createNamespace(cp, ns);
    await createServiceAccount(cp, ns, 'agent');
    await kubectl(cp, [
      'create',
      'clusterrole',
      `csr-${ns}`,
      '--verb=create,get',
      '--resource=certificatesigningrequests.certificates.k8s.io',
    ]);
    await kubectl(cp, [
      'create',
      'clusterrolebinding',
      `csr-${ns}`,
      `--clusterrole=csr-${ns}`,
      `--serviceaccount=${ns}:agent`,
    ]);
    const agent = {
      kubeconfigPath: kubeconfigWithToken(cp, await tokenFor(cp, ns, 'agent'), tmp, `agent-${ns}`),
    };
    const id = `spiffe://cluster.local/ns/${ns}/sa/agent`;
    const csr = async (name: string, uri: string): Promise<void> => {
      const object = {
        apiVersion: 'certificates.k8s.io/v1',
        kind: 'CertificateSigningRequest',
        metadata: { name },
        spec: {
          request: Buffer.from((await makeCsr([uri])).csrPem).toString('base64'),
          signerName: 'mooring.dev/workload',
          usages: ['digital signature', 'client auth'],
        },
      };
      await kubectl(agent, ['create', '-f', '-'], JSON.stringify(object));
    };
    await csr(`own-${ns}`, id);
    await csr(`other-${ns}`, `spiffe://cluster.local/ns/${ns}/sa/admin`);
    interface Csr {
      status?: { certificate?: string; conditions?: { type: string; reason?: string }[] };
    }
    const own = await waitFor(
      'the certificate',
      async () => {
        const c = (await kubectlJson(cp, ['get', 'csr', `own-${ns}`])) as Csr;
        return c.status?.certificate === undefined ? undefined : c;
      },
      10_000,
    );
    expect(own.status?.conditions?.[0]).toMatchObject({
      type: 'Approved',
      reason: 'MooringAutoApproved',
    });
    const pem = Buffer.from(own.status?.certificate ?? '', 'base64').toString('utf8');
    expect(sansOf(pem)).toBe(`URI:${id}`);
    await expect(opensslVerify([pem], bundle)).resolves.toContain('OK');
    const other = (await kubectlJson(cp, ['get', 'csr', `other-${ns}`])) as Csr;
    expect(other.status?.conditions ?? []).toEqual([]);
  }, 30_000);

  it('reads the mesh (Services, EndpointSlices, Pods, Nodes) with exactly those rights', async () => {
    const objects = await waitFor('the mesh loaded', async () => {
      const answer = await request(`${mooring.adminUrl}/debug/mesh/objects`);
      const body = JSON.parse(answer.body) as {
        source: { kinds: Record<string, { synced?: boolean } | 'off'> };
      };
      const { kinds } = body.source;
      return ['Service', 'EndpointSlice', 'Pod', 'Node'].every(
        (k) => typeof kinds[k] === 'object' && kinds[k].synced === true,
      )
        ? body
        : undefined;
    });
    // No Istio CRD in this cluster: PeerAuthentication, AuthorizationPolicy,
    // RequestAuthentication, Sidecar, WorkloadEntry and Telemetry are off, not forbidden.
    expect(objects.source.kinds.PeerAuthentication).toBe('off');
    expect(objects.source.kinds.AuthorizationPolicy).toBe('off');
    expect(objects.source.kinds.RequestAuthentication).toBe('off');
    expect(objects.source.kinds.Sidecar).toBe('off');
    expect(objects.source.kinds.WorkloadEntry).toBe('off');
    expect(objects.source.kinds.Telemetry).toBe('off');
    expect(objects.source.kinds.TCPRoute).toBe('off');
    expect(objects.source.kinds.TLSRoute).toBe('off');
    // Once their CRDs are installed, the ServiceAccount may list and watch them everywhere (a
    // SubjectAccessReview: `kubectl auth can-i` cannot name a resource the server does not serve).
    const can = async (attributes: Record<string, string>): Promise<string> => {
      const review = (await createObject(cp, {
        apiVersion: 'authorization.k8s.io/v1',
        kind: 'SubjectAccessReview',
        spec: {
          user: `system:serviceaccount:${NS}:${RELEASE}`,
          groups: ['system:serviceaccounts', `system:serviceaccounts:${NS}`],
          resourceAttributes: attributes,
        },
      })) as { status?: { allowed?: boolean } };
      const { verb = '', resource = '', subresource, name } = attributes;
      const what = `${resource}${subresource === undefined ? '' : `/${subresource}`}`;
      return `${verb} ${what}${name === undefined ? '' : ` ${name}`}: ${String(review.status?.allowed === true)}`;
    };
    const answers: string[] = [];
    // Nodes (core, cluster-scoped; their labels are the locality of their Pods): list and watch
    // only, neither get nor any write.
    for (const verb of ['list', 'watch', 'get', 'update', 'patch', 'delete']) {
      answers.push(await can({ group: '', resource: 'nodes', verb }));
    }
    for (const resource of [
      'peerauthentications',
      'authorizationpolicies',
      'requestauthentications',
    ]) {
      for (const verb of ['list', 'watch']) {
        answers.push(await can({ group: 'security.istio.io', resource, verb }));
      }
    }
    answers.push(
      await can({
        group: 'apiextensions.k8s.io',
        resource: 'customresourcedefinitions',
        verb: 'get',
        name: 'requestauthentications.security.istio.io',
      }),
    );
    // Sidecar (networking.istio.io): list and watch, its CRD by name; nothing more on it.
    for (const verb of ['list', 'watch', 'update']) {
      answers.push(await can({ group: 'networking.istio.io', resource: 'sidecars', verb }));
    }
    answers.push(
      await can({
        group: 'apiextensions.k8s.io',
        resource: 'customresourcedefinitions',
        verb: 'get',
        name: 'sidecars.networking.istio.io',
      }),
    );
    // WorkloadEntry (networking.istio.io): list and watch, its CRD by name (not its sibling
    // WorkloadGroup's); neither a write nor its status (Istio's health checks write it, Mooring
    // does not).
    for (const verb of ['list', 'watch', 'update', 'delete']) {
      answers.push(await can({ group: 'networking.istio.io', resource: 'workloadentries', verb }));
    }
    answers.push(
      await can({
        group: 'networking.istio.io',
        resource: 'workloadentries',
        subresource: 'status',
        verb: 'update',
      }),
    );
    for (const name of [
      'workloadentries.networking.istio.io',
      'workloadgroups.networking.istio.io',
    ]) {
      answers.push(
        await can({
          group: 'apiextensions.k8s.io',
          resource: 'customresourcedefinitions',
          verb: 'get',
          name,
        }),
      );
    }
    // Telemetry (telemetry.istio.io): list and watch, its CRD by name; neither a write nor its
    // status (Mooring writes none).
    for (const verb of ['list', 'watch', 'update']) {
      answers.push(await can({ group: 'telemetry.istio.io', resource: 'telemetries', verb }));
    }
    answers.push(
      await can({
        group: 'telemetry.istio.io',
        resource: 'telemetries',
        subresource: 'status',
        verb: 'update',
      }),
    );
    answers.push(
      await can({
        group: 'apiextensions.k8s.io',
        resource: 'customresourcedefinitions',
        verb: 'get',
        name: 'telemetries.telemetry.istio.io',
      }),
    );
    expect(answers).toEqual([
      'list nodes: true',
      'watch nodes: true',
      'get nodes: false',
      'update nodes: false',
      'patch nodes: false',
      'delete nodes: false',
      'list peerauthentications: true',
      'watch peerauthentications: true',
      'list authorizationpolicies: true',
      'watch authorizationpolicies: true',
      'list requestauthentications: true',
      'watch requestauthentications: true',
      'get customresourcedefinitions requestauthentications.security.istio.io: true',
      'list sidecars: true',
      'watch sidecars: true',
      'update sidecars: false',
      'get customresourcedefinitions sidecars.networking.istio.io: true',
      'list workloadentries: true',
      'watch workloadentries: true',
      'update workloadentries: false',
      'delete workloadentries: false',
      'update workloadentries/status: false',
      'get customresourcedefinitions workloadentries.networking.istio.io: true',
      'get customresourcedefinitions workloadgroups.networking.istio.io: false',
      'list telemetries: true',
      'watch telemetries: true',
      'update telemetries: false',
      'update telemetries/status: false',
      'get customresourcedefinitions telemetries.telemetry.istio.io: true',
    ]);
    // The same for the Gateway API's TCPRoute and TLSRoute: list and watch them, write their
    // status (status.parents), read their CRDs by name; and nothing more on them.
    const gateway = 'gateway.networking.k8s.io';
    const routeAnswers: string[] = [];
    for (const resource of ['tcproutes', 'tlsroutes']) {
      for (const verb of ['list', 'watch', 'update', 'delete']) {
        routeAnswers.push(await can({ group: gateway, resource, verb }));
      }
      routeAnswers.push(
        await can({ group: gateway, resource, subresource: 'status', verb: 'update' }),
      );
      const crd = `${resource}.${gateway}`;
      for (const name of [crd, `${resource}.example.com`]) {
        routeAnswers.push(
          await can({
            group: 'apiextensions.k8s.io',
            resource: 'customresourcedefinitions',
            verb: 'get',
            name,
          }),
        );
      }
    }
    expect(routeAnswers).toEqual([
      'list tcproutes: true',
      'watch tcproutes: true',
      'update tcproutes: false',
      'delete tcproutes: false',
      'update tcproutes/status: true',
      `get customresourcedefinitions tcproutes.${gateway}: true`,
      'get customresourcedefinitions tcproutes.example.com: false',
      'list tlsroutes: true',
      'watch tlsroutes: true',
      'update tlsroutes: false',
      'delete tlsroutes: false',
      'update tlsroutes/status: true',
      `get customresourcedefinitions tlsroutes.${gateway}: true`,
      'get customresourcedefinitions tlsroutes.example.com: false',
    ]);
  }, 60_000);

  it('lists and watches the Nodes: one created, then deleted, reaches the mesh', async () => {
    const name = `node-${suffix()}`;
    await createObject(cp, {
      apiVersion: 'v1',
      kind: 'Node',
      metadata: { name, labels: { 'topology.kubernetes.io/zone': 'zone1' } },
    });
    const nodeCount = async (): Promise<number> => {
      const answer = await request(`${mooring.adminUrl}/debug/mesh/objects`);
      return (JSON.parse(answer.body) as { counts: Record<string, number> }).counts.Node ?? 0;
    };
    await waitFor('the Node in the mesh', async () =>
      (await nodeCount()) >= 1 ? true : undefined,
    );
    await kubectl(cp, ['delete', 'node', name]);
    await waitFor('the Node gone', async () => ((await nodeCount()) === 0 ? true : undefined));
    const stats = JSON.parse((await request(`${mooring.adminUrl}/debug/mesh/objects`)).body) as {
      source: { kinds: { Node: { apiVersion?: string; synced?: boolean; failures?: number } } };
    };
    expect(stats.source.kinds.Node).toMatchObject({ apiVersion: 'v1', synced: true, failures: 0 });
  }, 30_000);

  it('never met a 403 from the apiserver', async () => {
    expect(await mooring.metric('mooring_kube_api_requests_total', { code: '403' })).toBe(0);
    // Nothing went wrong on the way: no warning or error in the server's log.
    const problems = fs
      .readFileSync(mooring.logPath, 'utf8')
      .split('\n')
      .filter(
        (line) => line.startsWith('{') && (JSON.parse(line) as { level: number }).level >= 40,
      );
    expect(problems).toEqual([]);
  });
});

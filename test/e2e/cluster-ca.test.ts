// Cluster mode against a real kube-apiserver: `mooring serve --kubeconfig` as a child process.
// Workload certificates for TokenRequest tokens (TokenReview), refusals of tokens for another
// audience, of a token whose Pod is gone and of a forged one; admin issuance allowed by RBAC
// (SubjectAccessReview) or refused; the Kubernetes CSR signer; trust distribution ConfigMaps.
// Each test works in namespaces of its own.
import { sign } from 'node:crypto';
import { fixtureKey } from '../fixtures/keys';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
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
  delay,
  kubeconfigWithToken,
  makeCsr,
  opensslVerify,
  sansOf,
  startMooring,
  suffix,
  tokenFor,
  waitFor,
  type MooringServer,
} from './support/mooring';

const MOORING_NS = `mooring-${suffix()}`;
const CM = 'mooring-ca-root-cert';

let cp: ControlPlane;
let mooring: MooringServer;
let bundle: string[];
let tmp: string;

beforeAll(async () => {
  cp = await startControlPlane();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-e2e-ca-'));
  await createNamespace(cp, MOORING_NS);
  mooring = await startMooring(cp, { namespace: MOORING_NS });
  bundle = await mooring.trustBundle();
}, 120_000);

afterAll(async () => {
  await mooring?.stop();
  await cp?.stop();
  if (tmp !== undefined) fs.rmSync(tmp, { recursive: true, force: true });
}, 60_000);

/** A fresh namespace with a ServiceAccount and a Pod running as it. */
async function workload(
  sa = 'web',
): Promise<{ ns: string; sa: string; pod: { name: string; uid: string } }> {
  const ns = `app-${suffix()}`;
  await createNamespace(cp, ns);
  await createServiceAccount(cp, ns, sa);
  const name = `${sa}-0`;
  const { uid } = await createIdlePod(cp, ns, name, sa);
  return { ns, sa, pod: { name, uid } };
}

const askCertificate = async (token: string, csrPem: string) =>
  mooring.post(
    '/v1/certificates',
    { csr: csrPem, ttlSeconds: 3600 },
    { authorization: `Bearer ${token}` },
    bundle.join('\n'),
  );

describe('workload certificates for service-account tokens (TokenReview)', () => {
  it('gives a token for audience mooring-ca, bound to a Pod, a certificate whose only SAN is its SPIFFE ID', async () => {
    const { ns, sa, pod } = await workload();
    const token = await tokenFor(cp, ns, sa, { audience: 'mooring-ca', pod });
    const { csrPem } = await makeCsr();
    const answer = await askCertificate(token, csrPem);
    expect(answer.status).toBe(200);
    const { certificateChain, trustBundle } = JSON.parse(answer.body) as {
      certificateChain: string[];
      trustBundle: string[];
    };
    expect(sansOf(certificateChain[0] ?? '')).toBe(`URI:spiffe://cluster.local/ns/${ns}/sa/${sa}`);
    expect(trustBundle).toEqual(bundle);
    await expect(opensslVerify(certificateChain, bundle)).resolves.toContain('OK');
  }, 30_000);

  it('refuses a CSR that names another service account', async () => {
    const { ns, sa, pod } = await workload();
    const token = await tokenFor(cp, ns, sa, { audience: 'mooring-ca', pod });
    const { csrPem } = await makeCsr([`spiffe://cluster.local/ns/${ns}/sa/admin`]);
    const answer = await askCertificate(token, csrPem);
    expect(answer.status).toBe(400);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'CA_ERR_SAN' });
  }, 30_000);

  it('refuses a token for another audience', async () => {
    const { ns, sa, pod } = await workload();
    const token = await tokenFor(cp, ns, sa, { audience: 'vault', pod });
    const answer = await askCertificate(token, (await makeCsr()).csrPem);
    expect(answer.status).toBe(401);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'CA_ERR_UNAUTHENTICATED' });
  }, 30_000);

  it('refuses a token for the apiserver audience (a plain service-account token)', async () => {
    const { ns, sa } = await workload();
    const token = await tokenFor(cp, ns, sa);
    const answer = await askCertificate(token, (await makeCsr()).csrPem);
    expect(answer.status).toBe(401);
  }, 30_000);

  it('refuses a token that is no longer valid: bound to a Pod that was deleted', async () => {
    const { ns, sa, pod } = await workload();
    const token = await tokenFor(cp, ns, sa, { audience: 'mooring-ca', pod });
    await kubectl(cp, ['delete', 'pod', pod.name, '-n', ns, '--wait=true']);
    const answer = await askCertificate(token, (await makeCsr()).csrPem);
    expect(answer.status).toBe(401);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'CA_ERR_UNAUTHENTICATED' });
  }, 30_000);

  it('refuses a forged token: the claims of a real one, signed with another key', async () => {
    const { ns, sa, pod } = await workload();
    const real = await tokenFor(cp, ns, sa, { audience: 'mooring-ca', pod });
    const [header = '', payload = ''] = real.split('.');
    const { privateKey } = fixtureKey('rsa-2048');
    const signature = sign('sha256', Buffer.from(`${header}.${payload}`), privateKey).toString(
      'base64url',
    );
    const answer = await askCertificate(
      `${header}.${payload}.${signature}`,
      (await makeCsr()).csrPem,
    );
    expect(answer.status).toBe(401);
  }, 30_000);

  it('reviews a token once for a burst of requests (the TokenReview cache)', async () => {
    const { ns, sa, pod } = await workload();
    const token = await tokenFor(cp, ns, sa, { audience: 'mooring-ca', pod });
    const reviews = { workload: 'workload' };
    const before = await mooring.metric('mooring_token_reviews_total', { kind: reviews.workload });
    const { csrPem } = await makeCsr();
    const answers = await Promise.all(
      Array.from({ length: 20 }, () => askCertificate(token, csrPem)),
    );
    const after = await mooring.metric('mooring_token_reviews_total', { kind: reviews.workload });
    expect({
      refused: answers.filter((a) => a.status !== 200).map((a) => `${a.status} ${a.body}`),
      tokenReviews: after - before,
    }).toEqual({ refused: [], tokenReviews: 1 });
  }, 30_000);
});

describe('admin issuance (TokenReview + SubjectAccessReview)', () => {
  const adminCsr = async (token: string) =>
    mooring.post(
      '/v1/admin/certificates',
      {
        csr: (await makeCsr()).csrPem,
        spiffeId: 'spiffe://cluster.local/vm/db-1',
        ttlSeconds: 3600,
      },
      { authorization: `Bearer ${token}` },
      bundle.join('\n'),
    );

  it('issues to an identity that RBAC allows to create certificates.mooring.dev', async () => {
    const ns = `ops-${suffix()}`;
    await createNamespace(cp, ns);
    await createServiceAccount(cp, ns, 'issuer');
    await createObject(cp, {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: `mooring-issuer-${ns}` },
      rules: [{ apiGroups: ['mooring.dev'], resources: ['certificates'], verbs: ['create'] }],
    });
    await createObject(cp, {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: `mooring-issuer-${ns}` },
      roleRef: {
        apiGroup: 'rbac.authorization.k8s.io',
        kind: 'ClusterRole',
        name: `mooring-issuer-${ns}`,
      },
      subjects: [{ kind: 'ServiceAccount', name: 'issuer', namespace: ns }],
    });
    const answer = await adminCsr(await tokenFor(cp, ns, 'issuer'));
    expect(answer.status).toBe(200);
    const { certificateChain } = JSON.parse(answer.body) as { certificateChain: string[] };
    expect(sansOf(certificateChain[0] ?? '')).toBe('URI:spiffe://cluster.local/vm/db-1');
    // A token bound to audience mooring-ca (no use against the Kubernetes API) works too;
    // one for another audience does not.
    const bound = await adminCsr(await tokenFor(cp, ns, 'issuer', { audience: 'mooring-ca' }));
    expect(bound.status).toBe(200);
    const other = await adminCsr(await tokenFor(cp, ns, 'issuer', { audience: 'vault' }));
    expect({ status: other.status, body: JSON.parse(other.body) as unknown }).toMatchObject({
      status: 401,
      body: { code: 'CA_ERR_UNAUTHENTICATED' },
    });
  }, 30_000);

  it('refuses (403) an identity that RBAC does not allow', async () => {
    const ns = `ops-${suffix()}`;
    await createNamespace(cp, ns);
    await createServiceAccount(cp, ns, 'nobody');
    const answer = await adminCsr(await tokenFor(cp, ns, 'nobody'));
    expect(answer.status).toBe(403);
    expect(JSON.parse(answer.body)).toMatchObject({ code: 'CA_ERR_FORBIDDEN' });
  }, 30_000);

  it('refuses (401) a credential the apiserver does not know', async () => {
    const answer = await adminCsr('not-a-kubernetes-token');
    expect(answer.status).toBe(401);
  }, 30_000);
});

describe('the Kubernetes CSR signer (signerName mooring.dev/workload)', () => {
  interface CsrStatus {
    status?: {
      certificate?: string;
      conditions?: { type: string; reason?: string; message?: string }[];
    };
  }
  const getCsr = async (name: string): Promise<CsrStatus> =>
    (await kubectlJson(cp, ['get', 'csr', name])) as CsrStatus;

  /** A namespace whose service account may create CSRs, and a kubeconfig that is that account. */
  async function requester(): Promise<{ ns: string; kubeconfig: string }> {
    const ns = `csr-${suffix()}`;
    await createNamespace(cp, ns);
    await createServiceAccount(cp, ns, 'agent');
    await kubectl(cp, [
      'create',
      'clusterrole',
      `csr-create-${ns}`,
      '--verb=create,get',
      '--resource=certificatesigningrequests.certificates.k8s.io',
    ]);
    await kubectl(cp, [
      'create',
      'clusterrolebinding',
      `csr-create-${ns}`,
      `--clusterrole=csr-create-${ns}`,
      `--serviceaccount=${ns}:agent`,
    ]);
    const token = await tokenFor(cp, ns, 'agent');
    return { ns, kubeconfig: kubeconfigWithToken(cp, token, tmp, `agent-${ns}`) };
  }

  const csrObject = (name: string, csrPem: string, signerName = 'mooring.dev/workload') => ({
    apiVersion: 'certificates.k8s.io/v1',
    kind: 'CertificateSigningRequest',
    metadata: { name },
    spec: {
      request: Buffer.from(csrPem).toString('base64'),
      signerName,
      usages: ['digital signature', 'client auth', 'server auth'],
      expirationSeconds: 3600,
    },
  });

  async function submit(kubeconfig: string | null, object: object): Promise<void> {
    const args = ['create', '-f', '-'];
    if (kubeconfig === null) await kubectl(cp, args, JSON.stringify(object));
    else await kubectl({ kubeconfigPath: kubeconfig }, args, JSON.stringify(object));
  }

  it('signs an approved CSR of a service account: status.certificate verifies against the bundle', async () => {
    const { ns, kubeconfig } = await requester();
    const id = `spiffe://cluster.local/ns/${ns}/sa/agent`;
    const name = `ok-${ns}`;
    await submit(kubeconfig, csrObject(name, (await makeCsr([id])).csrPem));
    await kubectl(cp, ['certificate', 'approve', name]);
    const pem = await waitFor('status.certificate', async () => {
      const c = (await getCsr(name)).status?.certificate;
      return c === undefined || c === '' ? undefined : Buffer.from(c, 'base64').toString('utf8');
    });
    const chain =
      pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n?/g) ?? [];
    expect(sansOf(chain[0] ?? '')).toBe(`URI:${id}`);
    await expect(opensslVerify(chain, bundle)).resolves.toContain('OK');
  }, 30_000);

  it('marks Failed a CSR made by a user, not a service account', async () => {
    const name = `user-${suffix()}`;
    await submit(null, csrObject(name, (await makeCsr()).csrPem));
    await kubectl(cp, ['certificate', 'approve', name]);
    const failed = await waitFor('the Failed condition', async () =>
      (await getCsr(name)).status?.conditions?.find((c) => c.type === 'Failed'),
    );
    expect(failed.reason).toBe('MooringRequesterNotServiceAccount');
    expect((await getCsr(name)).status?.certificate).toBeUndefined();
  }, 30_000);

  it('marks Failed a CSR that names another identity', async () => {
    const { ns, kubeconfig } = await requester();
    const name = `other-${ns}`;
    await submit(
      kubeconfig,
      csrObject(name, (await makeCsr([`spiffe://cluster.local/ns/${ns}/sa/admin`])).csrPem),
    );
    await kubectl(cp, ['certificate', 'approve', name]);
    const failed = await waitFor('the Failed condition', async () =>
      (await getCsr(name)).status?.conditions?.find((c) => c.type === 'Failed'),
    );
    expect(failed.reason).toBe('MooringNamesNotAllowed');
    expect(failed.message).toContain('/sa/admin');
  }, 30_000);

  it('leaves a CSR unsigned until it is approved, and ignores other signers', async () => {
    const { ns, kubeconfig } = await requester();
    const pending = `pending-${ns}`;
    const foreign = `foreign-${ns}`;
    await submit(kubeconfig, csrObject(pending, (await makeCsr()).csrPem));
    await submit(kubeconfig, csrObject(foreign, (await makeCsr()).csrPem, 'example.com/other'));
    await kubectl(cp, ['certificate', 'approve', foreign]);
    await delay(3000);
    expect((await getCsr(pending)).status?.certificate).toBeUndefined();
    const other = await getCsr(foreign);
    expect(other.status?.certificate).toBeUndefined();
    expect(other.status?.conditions?.map((c) => c.type)).toEqual(['Approved']);
  }, 30_000);
});

describe('trust distribution (ConfigMap mooring-ca-root-cert)', () => {
  const bundleIn = async (ns: string): Promise<string | undefined> => {
    try {
      const cm = (await kubectlJson(cp, ['get', 'configmap', CM, '-n', ns])) as {
        data?: Record<string, string>;
      };
      return cm.data?.['root-cert.pem'];
    } catch {
      return undefined;
    }
  };
  const expected = (): string => bundle.map((p) => `${p.trim()}\n`).join('');

  it('is in every namespace but kube-public and kube-node-lease', async () => {
    for (const ns of ['default', 'kube-system', MOORING_NS]) {
      expect(await waitFor(`the ConfigMap in ${ns}`, () => bundleIn(ns))).toBe(expected());
    }
    for (const ns of ['kube-public', 'kube-node-lease']) expect(await bundleIn(ns)).toBeUndefined();
  }, 30_000);

  it('comes to a new namespace within seconds', async () => {
    const ns = `new-${suffix()}`;
    await createNamespace(cp, ns);
    expect(await waitFor('the ConfigMap', () => bundleIn(ns), 10_000)).toBe(expected());
  }, 30_000);

  it('comes back within seconds when deleted', async () => {
    const ns = `del-${suffix()}`;
    await createNamespace(cp, ns);
    await waitFor('the ConfigMap', () => bundleIn(ns), 10_000);
    await kubectl(cp, ['delete', 'configmap', CM, '-n', ns]);
    const started = Date.now();
    expect(await waitFor('the ConfigMap back', () => bundleIn(ns), 10_000)).toBe(expected());
    expect(Date.now() - started).toBeLessThan(10_000);
  }, 30_000);

  it('is put back when edited', async () => {
    const ns = `edit-${suffix()}`;
    await createNamespace(cp, ns);
    await waitFor('the ConfigMap', () => bundleIn(ns), 10_000);
    await kubectl(cp, [
      'patch',
      'configmap',
      CM,
      '-n',
      ns,
      '--type=merge',
      '-p',
      JSON.stringify({ data: { 'root-cert.pem': 'tampered' } }),
    ]);
    expect(
      await waitFor(
        'the ConfigMap restored',
        async () => {
          const text = await bundleIn(ns);
          return text === expected() ? text : undefined;
        },
        10_000,
      ),
    ).toBe(expected());
  }, 30_000);
});

describe('the CA Secret mooring-ca', () => {
  const rootsInSecret = async (): Promise<string[] | undefined> => {
    try {
      const secret = (await kubectlJson(cp, ['get', 'secret', 'mooring-ca', '-n', MOORING_NS])) as {
        data: Record<string, string>;
      };
      const state = JSON.parse(
        Buffer.from(secret.data['ca-state.json'] ?? '', 'base64').toString('utf8'),
      ) as { roots: { certPem: string }[] };
      return state.roots.map((r) => r.certPem.trim());
    } catch {
      return undefined;
    }
  };

  it('holds the root the server serves', async () => {
    expect(await rootsInSecret()).toEqual(bundle.map((p) => p.trim()));
  });

  it('is written back by the leader, same root, when deleted', async () => {
    await kubectl(cp, ['delete', 'secret', 'mooring-ca', '-n', MOORING_NS]);
    expect(await waitFor('the Secret back', rootsInSecret, 10_000)).toEqual(
      bundle.map((p) => p.trim()),
    );
    expect(await mooring.trustBundle()).toEqual(bundle);
  }, 30_000);
});

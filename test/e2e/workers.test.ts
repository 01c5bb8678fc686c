// `mooring serve --kubeconfig` with server.workers: 2 against a real kube-apiserver: each worker
// is a replica of its own (own Lease identity, own TokenReview cache), so exactly one of them
// holds the rotation Lease and runs the controllers, both issue workload certificates, and the
// primary's /metrics shows the sum (the leader gauge the max).
import { startControlPlane, type ControlPlane } from './harness/control-plane';
import { createNamespace, createServiceAccount, kubectlJson } from './harness/kube';
import {
  bundleText,
  createIdlePod,
  makeCsr,
  opensslVerify,
  request,
  rotationLeaseHolder,
  startMooring,
  suffix,
  testConfig,
  tokenFor,
  waitFor,
  type MooringServer,
} from './support/mooring';

const MOORING_NS = `mooring-${suffix()}`;

let cp: ControlPlane;
let mooring: MooringServer;
let bundle: string[];

beforeAll(async () => {
  cp = await startControlPlane();
  await createNamespace(cp, MOORING_NS);
  mooring = await startMooring(cp, {
    namespace: MOORING_NS,
    config: testConfig(MOORING_NS, { server: { workers: 2 } }),
  });
  bundle = await mooring.trustBundle();
}, 120_000);

afterAll(async () => {
  await mooring?.stop();
  await cp?.stop();
}, 60_000);

describe('mooring serve --workers 2 in cluster mode', () => {
  it('is ready with both workers, and exactly one holds the rotation Lease', async () => {
    expect(await mooring.metric('mooring_workers', { state: 'ready' })).toBe(2);
    expect(
      await waitFor('a Lease holder', async () =>
        (await mooring.metric('mooring_ca_leader')) === 1 ? true : undefined,
      ),
    ).toBe(true);
    expect(await rotationLeaseHolder(cp, MOORING_NS)).toEqual(expect.any(String));
  }, 30_000);

  it('issues certificates for service-account tokens from both workers, all verifying', async () => {
    const ns = `app-${suffix()}`;
    await createNamespace(cp, ns);
    await createServiceAccount(cp, ns, 'web');
    const { uid } = await createIdlePod(cp, ns, 'web-0', 'web');
    const token = await tokenFor(cp, ns, 'web', {
      audience: 'mooring-ca',
      pod: { name: 'web-0', uid },
    });
    const before = await mooring.metric('mooring_certificates_issued_total', { result: 'issued' });
    for (let i = 0; i < 6; i++) {
      // A new connection each time: the primary hands them to the workers in turn.
      const answer = await request(`${mooring.url}/v1/certificates`, {
        method: 'POST',
        agent: false,
        ca: bundleText(bundle),
        headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
        body: JSON.stringify({ csr: (await makeCsr()).csrPem, ttlSeconds: 3600 }),
      });
      expect(answer.status).toBe(200);
      const { certificateChain } = JSON.parse(answer.body) as { certificateChain: string[] };
      await expect(opensslVerify(certificateChain, bundle)).resolves.toContain('OK');
    }
    const after = await mooring.metric('mooring_certificates_issued_total', { result: 'issued' });
    expect(after - before).toBe(6);
    // Each worker reviewed the token once (its own cache): both issued.
    expect(await mooring.metric('mooring_token_reviews_total')).toBe(2);
  }, 60_000);

  it('distributes the trust bundle to a new namespace (the leader worker runs the controllers)', async () => {
    const ns = `late-${suffix()}`;
    await createNamespace(cp, ns);
    const data = await waitFor('the ConfigMap', async () => {
      const cm = (await kubectlJson(cp, [
        'get',
        'configmap',
        'mooring-ca-root-cert',
        '-n',
        ns,
      ]).catch(() => undefined)) as { data?: Record<string, string> } | undefined;
      return cm?.data?.['root-cert.pem'];
    });
    expect(data).toBe(bundle.map((p) => `${p.trim()}\n`).join(''));
  }, 30_000);
});

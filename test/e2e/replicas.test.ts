// Two `mooring serve --kubeconfig` replicas against one apiserver: they start together and end
// with one root (Secret mooring-ca, create-if-absent); one holds the Lease; a rotation written
// by `mooring ca rotate --kubeconfig` is followed by both (Secret watch), the ConfigMaps and the
// webhook caBundle carry both roots, issuance moves to the new root after the propagation delay,
// performed by exactly one replica; every certificate issued by either verifies against the
// bundle throughout.
import { X509Certificate } from 'node:crypto';
import * as tls from 'node:tls';
import { startControlPlane, type ControlPlane } from './harness/control-plane';
import { createNamespace, createServiceAccount, kubectl, kubectlJson } from './harness/kube';
import {
  bundleText,
  createIdlePod,
  issuedByOneOf,
  makeCsr,
  opensslVerify,
  pemsOf,
  rotationLeaseHolder,
  runMooring,
  startMooring,
  suffix,
  tokenFor,
  waitFor,
  type MooringServer,
} from './support/mooring';
import * as fs from 'node:fs';

const MOORING_NS = `mooring-${suffix()}`;
const APP_NS = `app-${suffix()}`;
const MWC = 'mooring-sidecar-injector';

let cp: ControlPlane;
let a: MooringServer;
let b: MooringServer;
let token: string;

interface SecretState {
  roots: { certPem: string; status: string }[];
}

async function secretState(): Promise<SecretState> {
  const secret = (await kubectlJson(cp, ['get', 'secret', 'mooring-ca', '-n', MOORING_NS])) as {
    data: Record<string, string>;
  };
  return JSON.parse(
    Buffer.from(secret.data['ca-state.json'] ?? '', 'base64').toString('utf8'),
  ) as SecretState;
}

async function issue(server: MooringServer, bundle: readonly string[]): Promise<string[]> {
  const answer = await server.post(
    '/v1/certificates',
    { csr: (await makeCsr()).csrPem, ttlSeconds: 3600 },
    { authorization: `Bearer ${token}` },
    bundleText(bundle),
  );
  if (answer.status !== 200) throw new Error(`issue: HTTP ${answer.status} ${answer.body}`);
  return (JSON.parse(answer.body) as { certificateChain: string[] }).certificateChain;
}

/** The serving certificate the server presents, its chain checked against `bundle`. */
function servingCertificate(
  server: MooringServer,
  bundle: readonly string[],
): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(
      { host: '127.0.0.1', port: server.port, ca: bundleText(bundle), servername: undefined },
      () => {
        const cert = socket.getPeerX509Certificate();
        socket.end();
        if (cert === undefined) reject(new Error('no peer certificate'));
        else resolve(cert);
      },
    );
    socket.on('error', reject);
  });
}

async function configMapBundle(ns: string): Promise<string | undefined> {
  const cm = (await kubectlJson(cp, ['get', 'configmap', 'mooring-ca-root-cert', '-n', ns]).catch(
    () => undefined,
  )) as { data?: Record<string, string> } | undefined;
  return cm?.data?.['root-cert.pem'];
}

async function webhookCABundles(): Promise<string[]> {
  const mwc = (await kubectlJson(cp, ['get', 'mutatingwebhookconfiguration', MWC])) as {
    webhooks: { clientConfig: { caBundle?: string } }[];
  };
  return mwc.webhooks.map((w) =>
    Buffer.from(w.clientConfig.caBundle ?? '', 'base64').toString('utf8'),
  );
}

beforeAll(async () => {
  cp = await startControlPlane();
  await createNamespace(cp, MOORING_NS);
  await createNamespace(cp, APP_NS);
  await createServiceAccount(cp, APP_NS, 'web');
  const pod = await createIdlePod(cp, APP_NS, 'web-0', 'web');
  token = await tokenFor(cp, APP_NS, 'web', {
    audience: 'mooring-ca',
    pod: { name: 'web-0', uid: pod.uid },
  });
  // Both replicas start at the same moment against an empty namespace.
  [a, b] = await Promise.all([
    startMooring(cp, { namespace: MOORING_NS, env: { POD_NAME: 'replica-a' } }),
    startMooring(cp, { namespace: MOORING_NS, env: { POD_NAME: 'replica-b' } }),
  ]);
  // The webhook configuration, with a caBundle that is not Mooring's (the API server's CA): the
  // leader puts the trust bundle in.
  const rendered = await runMooring([
    'webhook-config',
    ...['--url', `https://127.0.0.1:${a.port}/inject`, '--ca-bundle', cp.caCertPath],
    ...['--failure-policy', 'Ignore'],
  ]);
  if (rendered.code !== 0) throw new Error(rendered.stderr);
  await kubectl(cp, ['apply', '-f', '-'], rendered.stdout);
}, 120_000);

afterAll(async () => {
  await Promise.allSettled([a?.stop(), b?.stop()]);
  await cp?.stop();
}, 60_000);

describe('two replicas', () => {
  it('end with one root, in the Secret and in both trust bundles', async () => {
    const [bundleA, bundleB] = await Promise.all([a.trustBundle(), b.trustBundle()]);
    expect(bundleA).toHaveLength(1);
    expect(bundleB).toEqual(bundleA);
    const state = await secretState();
    expect(state.roots.map((r) => r.status)).toEqual(['active']);
    expect(new X509Certificate(state.roots[0]?.certPem ?? '').fingerprint256).toBe(
      new X509Certificate(bundleA[0] ?? '').fingerprint256,
    );
  });

  it('elect exactly one leader on the Lease', async () => {
    const holder = await waitFor('a lease holder', () => rotationLeaseHolder(cp, MOORING_NS));
    expect(holder).toMatch(/^replica-[ab]-[0-9a-f]{8}$/);
    const leaders = [await a.metric('mooring_ca_leader'), await b.metric('mooring_ca_leader')];
    expect(leaders.sort()).toEqual([0, 1]);
  });

  it('issue certificates that verify against the bundle, and the webhook caBundle is the bundle', async () => {
    const bundle = await a.trustBundle();
    for (const server of [a, b])
      await expect(opensslVerify(await issue(server, bundle), bundle)).resolves.toContain('OK');
    const expected = bundleText(bundle);
    expect(
      await waitFor('the caBundle', async () => {
        const bundles = await webhookCABundles();
        return bundles.every((x) => x === expected) ? bundles : undefined;
      }),
    ).toEqual([expected, expected]);
  });

  it('follow a rotation made with `mooring ca rotate --kubeconfig`; one replica activates the new root', async () => {
    const before = await a.trustBundle();
    const oldRoot = before[0] ?? '';
    const rotated = await runMooring(
      ['ca', 'rotate', '--kubeconfig', cp.kubeconfigPath, '--config', a.configPath],
      { POD_NAMESPACE: MOORING_NS },
    );
    expect(rotated.code).toBe(0);

    // Both replicas follow the Secret: two roots, the old one still issuing.
    const both = await waitFor(
      'both roots on both replicas',
      async () => {
        const [ba, bb] = await Promise.all([a.trustBundle(), b.trustBundle()]);
        return ba.length === 2 && bb.length === 2 ? ba : undefined;
      },
      10_000,
    );
    expect(both[0]).toBe(oldRoot);
    const newRoot = both[1] ?? '';
    for (const server of [a, b]) {
      const chain = await issue(server, both);
      await expect(opensslVerify(chain, both)).resolves.toContain('OK');
      await expect(opensslVerify(chain, before)).resolves.toContain('OK'); // old root still issues
    }

    // ConfigMaps and caBundle carry both roots (in either order: activation reorders them).
    const sameRoots = (text: string | undefined): boolean =>
      text !== undefined &&
      JSON.stringify(pemsOf(text).sort()) === JSON.stringify(pemsOf(bundleText(both)).sort());
    for (const ns of [APP_NS, 'default']) {
      await waitFor(
        `both roots in ${ns}`,
        async () => (sameRoots(await configMapBundle(ns)) ? true : undefined),
        10_000,
      );
    }
    await waitFor(
      'both roots in the caBundle',
      async () => ((await webhookCABundles()).every(sameRoots) ? true : undefined),
      10_000,
    );

    // After the propagation delay, issuance moves to the new root on both replicas, and their
    // serving certificates follow; everything verifies against the bundle of both roots.
    for (const server of [a, b]) {
      const chain = await waitFor(
        'a certificate from the new root',
        async () => {
          const c = await issue(server, both);
          return issuedByOneOf(c[0] ?? '', [newRoot]) !== undefined ? c : undefined;
        },
        20_000,
      );
      await expect(opensslVerify(chain, both)).resolves.toContain('OK');
      await waitFor(
        'the serving certificate from the new root',
        async () => {
          const cert = await servingCertificate(server, both);
          return cert.checkIssued(new X509Certificate(newRoot)) ? true : undefined;
        },
        20_000,
      );
    }

    const state = await secretState();
    expect(state.roots.map((r) => r.status).sort()).toEqual(['active', 'retired']);
    // Exactly one replica performed the activation.
    const activations = [a, b].map(
      (s) => (fs.readFileSync(s.logPath, 'utf8').match(/"event":"root-activated"/g) ?? []).length,
    );
    expect(activations.sort()).toEqual([0, 1]);
  }, 60_000);

  it('hand the Lease over when the leader stops: the other replica then restores ConfigMaps', async () => {
    const leader = (await a.metric('mooring_ca_leader')) === 1 ? a : b;
    const follower = leader === a ? b : a;
    await leader.stop();
    await waitFor(
      'the follower to lead',
      async () => ((await follower.metric('mooring_ca_leader')) === 1 ? true : undefined),
      20_000,
    );
    await kubectl(cp, ['delete', 'configmap', 'mooring-ca-root-cert', '-n', APP_NS]);
    expect(await waitFor('the ConfigMap back', () => configMapBundle(APP_NS), 10_000)).toBe(
      bundleText(await follower.trustBundle()),
    );
  }, 60_000);
});

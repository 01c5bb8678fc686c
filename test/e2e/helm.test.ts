// The Helm chart against a real control plane (etcd + kube-apiserver of the e2e harness): helm
// install with the webhook pointed at a `mooring serve` running here in local mode, a Pod in a
// labelled namespace injected through the installed configuration, the ServiceAccount's RBAC
// checked by the real authorizer, helm upgrade, helm uninstall.
// No controller-manager, scheduler or kubelet run here: the Deployment never gets Pods, so the
// chart's objects are checked as API objects and the webhook is served by the local process.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse } from 'yaml';
import { CHART_DIR, runHelm, type HelmResult } from '../chart/helm';
import { freePorts, REPO_ROOT, startControlPlane, tailFile } from './harness/control-plane';
import type { ControlPlane } from './harness/control-plane';
import { createNamespace, createObject, kubectl, kubectlJson } from './harness/kube';

const NS = 'mooring-system';
const RELEASE = 'mooring';
const SA_USER = `system:serviceaccount:${NS}:${RELEASE}`;
const SA_GROUPS = [
  'system:serviceaccounts',
  `system:serviceaccounts:${NS}`,
  'system:authenticated',
];
const WEBHOOK_NAME = 'mooring-sidecar-injector';
const VALIDATING_NAME = 'mooring-traffic-validator';

// ---------------------------------------------------------------------------------------------
// `mooring serve` as a child process (bin/mooring.js runs dist/: `make build`).

interface Serve {
  /** `https://127.0.0.1:PORT` */
  readonly url: string;
  readonly logPath: string;
  stop(): Promise<void>;
}

interface LocalServe extends Serve {
  /** The server's trust bundle (PEM): what the webhook's caBundle must hold. */
  readonly bundlePem: string;
}

function get(
  url: string,
  options: https.RequestOptions = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const onResponse = (res: http.IncomingMessage): void => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    };
    const req = url.startsWith('https:')
      ? https.get(url, { ...options, timeout: 2_000 }, onResponse)
      : http.get(url, { timeout: 2_000 }, onResponse);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

/**
 * The server's trust bundle (GET /v1/trust-bundle). Bootstrap: the first fetch cannot verify the
 * server (its CA is what we are fetching); the bundle is then fetched again over a connection
 * verified against it, which proves that it is the CA of the server's certificate.
 */
async function fetchTrustBundle(port: number): Promise<string> {
  const url = `https://127.0.0.1:${port}/v1/trust-bundle`;
  const parseBundle = (answer: { status: number; body: string }): string => {
    if (answer.status !== 200) throw new Error(`GET /v1/trust-bundle: HTTP ${answer.status}`);
    const { trustBundle } = JSON.parse(answer.body) as { trustBundle: string[] };
    return trustBundle.map((pem) => (pem.endsWith('\n') ? pem : `${pem}\n`)).join('');
  };
  const unverified = parseBundle(await get(url, { rejectUnauthorized: false }));
  const verified = parseBundle(await get(url, { ca: unverified }));
  if (verified !== unverified) throw new Error('the trust bundle changed between two fetches');
  return verified;
}

/** Starts `mooring serve` on two free ports of 127.0.0.1 and waits for its /readyz. */
async function startServe(extraArgs: readonly string[]): Promise<Serve> {
  const main = path.join(REPO_ROOT, 'dist', 'cli', 'main.js');
  if (!fs.existsSync(main)) throw new Error(`${main} is missing: run \`make build\` first`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-serve-'));
  const [port, adminPort] = await freePorts(2);
  if (port === undefined || adminPort === undefined) throw new Error('no free ports');
  const logPath = path.join(dir, 'serve.log');
  const fd = fs.openSync(logPath, 'a');
  const child = spawn(
    process.execPath,
    [
      path.join(REPO_ROOT, 'bin', 'mooring.js'),
      ...['serve', '--data-dir', path.join(dir, 'data')],
      ...['--listen', `127.0.0.1:${port}`, '--admin-listen', `127.0.0.1:${adminPort}`],
      ...extraArgs,
    ],
    { detached: true, stdio: ['ignore', fd, fd] },
  );
  fs.closeSync(fd);
  let exited: string | undefined;
  const done = new Promise<void>((resolve) =>
    child.on('exit', (code, signal) => {
      exited = signal ?? `exit code ${String(code)}`;
      resolve();
    }),
  );
  const kill = (signal: NodeJS.Signals): void => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, signal);
    } catch {
      // ESRCH: gone already.
    }
  };
  const stop = async (): Promise<void> => {
    if (exited === undefined) {
      kill('SIGTERM');
      const timer = setTimeout(() => kill('SIGKILL'), 10_000);
      await done;
      clearTimeout(timer);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  };
  try {
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (exited !== undefined) throw new Error(`mooring serve exited (${exited})`);
      const ready = await get(`http://127.0.0.1:${adminPort}/readyz`).catch(() => undefined);
      if (ready?.status === 200) break;
      if (Date.now() > deadline) throw new Error('mooring serve was not ready within 30 s');
      await new Promise((r) => setTimeout(r, 200));
    }
    return { url: `https://127.0.0.1:${port}`, logPath, stop };
  } catch (err) {
    const log = tailFile(logPath);
    await stop();
    throw new Error(`${(err as Error).message}\n--- mooring serve log ---\n${log}`, {
      cause: err,
    });
  }
}

/** Local mode (no cluster): its own CA in a temporary data directory. */
async function startLocalServe(): Promise<LocalServe> {
  const serve = await startServe([]);
  try {
    return { ...serve, bundlePem: await fetchTrustBundle(Number(new URL(serve.url).port)) };
  } catch (err) {
    await serve.stop();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// helm, kubectl and object shapes.

interface Meta {
  name: string;
  namespace?: string;
  uid: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface PodShape {
  metadata: Meta;
  spec: {
    initContainers?: { name: string; restartPolicy?: string }[];
    containers: { name: string }[];
  };
}
interface WebhookConfiguration {
  metadata: Meta;
  webhooks: {
    name: string;
    failurePolicy: string;
    clientConfig: { url?: string; caBundle?: string; service?: object };
  }[];
}

function pod(name: string, namespace: string, labels: Record<string, string> = {}): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels: { app: name, ...labels } },
    spec: {
      containers: [
        { name: 'app', image: 'example.invalid/app:1', ports: [{ containerPort: 8080 }] },
      ],
    },
  };
}

function containerNames(p: PodShape): string[] {
  return [...(p.spec.initContainers ?? []), ...p.spec.containers].map((c) => c.name);
}

/** Fails with the server's log when the Pod lacks the injected containers. */
function expectInjected(p: PodShape, serve: Serve): void {
  const names = containerNames(p);
  if (!names.includes('mooring-init') || !names.includes('mooring-proxy')) {
    throw new Error(
      `Pod ${p.metadata.name} was not injected (containers: ${names.join(', ')})\n` +
        `--- mooring serve log ---\n${tailFile(serve.logPath)}`,
    );
  }
}

/** Kinds of the chart, as `kubectl get` resource names; the namespaced ones first. */
const NAMESPACED_KINDS = [
  'deployments.apps',
  'services',
  'serviceaccounts',
  'configmaps',
  'poddisruptionbudgets.policy',
  'roles.rbac.authorization.k8s.io',
  'rolebindings.rbac.authorization.k8s.io',
];
const CLUSTER_KINDS = [
  'clusterroles.rbac.authorization.k8s.io',
  'clusterrolebindings.rbac.authorization.k8s.io',
  'mutatingwebhookconfigurations.admissionregistration.k8s.io',
  'validatingwebhookconfigurations.admissionregistration.k8s.io',
];

/** `kind/name` of every object labelled as part of the release. */
async function releaseObjects(cp: ControlPlane): Promise<string[]> {
  const selector = `app.kubernetes.io/instance=${RELEASE}`;
  const names = async (args: string[]): Promise<string[]> =>
    (await kubectl(cp, [...args, '-l', selector, '-o', 'name']))
      .split('\n')
      .filter((l) => l !== '');
  const namespaced = await names(['get', NAMESPACED_KINDS.join(','), '-n', NS]);
  const cluster = await names(['get', CLUSTER_KINDS.join(',')]);
  return [...namespaced, ...cluster].sort();
}

async function canI(
  cp: ControlPlane,
  attributes: {
    verb: string;
    group?: string;
    resource: string;
    name?: string;
    namespace?: string;
    subresource?: string;
  },
): Promise<boolean> {
  const review = (await createObject(cp, {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SubjectAccessReview',
    spec: { user: SA_USER, groups: SA_GROUPS, resourceAttributes: { group: '', ...attributes } },
  })) as { status: { allowed: boolean } };
  return review.status.allowed;
}

// ---------------------------------------------------------------------------------------------

describe('the Helm chart on the e2e control plane', () => {
  let cp: ControlPlane;
  let serve: LocalServe;
  let helmHome: string;
  let bundleFile: string;

  const helm = (args: readonly string[]): Promise<HelmResult> =>
    runHelm([...args, '--kubeconfig', cp.kubeconfigPath], {
      HELM_CACHE_HOME: path.join(helmHome, 'cache'),
      HELM_CONFIG_HOME: path.join(helmHome, 'config'),
      HELM_DATA_HOME: path.join(helmHome, 'data'),
    });
  const helmOk = async (args: readonly string[]): Promise<string> => {
    const result = await helm(args);
    if (result.code !== 0) {
      throw new Error(`helm ${args.join(' ')} failed (exit ${result.code}):\n${result.stderr}`);
    }
    return result.stdout;
  };
  const mwc = async (): Promise<WebhookConfiguration> =>
    (await kubectlJson(cp, [
      'get',
      'mutatingwebhookconfiguration',
      WEBHOOK_NAME,
    ])) as WebhookConfiguration;
  const vwc = async (): Promise<WebhookConfiguration> =>
    (await kubectlJson(cp, [
      ...['get', 'validatingwebhookconfiguration', VALIDATING_NAME],
    ])) as WebhookConfiguration;

  /** A kubeconfig holding a token of the release's ServiceAccount: requests as the server. */
  const serviceAccountKubeconfig = async (): Promise<string> => {
    const token = (await kubectl(cp, ['create', 'token', RELEASE, '-n', NS])).trim();
    const kubeconfigPath = path.join(helmHome, 'sa-kubeconfig');
    const config = {
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        { name: 'e2e', cluster: { server: cp.server, 'certificate-authority': cp.caCertPath } },
      ],
      users: [{ name: 'sa', user: { token } }],
      contexts: [{ name: 'sa', context: { cluster: 'e2e', user: 'sa', namespace: NS } }],
      'current-context': 'sa',
    };
    fs.writeFileSync(kubeconfigPath, JSON.stringify(config), { mode: 0o600 });
    return kubeconfigPath;
  };

  beforeAll(async () => {
    helmHome = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-helm-'));
    cp = await startControlPlane();
    serve = await startLocalServe();
    bundleFile = path.join(helmHome, 'bundle.pem');
    fs.writeFileSync(bundleFile, serve.bundlePem);
    await createNamespace(cp, 'shop', { 'mooring.dev/inject': 'enabled' });
    await createNamespace(cp, 'plain');
  }, 180_000);

  afterAll(async () => {
    await Promise.all([serve?.stop(), cp?.stop()]);
    if (helmHome) fs.rmSync(helmHome, { recursive: true, force: true });
  }, 60_000);

  it('installs every object of the chart, the webhook pointed at the local server', async () => {
    const out = await helmOk([
      ...['install', RELEASE, CHART_DIR, '--namespace', NS, '--create-namespace'],
      ...['--set', `webhook.url=${serve.url}`, '--set-file', `webhook.caBundle=${bundleFile}`],
    ]);
    expect(out).toContain('mooring.dev/inject=enabled'); // NOTES.txt tells how to label
    expect(await releaseObjects(cp)).toEqual([
      'clusterrole.rbac.authorization.k8s.io/mooring',
      'clusterrole.rbac.authorization.k8s.io/mooring-certificate-issuer',
      'clusterrolebinding.rbac.authorization.k8s.io/mooring',
      'configmap/mooring',
      'deployment.apps/mooring',
      `mutatingwebhookconfiguration.admissionregistration.k8s.io/${WEBHOOK_NAME}`,
      'poddisruptionbudget.policy/mooring',
      'role.rbac.authorization.k8s.io/mooring',
      'rolebinding.rbac.authorization.k8s.io/mooring',
      'service/mooring',
      'serviceaccount/mooring',
      `validatingwebhookconfiguration.admissionregistration.k8s.io/${VALIDATING_NAME}`,
    ]);
    const config = await mwc();
    for (const w of config.webhooks) {
      expect(w.clientConfig).toEqual({
        url: `${serve.url}/inject`,
        caBundle: Buffer.from(serve.bundlePem).toString('base64'),
      });
    }
    // The validating webhook goes to the same server, path /validate.
    expect((await vwc()).webhooks.map((w) => [w.failurePolicy, w.clientConfig])).toEqual([
      [
        'Ignore',
        { url: `${serve.url}/validate`, caBundle: Buffer.from(serve.bundlePem).toString('base64') },
      ],
    ]);
  }, 120_000);

  it('injects a Pod created in a labelled namespace through the installed configuration', async () => {
    const created = (await createObject(cp, pod('web', 'shop'))) as PodShape;
    expectInjected(created, serve);
    expect(containerNames(created)).toContain('app');
    expect(created.metadata.annotations?.['mooring.dev/status']).toBeDefined();
  }, 60_000);

  it('leaves a Pod of an unlabelled namespace alone, and injects one labelled "true" there', async () => {
    const plain = (await createObject(cp, pod('plain', 'plain'))) as PodShape;
    expect(containerNames(plain)).toEqual(['app']);
    const optedIn = (await createObject(
      cp,
      pod('opted-in', 'plain', { 'mooring.dev/inject': 'true' }),
    )) as PodShape;
    expectInjected(optedIn, serve);
  }, 60_000);

  describe("the server's ServiceAccount, asked of the API server's authorizer", () => {
    it.each<[string, Parameters<typeof canI>[1], boolean]>([
      [
        'reads its CA Secret',
        { verb: 'get', resource: 'secrets', name: 'mooring-ca', namespace: NS },
        true,
      ],
      [
        'watches its CA Secret by name',
        { verb: 'watch', resource: 'secrets', name: 'mooring-ca', namespace: NS },
        true,
      ],
      [
        'updates its CA Secret',
        { verb: 'update', resource: 'secrets', name: 'mooring-ca', namespace: NS },
        true,
      ],
      [
        'creates Secrets in its namespace',
        { verb: 'create', resource: 'secrets', namespace: NS },
        true,
      ],
      [
        'reads no other Secret',
        { verb: 'get', resource: 'secrets', name: 'other', namespace: NS },
        false,
      ],
      ['lists no Secrets', { verb: 'list', resource: 'secrets', namespace: NS }, false],
      [
        'deletes no Secret',
        { verb: 'delete', resource: 'secrets', name: 'mooring-ca', namespace: NS },
        false,
      ],
      [
        'touches no Secret elsewhere',
        { verb: 'get', resource: 'secrets', name: 'mooring-ca', namespace: 'kube-system' },
        false,
      ],
      [
        'updates its Lease',
        {
          verb: 'update',
          group: 'coordination.k8s.io',
          resource: 'leases',
          name: 'mooring-ca-rotation',
          namespace: NS,
        },
        true,
      ],
      [
        'creates a Lease',
        { verb: 'create', group: 'coordination.k8s.io', resource: 'leases', namespace: NS },
        true,
      ],
      [
        'updates no other Lease',
        {
          verb: 'update',
          group: 'coordination.k8s.io',
          resource: 'leases',
          name: 'other',
          namespace: NS,
        },
        false,
      ],
      ['watches namespaces', { verb: 'watch', resource: 'namespaces' }, true],
      [
        'updates the trust bundle ConfigMap anywhere',
        { verb: 'update', resource: 'configmaps', name: 'mooring-ca-root-cert', namespace: 'shop' },
        true,
      ],
      [
        'creates ConfigMaps anywhere',
        { verb: 'create', resource: 'configmaps', namespace: 'shop' },
        true,
      ],
      [
        'updates no other ConfigMap',
        { verb: 'update', resource: 'configmaps', name: 'app-config', namespace: 'shop' },
        false,
      ],
      [
        'deletes no ConfigMap',
        { verb: 'delete', resource: 'configmaps', name: 'mooring-ca-root-cert', namespace: 'shop' },
        false,
      ],
      [
        'creates TokenReviews',
        { verb: 'create', group: 'authentication.k8s.io', resource: 'tokenreviews' },
        true,
      ],
      [
        'creates SubjectAccessReviews',
        { verb: 'create', group: 'authorization.k8s.io', resource: 'subjectaccessreviews' },
        true,
      ],
      [
        'watches its webhook configuration by name',
        {
          verb: 'watch',
          group: 'admissionregistration.k8s.io',
          resource: 'mutatingwebhookconfigurations',
          name: WEBHOOK_NAME,
        },
        true,
      ],
      [
        'updates its webhook configuration',
        {
          verb: 'update',
          group: 'admissionregistration.k8s.io',
          resource: 'mutatingwebhookconfigurations',
          name: WEBHOOK_NAME,
        },
        true,
      ],
      [
        'patches not even its own webhook configuration (it replaces it)',
        {
          verb: 'patch',
          group: 'admissionregistration.k8s.io',
          resource: 'mutatingwebhookconfigurations',
          name: WEBHOOK_NAME,
        },
        false,
      ],
      [
        'patches no other webhook configuration',
        {
          verb: 'patch',
          group: 'admissionregistration.k8s.io',
          resource: 'mutatingwebhookconfigurations',
          name: 'istio-sidecar-injector',
        },
        false,
      ],
      [
        'deletes not even its own',
        {
          verb: 'delete',
          group: 'admissionregistration.k8s.io',
          resource: 'mutatingwebhookconfigurations',
          name: WEBHOOK_NAME,
        },
        false,
      ],
      [
        'watches its ValidatingWebhookConfiguration by name',
        {
          verb: 'watch',
          group: 'admissionregistration.k8s.io',
          resource: 'validatingwebhookconfigurations',
          name: VALIDATING_NAME,
        },
        true,
      ],
      [
        'updates its ValidatingWebhookConfiguration',
        {
          verb: 'update',
          group: 'admissionregistration.k8s.io',
          resource: 'validatingwebhookconfigurations',
          name: VALIDATING_NAME,
        },
        true,
      ],
      [
        'updates no other ValidatingWebhookConfiguration',
        {
          verb: 'update',
          group: 'admissionregistration.k8s.io',
          resource: 'validatingwebhookconfigurations',
          name: 'istio-validator-istio-system',
        },
        false,
      ],
      [
        'deletes not even its own ValidatingWebhookConfiguration',
        {
          verb: 'delete',
          group: 'admissionregistration.k8s.io',
          resource: 'validatingwebhookconfigurations',
          name: VALIDATING_NAME,
        },
        false,
      ],
      [
        'watches CSRs',
        { verb: 'watch', group: 'certificates.k8s.io', resource: 'certificatesigningrequests' },
        true,
      ],
      [
        'updates CSR status',
        {
          verb: 'update',
          group: 'certificates.k8s.io',
          resource: 'certificatesigningrequests',
          subresource: 'status',
          name: 'any',
        },
        true,
      ],
      [
        'does not approve CSRs (auto-approve is off)',
        {
          verb: 'update',
          group: 'certificates.k8s.io',
          resource: 'certificatesigningrequests',
          subresource: 'approval',
          name: 'any',
        },
        false,
      ],
      [
        'signs for mooring.dev/workload',
        {
          verb: 'sign',
          group: 'certificates.k8s.io',
          resource: 'signers',
          name: 'mooring.dev/workload',
        },
        true,
      ],
      [
        'signs for no other signer',
        {
          verb: 'sign',
          group: 'certificates.k8s.io',
          resource: 'signers',
          name: 'kubernetes.io/kube-apiserver-client',
        },
        false,
      ],
      ['creates no Pods', { verb: 'create', resource: 'pods', namespace: 'shop' }, false],
      [
        'may not issue admin certificates itself',
        { verb: 'create', group: 'mooring.dev', resource: 'certificates' },
        false,
      ],
    ])('%s', async (_name, attributes, allowed) => {
      await expect(canI(cp, attributes)).resolves.toBe(allowed);
    });

    it('lists the trust-bundle ConfigMaps of every namespace by name, and nothing else', async () => {
      const asServer = { kubeconfigPath: await serviceAccountKubeconfig() };
      await expect(
        kubectl(asServer, [
          ...['get', 'configmaps', '-A'],
          ...['--field-selector', 'metadata.name=mooring-ca-root-cert'],
        ]),
      ).resolves.toBeDefined();
      await expect(kubectl(asServer, ['get', 'configmaps', '-A'])).rejects.toThrow(/forbidden/i);
    }, 30_000);
  });

  /**
   * Runs `mooring serve` in cluster mode as the release's Pods would: the release's config.yaml,
   * a token of the release's ServiceAccount. `check` runs while it serves; its log is added to a
   * failure.
   */
  const withClusterServe = async (check: () => Promise<void>): Promise<void> => {
    const cm = (await kubectlJson(cp, ['get', 'configmap', RELEASE, '-n', NS])) as {
      data: Record<string, string>;
    };
    const configPath = path.join(helmHome, 'config.yaml');
    fs.writeFileSync(configPath, cm.data['config.yaml'] ?? '');
    const kubeconfigPath = await serviceAccountKubeconfig();
    const clusterServe = await startServe(['--config', configPath, '--kubeconfig', kubeconfigPath]);
    try {
      await check();
    } catch (err) {
      throw new Error(
        `${(err as Error).message}\n--- mooring serve log ---\n${tailFile(clusterServe.logPath)}`,
        { cause: err },
      );
    } finally {
      await clusterServe.stop();
    }
  };

  /** Polls `read` until it gives a value, for up to 30 s. */
  const eventually = async <T>(read: () => Promise<T | undefined>): Promise<T | undefined> => {
    const deadline = Date.now() + 30_000;
    for (;;) {
      const value = await read().catch(() => undefined);
      if (value !== undefined || Date.now() > deadline) return value;
      await new Promise((r) => setTimeout(r, 250));
    }
  };

  /** The trust bundle the server distributed into namespace `plain`. */
  const distributedBundle = (): Promise<string | undefined> =>
    eventually(async () => {
      const cm = (await kubectlJson(cp, [
        ...['get', 'configmap', 'mooring-ca-root-cert', '-n', 'plain'],
      ])) as { data?: Record<string, string> };
      return cm.data?.['root-cert.pem'];
    });

  /** The certificates of a PEM bundle, each as one base64 string, sorted. */
  const certificates = (pem: string): string[] =>
    [...pem.matchAll(/-----BEGIN CERTIFICATE-----([^-]+)-----END CERTIFICATE-----/g)]
      .map((m) => (m[1] ?? '').replace(/\s/g, ''))
      .sort();

  let firstRoots: string[] = [];

  it("runs `mooring serve` in cluster mode with the chart's ServiceAccount and configuration", async () => {
    // The proof that the RBAC is enough: the real server, with the release's config.yaml and a
    // token of the release's ServiceAccount, makes its CA and distributes the trust bundle.
    await withClusterServe(async () => {
      const secret = (await kubectlJson(cp, ['get', 'secret', 'mooring-ca', '-n', NS])) as {
        metadata: Meta;
      };
      expect(secret.metadata.name).toBe('mooring-ca');
      const bundle = await distributedBundle();
      firstRoots = certificates(bundle ?? '');
      expect(firstRoots.length).toBeGreaterThan(0);
      // webhook.url is set, so the server leaves the caBundle of the configuration alone.
      for (const w of (await mwc()).webhooks) {
        expect(w.clientConfig.caBundle).toBe(Buffer.from(serve.bundlePem).toString('base64'));
      }
    });
  }, 90_000);

  it('upgrades what it should: replicas, failurePolicy, configuration; keeps the rest', async () => {
    const before = {
      service: (
        (await kubectlJson(cp, ['get', 'service', RELEASE, '-n', NS])) as { metadata: Meta }
      ).metadata.uid,
      mwc: (await mwc()).metadata.uid,
    };
    await helmOk([
      ...['upgrade', RELEASE, CHART_DIR, '--namespace', NS, '--reuse-values'],
      ...['--set', 'replicaCount=3', '--set', 'webhook.failurePolicy=Ignore'],
      ...['--set', 'config.server.logLevel=debug'],
    ]);
    const deployment = (await kubectlJson(cp, ['get', 'deployment', RELEASE, '-n', NS])) as {
      spec: { replicas: number };
    };
    expect(deployment.spec.replicas).toBe(3);
    const config = await mwc();
    expect(config.metadata.uid).toBe(before.mwc);
    expect(config.webhooks.map((w) => w.failurePolicy)).toEqual(['Ignore', 'Ignore']);
    for (const w of config.webhooks) {
      expect(w.clientConfig.url).toBe(`${serve.url}/inject`);
      expect(w.clientConfig.caBundle).toBe(Buffer.from(serve.bundlePem).toString('base64'));
    }
    const cm = (await kubectlJson(cp, ['get', 'configmap', RELEASE, '-n', NS])) as {
      data: Record<string, string>;
    };
    const serverConfig = parse(cm.data['config.yaml'] ?? '') as { server: { logLevel: string } };
    expect(serverConfig.server.logLevel).toBe('debug');
    const service = (await kubectlJson(cp, ['get', 'service', RELEASE, '-n', NS])) as {
      metadata: Meta;
    };
    expect(service.metadata.uid).toBe(before.service);
    const history = JSON.parse(
      await helmOk(['history', RELEASE, '--namespace', NS, '-o', 'json']),
    ) as {
      revision: number;
      status: string;
    }[];
    expect(history.map((h) => [h.revision, h.status])).toEqual([
      [1, 'superseded'],
      [2, 'deployed'],
    ]);

    // failurePolicy is Ignore now: a failed call would create the Pod uninjected.
    const injected = (await createObject(cp, pod('after-upgrade', 'shop'))) as PodShape;
    expectInjected(injected, serve);
  }, 120_000);

  it('drops the PodDisruptionBudget when upgraded to one replica', async () => {
    await helmOk([
      'upgrade',
      RELEASE,
      CHART_DIR,
      '--namespace',
      NS,
      '--reuse-values',
      '--set',
      'replicaCount=1',
    ]);
    await expect(kubectl(cp, ['get', 'poddisruptionbudget', RELEASE, '-n', NS])).rejects.toThrow(
      /not found/i,
    );
  }, 120_000);

  it('uninstalls everything but what the server made and the README says is kept', async () => {
    // What the server makes at run time (the cluster-mode run above did): its CA Secret and the
    // trust bundle in every namespace. They are not chart objects. Made here if absent, so that
    // this test does not depend on the one above.
    const ensure = async (object: object): Promise<void> => {
      await createObject(cp, object).catch((err: Error) => {
        if (!/AlreadyExists/.test(err.message)) throw err;
      });
    };
    await ensure({
      apiVersion: 'v1',
      kind: 'Secret',
      metadata: { name: 'mooring-ca', namespace: NS },
      data: { 'root-cert.pem': Buffer.from(serve.bundlePem).toString('base64') },
    });
    await ensure({
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'mooring-ca-root-cert', namespace: 'shop' },
      data: { 'root-cert.pem': serve.bundlePem },
    });

    await helmOk(['uninstall', RELEASE, '--namespace', NS]);

    expect(await releaseObjects(cp)).toEqual([]);
    // Nothing of the chart left under any name: the namespace holds only what the server made
    // (README: kept on purpose), and the CA Secret is among it.
    const kinds = [...NAMESPACED_KINDS, 'secrets', 'leases.coordination.k8s.io'].join(',');
    const left = (await kubectl(cp, ['get', kinds, '-n', NS, '-o', 'name']))
      .split('\n')
      .filter((l) => l !== '');
    expect(left).toContain('secret/mooring-ca');
    const kept = [
      'secret/mooring-ca',
      'configmap/mooring-ca-root-cert',
      'lease.coordination.k8s.io/mooring-ca-rotation',
    ];
    expect(left.filter((name) => !kept.includes(name))).toEqual([]);
    for (const kind of CLUSTER_KINDS) {
      const names = await kubectl(cp, ['get', kind, '-o', 'name']);
      expect(names).not.toMatch(/\/mooring/);
    }
    await expect(
      kubectl(cp, ['get', 'configmap', 'mooring-ca-root-cert', '-n', 'shop']),
    ).resolves.toContain('mooring-ca-root-cert');
    const releases = await helmOk(['list', '--all-namespaces', '-o', 'json']);
    expect(JSON.parse(releases)).toEqual([]);

    // No webhook is left to call: Pods in the labelled namespace are created as they are.
    const after = (await createObject(cp, pod('after-uninstall', 'shop'))) as PodShape;
    expect(containerNames(after)).toEqual(['app']);
  }, 120_000);

  it('reinstalled with the defaults, the server patches the caBundle with the root it kept', async () => {
    await helmOk(['install', RELEASE, CHART_DIR, '--namespace', NS]);
    for (const w of (await mwc()).webhooks) expect(w.clientConfig.caBundle).toBeUndefined();
    for (const w of (await vwc()).webhooks) expect(w.clientConfig.caBundle).toBeUndefined();
    await withClusterServe(async () => {
      // Both configurations, with the release's RBAC (update on exactly these two names).
      const caBundle = await eventually(async () => {
        const webhooks = [...(await mwc()).webhooks, ...(await vwc()).webhooks];
        const bundles = webhooks.map((w) => w.clientConfig.caBundle);
        return bundles.every((b) => b !== undefined && b !== '') ? bundles : undefined;
      });
      expect(caBundle).toHaveLength(3);
      for (const b of caBundle ?? []) {
        // The Secret survived the uninstall, so the root is the one of the first install.
        expect(certificates(Buffer.from(b ?? '', 'base64').toString('utf8'))).toEqual(firstRoots);
      }
    });
    await helmOk(['uninstall', RELEASE, '--namespace', NS]);
    expect(await releaseObjects(cp)).toEqual([]);
  }, 120_000);

  describe('crds.install', () => {
    const CRD_FILES = path.join(CHART_DIR, 'charts', 'crds', 'crd-files');
    /** The CRD names of the chart's copies, from their file names. */
    const chartCrds = (): string[] => [
      ...fs.readdirSync(path.join(CRD_FILES, 'istio')).map((f) => f.replace(/\.yaml$/, '')),
      ...fs
        .readdirSync(path.join(CRD_FILES, 'gateway-api'))
        .map((f) => f.replace(/^(.*)_(.*)\.yaml$/, '$2.$1')),
    ];
    /** Installed before the release, as another owner would: the chart must leave it alone. */
    const FOREIGN = 'peerauthentications.security.istio.io';
    interface Crd {
      metadata: Meta & { generation: number };
    }
    const crd = async (name: string): Promise<Crd> =>
      (await kubectlJson(cp, ['get', 'crd', name])) as Crd;
    const HELM_OWNER = 'meta.helm.sh/release-name';

    it('installs the CRDs that are not there, leaves alone one that is, and keeps them all on uninstall', async () => {
      const names = chartCrds();
      expect(names).toHaveLength(19);
      expect(names).toContain('httproutes.gateway.networking.k8s.io');
      await kubectl(cp, ['create', '-f', path.join(CRD_FILES, 'istio', `${FOREIGN}.yaml`)]);
      const foreign = await crd(FOREIGN);

      await helmOk([
        ...['install', RELEASE, CHART_DIR, '--namespace', NS],
        ...['--set', 'crds.install=true'],
      ]);
      for (const name of names) {
        const { metadata } = await crd(name);
        if (name === FOREIGN) {
          expect([name, metadata.uid, metadata.generation]).toEqual([
            name,
            foreign.metadata.uid,
            foreign.metadata.generation,
          ]);
          expect([name, metadata.annotations?.[HELM_OWNER]]).toEqual([name, undefined]);
        } else {
          expect([name, metadata.annotations?.[HELM_OWNER]]).toEqual([name, RELEASE]);
        }
        expect([name, metadata.annotations?.['helm.sh/resource-policy']]).toEqual([name, 'keep']);
      }

      // An upgrade renders again the CRDs the release installed (lookup finds them as its own),
      // and still not the other one.
      await helmOk(['upgrade', RELEASE, CHART_DIR, '--namespace', NS, '--reuse-values']);
      const manifest = await helmOk(['get', 'manifest', RELEASE, '--namespace', NS]);
      const rendered = [
        ...manifest.matchAll(/^kind: CustomResourceDefinition\n(?:.*\n)*? {2}name: (\S+)$/gm),
      ]
        .map((m) => m[1])
        .sort();
      expect(rendered).toEqual(names.filter((n) => n !== FOREIGN).sort());

      // Uninstalled: the release's objects go, every CRD stays (and with it users' routes).
      await helmOk(['uninstall', RELEASE, '--namespace', NS]);
      expect(await releaseObjects(cp)).toEqual([]);
      const left = (await kubectl(cp, ['get', 'crd', '-o', 'name'])).split('\n');
      for (const name of names) {
        expect(left).toContain(`customresourcedefinition.apiextensions.k8s.io/${name}`);
      }
    }, 180_000);
  });
});

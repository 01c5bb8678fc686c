// The injector through a real apiserver: `mooring serve --kubeconfig` runs here, the webhook is
// registered with `mooring webhook-config --url https://127.0.0.1:PORT/inject --ca-bundle FILE`,
// and Pods are created with kubectl. Which Pods come back injected (namespace label, Pod label,
// kube-system), an invalid annotation refused with its message, a server-side dry run; then,
// Mooring stopped with failurePolicy Fail: Pods of labelled namespaces are refused with a clear
// error, others are created at once. Each test works in namespaces of its own.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { startControlPlane, type ControlPlane } from './harness/control-plane';
import { createNamespace, kubectl, kubectlJson, KubectlError } from './harness/kube';
import {
  bundleText,
  runMooring,
  startMooring,
  suffix,
  waitFor,
  type MooringServer,
} from './support/mooring';

const MOORING_NS = `mooring-${suffix()}`;

let cp: ControlPlane;
let mooring: MooringServer;
let tmp: string;

interface Pod {
  metadata: { name: string; namespace: string; annotations?: Record<string, string>; uid?: string };
  spec: {
    containers: { name: string }[];
    initContainers?: { name: string; restartPolicy?: string }[];
  };
}

const pod = (
  name: string,
  labels: Record<string, string> = {},
  annotations: Record<string, string> = {},
) => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, labels, annotations },
  spec: {
    containers: [
      { name: 'app', image: 'registry.invalid/app:1', ports: [{ containerPort: 8080 }] },
    ],
  },
});

async function create(ns: string, object: object, extraArgs: readonly string[] = []): Promise<Pod> {
  return (await kubectlJson(
    cp,
    ['create', '-n', ns, '-f', '-', ...extraArgs],
    JSON.stringify(object),
  )) as Pod;
}

const names = (p: Pod): string[] =>
  [...(p.spec.initContainers ?? []), ...p.spec.containers].map((c) => c.name);
const injected = (p: Pod): boolean =>
  names(p).includes('mooring-proxy') &&
  names(p).includes('mooring-init') &&
  p.metadata.annotations?.['mooring.dev/status'] !== undefined;

async function namespace(labels: Record<string, string> = {}): Promise<string> {
  const ns = `inj-${suffix()}`;
  await createNamespace(cp, ns, labels);
  return ns;
}

async function register(failurePolicy: 'Fail' | 'Ignore'): Promise<void> {
  const bundleFile = path.join(tmp, 'bundle.pem');
  fs.writeFileSync(bundleFile, bundleText(await mooring.trustBundle()));
  const rendered = await runMooring([
    'webhook-config',
    ...['--url', `https://127.0.0.1:${mooring.port}/inject`, '--ca-bundle', bundleFile],
    ...['--failure-policy', failurePolicy],
  ]);
  if (rendered.code !== 0) throw new Error(`mooring webhook-config: ${rendered.stderr}`);
  await kubectl(cp, ['apply', '-f', '-'], rendered.stdout);
}

beforeAll(async () => {
  cp = await startControlPlane();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mooring-e2e-inject-'));
  await createNamespace(cp, MOORING_NS);
  mooring = await startMooring(cp, { namespace: MOORING_NS });
  await register('Fail');
}, 120_000);

afterAll(async () => {
  await mooring?.stop();
  await cp?.stop();
  if (tmp !== undefined) fs.rmSync(tmp, { recursive: true, force: true });
}, 60_000);

describe('Pods through the apiserver and the webhook', () => {
  it('injects a Pod created in a namespace labelled enabled', async () => {
    const ns = await namespace({ 'mooring.dev/inject': 'enabled' });
    const created = await create(ns, pod('web'));
    expect(injected(created)).toBe(true);
    expect(created.spec.initContainers?.map((c) => c.name)).toEqual([
      'mooring-init',
      'mooring-proxy',
    ]);
    // Stored as admitted: a fresh read shows the same containers.
    const stored = (await kubectlJson(cp, ['get', 'pod', 'web', '-n', ns])) as Pod;
    expect(names(stored)).toEqual(names(created));
  }, 30_000);

  it('does not inject a Pod labelled "false" in an enabled namespace', async () => {
    const ns = await namespace({ 'mooring.dev/inject': 'enabled' });
    expect(injected(await create(ns, pod('opt-out', { 'mooring.dev/inject': 'false' })))).toBe(
      false,
    );
  }, 30_000);

  it('does not inject a Pod in an unlabelled namespace, unless the Pod is labelled "true"', async () => {
    const ns = await namespace();
    expect(injected(await create(ns, pod('plain')))).toBe(false);
    expect(injected(await create(ns, pod('opt-in', { 'mooring.dev/inject': 'true' })))).toBe(true);
  }, 30_000);

  it('never injects in a namespace labelled disabled, even a Pod labelled "true"', async () => {
    const ns = await namespace({ 'mooring.dev/inject': 'disabled' });
    expect(injected(await create(ns, pod('opt-in', { 'mooring.dev/inject': 'true' })))).toBe(false);
  }, 30_000);

  it('leaves kube-system untouched, even a Pod labelled "true" there', async () => {
    await createNamespace(cp, 'kube-system');
    const name = `sys-${suffix()}`;
    const created = await create('kube-system', pod(name, { 'mooring.dev/inject': 'true' }));
    expect(injected(created)).toBe(false);
    expect(created.metadata.annotations?.['mooring.dev/status']).toBeUndefined();
  }, 30_000);

  it('refuses a Pod with an invalid annotation, with a message naming the key and the value', async () => {
    const ns = await namespace({ 'mooring.dev/inject': 'enabled' });
    const bad = pod('bad', {}, { 'traffic.mooring.dev/exclude-inbound-ports': '80,notaport' });
    const err = await create(ns, bad).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(KubectlError);
    const stderr = (err as KubectlError).stderr;
    expect(stderr).toContain('denied the request');
    expect(stderr).toContain('traffic.mooring.dev/exclude-inbound-ports');
    expect(stderr).toContain('notaport');
    await expect(kubectl(cp, ['get', 'pod', 'bad', '-n', ns])).rejects.toThrow(
      /NotFound|not found/,
    );
  }, 30_000);

  it('answers a server-side dry run: the Pod comes back injected and is not stored', async () => {
    const ns = await namespace({ 'mooring.dev/inject': 'enabled' });
    const dry = await create(ns, pod('dry'), ['--dry-run=server']);
    expect(injected(dry)).toBe(true);
    await expect(kubectl(cp, ['get', 'pod', 'dry', '-n', ns])).rejects.toThrow(
      /NotFound|not found/,
    );
  }, 30_000);
});

describe('with Mooring stopped and failurePolicy Fail', () => {
  beforeAll(async () => {
    await mooring.stop();
  }, 30_000);

  it('refuses a Pod in a labelled namespace with a clear error', async () => {
    const ns = await namespace({ 'mooring.dev/inject': 'enabled' });
    const err = await create(ns, pod('web')).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(KubectlError);
    const stderr = (err as KubectlError).stderr;
    expect(stderr).toMatch(/failed calling webhook "namespace\.sidecar-injector\.mooring\.dev"/);
    expect(stderr).toMatch(/connection refused/);
  }, 30_000);

  it('creates a Pod in an unlabelled namespace at once', async () => {
    const ns = await namespace();
    const started = Date.now();
    const created = await create(ns, pod('plain'));
    expect(Date.now() - started).toBeLessThan(3000);
    expect(injected(created)).toBe(false);
    await waitFor(
      'the Pod',
      async () => (await kubectlJson(cp, ['get', 'pod', 'plain', '-n', ns])) as Pod,
    );
  }, 30_000);
});

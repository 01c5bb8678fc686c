// The cluster adapters' control loops against an in-memory apiserver (fake-api.ts): the
// reflector's list/watch/relist, the work queue, trust distribution, the webhook caBundle, the
// Lease, the Secret store and the CSR signer. The e2e tests run the same code against a real
// kube-apiserver; these prove the logic case by case, fast.

import { corePath, groupPath, KubeApiError, resourceOfPath } from '../../../src/adapters/kube/api';
import { CsrSigner, CSR_COLLECTION } from '../../../src/adapters/kube/csr-signer';
import type { CertificateSigningRequest } from '../../../src/adapters/kube/csr-policy';
import { LeaseElector, type Lease } from '../../../src/adapters/kube/lease';
import { Reflector, type ReflectorEventType } from '../../../src/adapters/kube/reflector';
import { SecretKeyStore, type Secret } from '../../../src/adapters/kube/secret-store';
import { TrustDistributor, type ConfigMap } from '../../../src/adapters/kube/trust-distributor';
import {
  MWC_COLLECTION,
  VWC_COLLECTION,
  WebhookCABundlePatcher,
  type MutatingWebhookConfiguration,
  type WebhookConfiguration,
  type WebhookConfigurationKind,
} from '../../../src/adapters/kube/webhook-ca-bundle';
import { WorkQueue } from '../../../src/adapters/kube/work-queue';
import type {
  CertificateService,
  Clock,
  IssuedChain,
  WorkloadIssueRequest,
} from '../../../src/ca/ports';
import { spiffeIdOf } from '../../../src/ca/identity';
import { MooringError } from '../../../src/errors';
import { eventually, FakeKubeApi, silentLogger } from './fake-api';

const ROOT_A = '-----BEGIN CERTIFICATE-----\nROOTA\n-----END CERTIFICATE-----';
const ROOT_B = '-----BEGIN CERTIFICATE-----\nROOTB\n-----END CERTIFICATE-----';

const namespace = (name: string): object => ({
  apiVersion: 'v1',
  kind: 'Namespace',
  metadata: { name },
});

function seedNamespaces(api: FakeKubeApi, names: readonly string[]): void {
  for (const name of names) api.seed(corePath('namespaces'), namespace(name));
}

const cmPath = (ns: string): string => corePath('configmaps', ns, 'mooring-ca-root-cert');

describe('resource names of request paths (metric labels)', () => {
  it.each([
    ['/api/v1/namespaces/a/secrets/mooring-ca', 'secrets'],
    ['/api/v1/namespaces/a/configmaps', 'configmaps'],
    ['/api/v1/configmaps', 'configmaps'],
    ['/api/v1/namespaces', 'namespaces'],
    ['/api/v1/namespaces/kube-system', 'namespaces'],
    ['/apis/authentication.k8s.io/v1/tokenreviews', 'tokenreviews'],
    [
      '/apis/certificates.k8s.io/v1/certificatesigningrequests/x/status',
      'certificatesigningrequests/status',
    ],
    ['/apis/coordination.k8s.io/v1/namespaces/m/leases/mooring-ca-rotation', 'leases'],
  ])('%s is about %s', (path, resource) => {
    expect(resourceOfPath(path)).toBe(resource);
  });
});

describe('the work queue', () => {
  it('runs a key added many times while queued once, and again if added while running', async () => {
    const runs: string[] = [];
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const queue = new WorkQueue({
      name: 't',
      concurrency: 1,
      logger: silentLogger,
      handler: async (key) => {
        runs.push(key);
        if (runs.length === 1) await gate;
      },
    });
    queue.add('a');
    queue.add('a'); // a is running: runs once more after
    queue.add('b');
    queue.add('b'); // b is queued: deduplicated
    release();
    await queue.idle();
    expect(runs).toEqual(['a', 'b', 'a']);
  });

  it('retries a failing key with backoff until it succeeds', async () => {
    let attempts = 0;
    const queue = new WorkQueue({
      name: 't',
      minRetryMs: 1,
      logger: silentLogger,
      handler: () => {
        attempts++;
        return attempts < 3 ? Promise.reject(new Error('boom')) : Promise.resolve();
      },
    });
    queue.add('x');
    await eventually(() => attempts === 3);
    queue.stop();
  });
});

describe('the reflector', () => {
  function reflect(api: FakeKubeApi, opts: { resyncMs?: number } = {}) {
    const events: [ReflectorEventType, string][] = [];
    const reflector = new Reflector<ConfigMap>({
      api,
      name: 'cms',
      path: corePath('configmaps'),
      fieldSelector: 'metadata.name=mooring-ca-root-cert',
      resyncMs: opts.resyncMs ?? 0,
      minBackoffMs: 1,
      logger: silentLogger,
      onEvent: (type, obj) =>
        events.push([type, `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`]),
    });
    return { reflector, events };
  }

  it('lists, then follows adds, changes and deletes, keeping only the selected objects', async () => {
    const api = new FakeKubeApi();
    api.seed(corePath('configmaps', 'a'), { metadata: { name: 'mooring-ca-root-cert' } });
    api.seed(corePath('configmaps', 'a'), { metadata: { name: 'other' } });
    const { reflector, events } = reflect(api);
    await reflector.start();
    expect(events).toEqual([['added', 'a/mooring-ca-root-cert']]);
    await eventually(() => api.watchCount === 1);
    api.seed(corePath('configmaps', 'b'), { metadata: { name: 'mooring-ca-root-cert' } });
    api.seed(corePath('configmaps', 'a'), {
      metadata: { name: 'mooring-ca-root-cert' },
      data: { x: '1' },
    });
    api.remove(cmPath('b'));
    api.seed(corePath('configmaps', 'b'), { metadata: { name: 'unrelated' } });
    await eventually(() => events.length === 4);
    expect(events.slice(1)).toEqual([
      ['added', 'b/mooring-ca-root-cert'],
      ['modified', 'a/mooring-ca-root-cert'],
      ['deleted', 'b/mooring-ca-root-cert'],
    ]);
    expect(reflector.list()).toHaveLength(1);
    await reflector.stop();
  });

  it('resumes the watch when the server ends it, without listing again', async () => {
    const api = new FakeKubeApi();
    const { reflector } = reflect(api);
    await reflector.start();
    await eventually(() => api.watchCount === 1);
    api.closeWatches();
    await eventually(() => api.watchCount === 2, 3000);
    expect(reflector.stats.lists).toBe(1);
    await reflector.stop();
  });

  it('lists again after 410 Gone and reports what changed meanwhile', async () => {
    const api = new FakeKubeApi();
    api.seed(corePath('configmaps', 'a'), { metadata: { name: 'mooring-ca-root-cert' } });
    const { reflector, events } = reflect(api);
    await reflector.start();
    await eventually(() => api.watchCount === 1);
    api.expireWatches();
    await eventually(() => reflector.stats.lists === 2);
    await eventually(() => api.watchCount === 2);
    expect(events).toEqual([['added', 'a/mooring-ca-root-cert']]);
    await reflector.stop();
  });

  it('retries after a failed list and after a failed watch', async () => {
    const api = new FakeKubeApi();
    api.failures.push({
      when: (r) => r.method === 'GET',
      error: new KubeApiError(500, 'InternalError', 'down'),
    });
    const { reflector } = reflect(api);
    await reflector.start();
    expect(reflector.stats.failures).toBe(1);
    expect(reflector.stats.lists).toBe(2);
    await reflector.stop();
  });

  it('hands every cached object to the handler again at resync', async () => {
    const api = new FakeKubeApi();
    api.seed(corePath('configmaps', 'a'), { metadata: { name: 'mooring-ca-root-cert' } });
    const { reflector, events } = reflect(api, { resyncMs: 20 });
    await reflector.start();
    await eventually(() => events.filter(([t]) => t === 'sync').length >= 2);
    await reflector.stop();
  });
});

// --- trust distribution ----------------------------------------------------------------------------

describe('trust distribution', () => {
  async function distributor(api: FakeKubeApi, roots: { value: string[] }) {
    const d = new TrustDistributor({
      api,
      roots: () => roots.value,
      logger: silentLogger,
      resyncMs: 0,
    });
    await d.start();
    await d.idle();
    return d;
  }
  const bundleIn = (api: FakeKubeApi, ns: string): string | undefined =>
    api.get<ConfigMap>(cmPath(ns))?.data?.['root-cert.pem'];

  it('puts the roots in every namespace but kube-public and kube-node-lease', async () => {
    const api = new FakeKubeApi();
    seedNamespaces(api, ['default', 'kube-system', 'kube-public', 'kube-node-lease', 'shop']);
    const d = await distributor(api, { value: [ROOT_A] });
    for (const ns of ['default', 'kube-system', 'shop'])
      expect(bundleIn(api, ns)).toBe(`${ROOT_A}\n`);
    for (const ns of ['kube-public', 'kube-node-lease'])
      expect(api.get(cmPath(ns))).toBeUndefined();
    expect(api.get<ConfigMap>(cmPath('shop'))?.metadata?.labels).toEqual({
      'app.kubernetes.io/managed-by': 'mooring',
    });
    await d.stop();
  });

  it('gives a new namespace its ConfigMap', async () => {
    const api = new FakeKubeApi();
    seedNamespaces(api, ['default']);
    const d = await distributor(api, { value: [ROOT_A] });
    seedNamespaces(api, ['late']);
    await eventually(() => bundleIn(api, 'late') === `${ROOT_A}\n`);
    await d.stop();
  });

  it('puts back a deleted ConfigMap', async () => {
    const api = new FakeKubeApi();
    seedNamespaces(api, ['shop']);
    const d = await distributor(api, { value: [ROOT_A] });
    api.remove(cmPath('shop'));
    await eventually(() => bundleIn(api, 'shop') === `${ROOT_A}\n`);
    await d.stop();
  });

  it('puts back an edited ConfigMap, dropping extra keys', async () => {
    const api = new FakeKubeApi();
    seedNamespaces(api, ['shop']);
    const d = await distributor(api, { value: [ROOT_A] });
    const cm = api.get<ConfigMap>(cmPath('shop'));
    api.seed(corePath('configmaps', 'shop'), {
      ...cm,
      data: { 'root-cert.pem': 'tampered', extra: 'x' },
    });
    await eventually(() => {
      const data = api.get<ConfigMap>(cmPath('shop'))?.data;
      return data?.['root-cert.pem'] === `${ROOT_A}\n` && data.extra === undefined;
    });
    await d.stop();
  });

  it('writes both roots everywhere when the bundle changes (rotation)', async () => {
    const api = new FakeKubeApi();
    seedNamespaces(api, ['a', 'b']);
    const roots = { value: [ROOT_A] };
    const d = await distributor(api, roots);
    roots.value = [ROOT_A, ROOT_B];
    d.bundleChanged();
    await d.idle();
    expect(bundleIn(api, 'a')).toBe(`${ROOT_A}\n${ROOT_B}\n`);
    expect(bundleIn(api, 'b')).toBe(`${ROOT_A}\n${ROOT_B}\n`);
    await d.stop();
  });

  it('writes nothing when every ConfigMap is up to date', async () => {
    const api = new FakeKubeApi();
    seedNamespaces(api, ['a', 'b']);
    const d = await distributor(api, { value: [ROOT_A] });
    const writes = api.calls.filter((c) => c.method !== 'GET').length;
    d.bundleChanged();
    await d.idle();
    expect(api.calls.filter((c) => c.method !== 'GET').length).toBe(writes);
    await d.stop();
  });

  it('skips a terminating namespace', async () => {
    const api = new FakeKubeApi();
    api.seed(corePath('namespaces'), {
      metadata: { name: 'gone', deletionTimestamp: '2030-01-01T00:00:00Z' },
      status: { phase: 'Terminating' },
    });
    const d = await distributor(api, { value: [ROOT_A] });
    expect(api.get(cmPath('gone'))).toBeUndefined();
    await d.stop();
  });
});

// --- webhook caBundle ---------------------------------------------------------------------------------

describe('the webhook caBundle', () => {
  const MWC_NAME = 'mooring-sidecar-injector';
  const mwc = (caBundle?: string): MutatingWebhookConfiguration => ({
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: MWC_NAME },
    webhooks: [
      {
        name: 'a.mooring.dev',
        clientConfig: {
          url: 'https://127.0.0.1:1/inject',
          ...(caBundle === undefined ? {} : { caBundle }),
        },
      },
      { name: 'b.mooring.dev', clientConfig: { url: 'https://127.0.0.1:1/inject' } },
    ],
  });
  const b64 = (...roots: string[]): string =>
    Buffer.from(roots.map((r) => `${r}\n`).join('')).toString('base64');
  const bundles = (api: FakeKubeApi): (string | undefined)[] =>
    (api.get<MutatingWebhookConfiguration>(`${MWC_COLLECTION}/${MWC_NAME}`)?.webhooks ?? []).map(
      (w) => w.clientConfig?.caBundle,
    );

  async function patcher(
    api: FakeKubeApi,
    roots: { value: string[] },
    target: { kind?: WebhookConfigurationKind; name: string } = { name: MWC_NAME },
  ) {
    const p = new WebhookCABundlePatcher({
      api,
      ...target,
      roots: () => roots.value,
      logger: silentLogger,
      resyncMs: 0,
    });
    await p.start();
    await p.idle();
    return p;
  }

  it('sets every webhook caBundle at start', async () => {
    const api = new FakeKubeApi();
    api.seed(MWC_COLLECTION, mwc());
    const p = await patcher(api, { value: [ROOT_A] });
    expect(bundles(api)).toEqual([b64(ROOT_A), b64(ROOT_A)]);
    await p.stop();
  });

  it('sets it when the configuration appears later, and puts it back on drift', async () => {
    const api = new FakeKubeApi();
    const p = await patcher(api, { value: [ROOT_A] });
    api.seed(MWC_COLLECTION, mwc());
    await eventually(() => bundles(api)[1] === b64(ROOT_A));
    api.seed(MWC_COLLECTION, mwc('dGFtcGVyZWQ='));
    await eventually(() => bundles(api).every((b) => b === b64(ROOT_A)));
    await p.stop();
  });

  it('follows a rotation', async () => {
    const api = new FakeKubeApi();
    api.seed(MWC_COLLECTION, mwc());
    const roots = { value: [ROOT_A] };
    const p = await patcher(api, roots);
    roots.value = [ROOT_A, ROOT_B];
    p.bundleChanged();
    await eventually(() => bundles(api)[0] === b64(ROOT_A, ROOT_B));
    await p.stop();
  });

  it('leaves other configurations alone', async () => {
    const api = new FakeKubeApi();
    api.seed(MWC_COLLECTION, { ...mwc(), metadata: { name: 'someone-else' } });
    const p = await patcher(api, { value: [ROOT_A] });
    expect(api.calls.filter((c) => c.method === 'PUT')).toEqual([]);
    await p.stop();
  });

  describe('of the ValidatingWebhookConfiguration of the traffic kinds', () => {
    const VWC_NAME = 'mooring-traffic-validator';
    const vwc = (name: string, caBundle?: string): WebhookConfiguration => ({
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingWebhookConfiguration',
      metadata: { name },
      webhooks: [
        {
          name: 'traffic.validator.mooring.dev',
          clientConfig: {
            service: { namespace: 'mooring-system', name: 'mooring', path: '/validate' },
            ...(caBundle === undefined ? {} : { caBundle }),
          },
        },
      ],
    });
    const vwcBundles = (api: FakeKubeApi, name = VWC_NAME): (string | undefined)[] =>
      (api.get<WebhookConfiguration>(`${VWC_COLLECTION}/${name}`)?.webhooks ?? []).map(
        (w) => w.clientConfig?.caBundle,
      );

    const validatingPatcher = (api: FakeKubeApi, roots: { value: string[] }) =>
      patcher(api, roots, { kind: 'ValidatingWebhookConfiguration', name: VWC_NAME });

    it('sets its caBundle at start, with a PUT of that one object and nothing else', async () => {
      const api = new FakeKubeApi();
      api.seed(VWC_COLLECTION, vwc(VWC_NAME));
      const p = await validatingPatcher(api, { value: [ROOT_A] });
      expect(vwcBundles(api)).toEqual([b64(ROOT_A)]);
      expect(api.calls.filter((c) => c.method === 'PUT').map((c) => c.path)).toEqual([
        `${VWC_COLLECTION}/${VWC_NAME}`,
      ]);
      await p.stop();
    });

    it('sets it when it appears later, puts it back on drift and follows a rotation', async () => {
      const api = new FakeKubeApi();
      const roots = { value: [ROOT_A] };
      const p = await validatingPatcher(api, roots);
      api.seed(VWC_COLLECTION, vwc(VWC_NAME));
      await eventually(() => vwcBundles(api)[0] === b64(ROOT_A));
      api.seed(VWC_COLLECTION, vwc(VWC_NAME, 'dGFtcGVyZWQ='));
      await eventually(() => vwcBundles(api)[0] === b64(ROOT_A));
      roots.value = [ROOT_A, ROOT_B];
      p.bundleChanged();
      await eventually(() => vwcBundles(api)[0] === b64(ROOT_A, ROOT_B));
      await p.stop();
    });

    it('touches neither a MutatingWebhookConfiguration of the same name nor another validating one', async () => {
      const api = new FakeKubeApi();
      api.seed(MWC_COLLECTION, { ...mwc(), metadata: { name: VWC_NAME } });
      api.seed(VWC_COLLECTION, vwc('someone-else'));
      const p = await validatingPatcher(api, { value: [ROOT_A] });
      expect(api.calls.filter((c) => c.method === 'PUT')).toEqual([]);
      expect(vwcBundles(api, 'someone-else')).toEqual([undefined]);
      await p.stop();
    });

    it('is not touched by the patcher of the MutatingWebhookConfiguration', async () => {
      const api = new FakeKubeApi();
      api.seed(VWC_COLLECTION, vwc(MWC_NAME));
      const p = await patcher(api, { value: [ROOT_A] });
      expect(vwcBundles(api, MWC_NAME)).toEqual([undefined]);
      expect(api.calls.filter((c) => c.method === 'PUT')).toEqual([]);
      await p.stop();
    });
  });
});

// --- the Lease ------------------------------------------------------------------------------------------

describe('the rotation Lease', () => {
  class ManualClock implements Clock {
    ms = Date.parse('2030-01-01T00:00:00Z');
    now(): Date {
      return new Date(this.ms);
    }
  }
  const elector = (api: FakeKubeApi, clock: Clock, identity: string): LeaseElector =>
    new LeaseElector({
      api,
      clock,
      namespace: 'm',
      name: 'mooring-ca-rotation',
      identity,
      leaseDurationSeconds: 15,
      logger: silentLogger,
    });
  const leasePath = groupPath('coordination.k8s.io/v1', 'leases', 'm', 'mooring-ca-rotation');

  it('goes to exactly one of two candidates', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock();
    const [a, b] = [elector(api, clock, 'a'), elector(api, clock, 'b')];
    const results = await Promise.all([a.tryAcquireOrRenew(), b.tryAcquireOrRenew()]);
    expect(results.filter(Boolean)).toHaveLength(1);
    expect(api.get<Lease>(leasePath)?.spec?.holderIdentity).toBe(results[0] === true ? 'a' : 'b');
  });

  it('is renewed by its holder and refused to the other while fresh', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock();
    const [a, b] = [elector(api, clock, 'a'), elector(api, clock, 'b')];
    expect(await a.tryAcquireOrRenew()).toBe(true);
    expect(await b.tryAcquireOrRenew()).toBe(false);
    clock.ms += 10_000;
    expect(await a.tryAcquireOrRenew()).toBe(true);
    clock.ms += 10_000;
    expect(await b.tryAcquireOrRenew()).toBe(false); // b saw a renewal 10 s ago only
  });

  it('is taken over once its holder stopped renewing for the lease duration', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock();
    const [a, b] = [elector(api, clock, 'a'), elector(api, clock, 'b')];
    expect(await a.tryAcquireOrRenew()).toBe(true);
    expect(await b.tryAcquireOrRenew()).toBe(false);
    clock.ms += 16_000;
    expect(await b.tryAcquireOrRenew()).toBe(true);
    const lease = api.get<Lease>(leasePath);
    expect(lease?.spec).toMatchObject({ holderIdentity: 'b', leaseTransitions: 1 });
    expect(await a.tryAcquireOrRenew()).toBe(false);
  });

  it('is released on stop, so that another replica takes it at once', async () => {
    const api = new FakeKubeApi();
    const clock = new ManualClock();
    const a = new LeaseElector({
      api,
      clock,
      namespace: 'm',
      name: 'mooring-ca-rotation',
      identity: 'a',
      renewMs: 5,
      logger: silentLogger,
    });
    a.start();
    await eventually(() => a.isLeader());
    await a.stop();
    expect(a.isLeader()).toBe(false);
    expect(api.get<Lease>(leasePath)?.spec?.holderIdentity ?? null).toBeNull();
    expect(await elector(api, clock, 'b').tryAcquireOrRenew()).toBe(true);
  });
});

// --- the Secret store --------------------------------------------------------------------------------

describe('the CA Secret store', () => {
  interface State {
    root: string;
    generation: number;
  }
  const codec = {
    encode: (s: State): Record<string, string> => ({ 'state.json': JSON.stringify(s) }),
    decode: (d: Readonly<Record<string, string>>): State =>
      JSON.parse(d['state.json'] ?? '') as State,
  };
  const store = (api: FakeKubeApi): SecretKeyStore<State> =>
    new SecretKeyStore({ api, namespace: 'mooring-system', name: 'mooring-ca', codec });

  async function conflictOf(promise: Promise<unknown>): Promise<string> {
    try {
      await promise;
    } catch (err) {
      if (err instanceof MooringError) return err.code;
      throw err;
    }
    throw new Error('expected a conflict');
  }

  it('is empty until created, then loads what was saved with its version', async () => {
    const api = new FakeKubeApi();
    const s = store(api);
    expect(await s.load()).toBeNull();
    const version = await s.save({ root: 'A', generation: 1 }, null);
    expect(await s.load()).toEqual({ state: { root: 'A', generation: 1 }, version });
    const secret = api.get<Secret>(corePath('secrets', 'mooring-system', 'mooring-ca'));
    expect(secret?.type).toBe('Opaque');
    expect(Buffer.from(secret?.data?.['state.json'] ?? '', 'base64').toString()).toContain(
      '"root":"A"',
    );
  });

  it('lets only the first of two replicas create it; the other gets a conflict and loads the winner', async () => {
    const api = new FakeKubeApi();
    const [one, two] = [store(api), store(api)];
    const results = await Promise.allSettled([
      one.save({ root: 'A', generation: 1 }, null),
      two.save({ root: 'B', generation: 1 }, null),
    ]);
    expect(results.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
    const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect((lost.reason as MooringError).code).toBe('CA_ERR_CONFLICT');
    expect((await two.load())?.state.root).toBe('A');
  });

  it('refuses an update from a stale version', async () => {
    const api = new FakeKubeApi();
    const s = store(api);
    const v1 = await s.save({ root: 'A', generation: 1 }, null);
    await s.save({ root: 'A', generation: 2 }, v1);
    expect(await conflictOf(s.save({ root: 'X', generation: 2 }, v1))).toBe('CA_ERR_CONFLICT');
    expect((await s.load())?.state.generation).toBe(2);
  });

  it('reports an unreadable Secret as a store error', async () => {
    const api = new FakeKubeApi();
    api.seed(corePath('secrets', 'mooring-system'), {
      metadata: { name: 'mooring-ca' },
      data: { 'state.json': Buffer.from('{oops').toString('base64') },
    });
    expect(await conflictOf(store(api).load())).toBe('CA_ERR_STORE');
  });
});

// --- the CSR signer ----------------------------------------------------------------------------------

describe('the Kubernetes CSR signer', () => {
  const issued: WorkloadIssueRequest[] = [];
  const certificates: CertificateService = {
    spiffeIdOf: (id) => spiffeIdOf('cluster.local', id),
    issueWorkload: (req) => {
      issued.push(req);
      if (req.csrPem.includes('BADSAN'))
        return Promise.reject(new MooringError('CA_ERR_SAN', 'the CSR asks for DNS:evil'));
      const chain: IssuedChain = {
        certificateChain: [
          '-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----',
          '-----BEGIN CERTIFICATE-----\nINTER\n-----END CERTIFICATE-----',
        ],
        trustBundle: [ROOT_A],
        expiresAt: new Date(),
        serialNumber: '01',
        keyType: 'ecdsa-p256',
      };
      return Promise.resolve(chain);
    },
    issueServing: () => Promise.reject(new Error('unused')),
    trustBundle: () => [ROOT_A],
    status: () => {
      throw new Error('unused');
    },
    ready: () => true,
  };
  const clock: Clock = { now: () => new Date('2030-01-01T00:00:00Z') };

  const csrObject = (
    name: string,
    request: string,
    opts: { approved?: boolean; signer?: string; username?: string } = {},
  ): CertificateSigningRequest => ({
    apiVersion: 'certificates.k8s.io/v1',
    kind: 'CertificateSigningRequest',
    metadata: { name },
    spec: {
      request: Buffer.from(
        `-----BEGIN CERTIFICATE REQUEST-----\n${request}\n-----END CERTIFICATE REQUEST-----\n`,
      ).toString('base64'),
      signerName: opts.signer ?? 'mooring.dev/workload',
      username: opts.username ?? 'system:serviceaccount:shop:cart',
      usages: ['digital signature', 'client auth'],
    },
    status:
      opts.approved === false
        ? {}
        : { conditions: [{ type: 'Approved', status: 'True', reason: 'Test' }] },
  });
  const get = (api: FakeKubeApi, name: string) =>
    api.get<CertificateSigningRequest>(`${CSR_COLLECTION}/${name}`);

  async function signer(api: FakeKubeApi) {
    const s = new CsrSigner({
      api,
      certificates,
      clock,
      policy: { trustDomain: 'cluster.local', defaultTtlSeconds: 86400, maxTtlSeconds: 604800 },
      autoApprove: false,
      logger: silentLogger,
      resyncMs: 0,
    });
    await s.start();
    await s.idle();
    return s;
  }

  beforeEach(() => issued.splice(0));

  it('writes the chain of an approved CSR into status.certificate, issued for the requester', async () => {
    const api = new FakeKubeApi();
    api.seed(CSR_COLLECTION, csrObject('ok', 'GOOD'));
    const s = await signer(api);
    await eventually(() => (get(api, 'ok')?.status?.certificate ?? '') !== '');
    const pem = Buffer.from(get(api, 'ok')?.status?.certificate ?? '', 'base64').toString();
    expect(pem).toBe(
      '-----BEGIN CERTIFICATE-----\nLEAF\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nINTER\n-----END CERTIFICATE-----\n',
    );
    expect(issued).toEqual([
      expect.objectContaining({
        spiffeId: 'spiffe://cluster.local/ns/shop/sa/cart',
        ttlSeconds: 86400,
      }),
    ]);
    expect(api.calls.some((c) => c.method === 'PUT' && c.path.endsWith('/ok/status'))).toBe(true);
    await s.stop();
  });

  it('marks Failed a CSR the CA refuses, with the reason and the message', async () => {
    const api = new FakeKubeApi();
    api.seed(CSR_COLLECTION, csrObject('bad', 'BADSAN'));
    const s = await signer(api);
    await eventually(() =>
      (get(api, 'bad')?.status?.conditions ?? []).some((c) => c.type === 'Failed'),
    );
    const failed = get(api, 'bad')?.status?.conditions?.find((c) => c.type === 'Failed');
    expect(failed).toMatchObject({
      status: 'True',
      reason: 'MooringNamesNotAllowed',
      message: 'the CSR asks for DNS:evil',
    });
    expect(get(api, 'bad')?.status?.certificate).toBeUndefined();
    await s.stop();
  });

  it('marks Failed a CSR requested by a user, without issuing', async () => {
    const api = new FakeKubeApi();
    api.seed(CSR_COLLECTION, csrObject('user', 'GOOD', { username: 'alice' }));
    const s = await signer(api);
    await eventually(() =>
      (get(api, 'user')?.status?.conditions ?? []).some((c) => c.type === 'Failed'),
    );
    expect(issued).toEqual([]);
    await s.stop();
  });

  it('waits for approval, then signs', async () => {
    const api = new FakeKubeApi();
    const pending = csrObject('later', 'GOOD', { approved: false });
    api.seed(CSR_COLLECTION, pending);
    const s = await signer(api);
    expect(issued).toEqual([]);
    const current = get(api, 'later');
    api.seed(CSR_COLLECTION, {
      ...current,
      status: { conditions: [{ type: 'Approved', status: 'True' }] },
    });
    await eventually(() => (get(api, 'later')?.status?.certificate ?? '') !== '');
    await s.stop();
  });

  it('ignores the CSRs of other signers', async () => {
    const api = new FakeKubeApi();
    api.seed(
      CSR_COLLECTION,
      csrObject('other', 'GOOD', { signer: 'kubernetes.io/kube-apiserver-client' }),
    );
    const s = await signer(api);
    expect(api.calls.filter((c) => c.method === 'PUT')).toEqual([]);
    expect(issued).toEqual([]);
    await s.stop();
  });
});

// The e2e harness itself: a real etcd + kube-apiserver answers the way Mooring relies on
// (Pods with native sidecars, TokenRequest/TokenReview with the `mooring-ca` audience, RBAC).
import * as fs from 'node:fs';
import { startControlPlane } from './harness/control-plane';
import type { ControlPlane } from './harness/control-plane';
import { createNamespace, createObject, createServiceAccount, kubectl } from './harness/kube';
import { KubectlError, kubectlJson } from './harness/kube';

interface TokenReviewStatus {
  readonly authenticated?: boolean;
  readonly audiences?: readonly string[];
  readonly user?: { readonly username?: string; readonly groups?: readonly string[] };
}
interface SubjectAccessReviewStatus {
  readonly allowed: boolean;
}
interface PodLike {
  readonly spec: {
    readonly serviceAccountName?: string;
    readonly initContainers?: readonly { readonly name: string; readonly restartPolicy?: string }[];
    readonly volumes?: readonly { readonly name: string; readonly projected?: object }[];
  };
}

const NS = 'e2e-harness';
const SA = 'workload';

function pod(name: string): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NS },
    spec: {
      initContainers: [
        { name: 'sidecar', image: 'example.invalid/proxy:1', restartPolicy: 'Always' },
      ],
      containers: [{ name: 'app', image: 'example.invalid/app:1' }],
    },
  };
}

async function tokenReview(cp: ControlPlane, token: string, audience: string) {
  const review = await createObject(cp, {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'TokenReview',
    spec: { token, audiences: [audience] },
  });
  return (review as { status: TokenReviewStatus }).status;
}

async function canCreateCertificates(cp: ControlPlane, user: string, groups: string[]) {
  const review = await createObject(cp, {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SubjectAccessReview',
    spec: {
      user,
      groups,
      resourceAttributes: { group: 'mooring.dev', resource: 'certificates', verb: 'create' },
    },
  });
  return (review as { status: SubjectAccessReviewStatus }).status.allowed;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('the e2e control plane (etcd + kube-apiserver on 127.0.0.1)', () => {
  let cp: ControlPlane;

  beforeAll(async () => {
    cp = await startControlPlane();
    await createNamespace(cp, NS, { 'mooring.dev/inject': 'enabled' });
    await createServiceAccount(cp, NS, SA);
  }, 120_000);

  afterAll(async () => {
    await cp?.stop();
  }, 30_000);

  it('serves Kubernetes >= 1.33 over TLS pinned to the generated CA', async () => {
    expect(cp.server).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(cp.caCertPem).toContain('-----BEGIN CERTIFICATE-----');
    const version = (await kubectlJson(cp, ['version'])) as {
      serverVersion: { major: string; minor: string; gitVersion: string };
    };
    expect(version.serverVersion.major).toBe('1');
    expect(Number.parseInt(version.serverVersion.minor, 10)).toBeGreaterThanOrEqual(33);
  });

  it('creates a labelled namespace with its default ServiceAccount', async () => {
    const ns = (await kubectlJson(cp, ['get', 'namespace', NS])) as {
      metadata: { labels?: Record<string, string> };
    };
    expect(ns.metadata.labels?.['mooring.dev/inject']).toBe('enabled');
    await expect(kubectl(cp, ['get', 'serviceaccount', 'default', '-n', NS])).resolves.toContain(
      'default',
    );
  });

  it('admits a Pod with a native sidecar, through ServiceAccount admission', async () => {
    const created = (await createObject(cp, pod('web'))) as PodLike;
    expect(created.spec.serviceAccountName).toBe('default');
    expect(created.spec.initContainers?.[0]).toMatchObject({
      name: 'sidecar',
      restartPolicy: 'Always',
    });
    // ServiceAccount admission mounted the projected API token.
    expect(created.spec.volumes?.some((v) => v.name.startsWith('kube-api-access-'))).toBe(true);
  });

  it('refuses a Pod in a namespace that has no default ServiceAccount', async () => {
    await kubectl(cp, ['create', 'namespace', 'e2e-no-sa']);
    const bare = { ...pod('web'), metadata: { name: 'web', namespace: 'e2e-no-sa' } };
    await expect(createObject(cp, bare)).rejects.toThrow(/serviceaccount "default" not found/);
  });

  it('issues a mooring-ca token that TokenReview authenticates only for that audience', async () => {
    const token = (
      await kubectl(cp, ['create', 'token', SA, '-n', NS, '--audience', 'mooring-ca'])
    ).trim();
    expect(token.split('.')).toHaveLength(3);

    const accepted = await tokenReview(cp, token, 'mooring-ca');
    expect(accepted.authenticated).toBe(true);
    expect(accepted.audiences).toEqual(['mooring-ca']);
    expect(accepted.user?.username).toBe(`system:serviceaccount:${NS}:${SA}`);
    expect(accepted.user?.groups).toEqual(
      expect.arrayContaining(['system:serviceaccounts', `system:serviceaccounts:${NS}`]),
    );

    const otherAudience = await tokenReview(cp, token, 'someone-else');
    expect(otherAudience.authenticated).not.toBe(true);
    expect(otherAudience.user?.username).toBeUndefined();
  });

  it('denies an unprivileged user and allows system:masters in a SubjectAccessReview', async () => {
    await expect(canCreateCertificates(cp, 'jane', ['system:authenticated'])).resolves.toBe(false);
    await expect(canCreateCertificates(cp, 'root', ['system:masters'])).resolves.toBe(true);
  });

  it('reports kubectl failures with stderr', async () => {
    const failure = kubectl(cp, ['get', 'pod', 'does-not-exist', '-n', NS]);
    await expect(failure).rejects.toBeInstanceOf(KubectlError);
    await expect(failure).rejects.toThrow(/not found/);
  });

  it('stop() kills etcd and kube-apiserver and removes the temp dir', async () => {
    const { etcd, apiserver } = cp.pids;
    expect(alive(etcd)).toBe(true);
    expect(alive(apiserver)).toBe(true);
    await cp.stop();
    expect(alive(etcd)).toBe(false);
    expect(alive(apiserver)).toBe(false);
    expect(fs.existsSync(cp.tmpDir)).toBe(false);
    await expect(cp.stop()).resolves.toBeUndefined();
  }, 30_000);
});

import { KubeApiError } from '../../../src/adapters/kube/api';
import { caStateCodec, requireNamespace, SECRET_KEYS } from '../../../src/adapters/kube/cluster-ca';
import type { CAState } from '../../../src/ca/rotation';
import { defaultConfig, validateConfig } from '../../../src/config/validate';
import {
  clusterNamespace,
  clusterServingNames,
  replicaIdentity,
} from '../../../src/server/cluster-mode';
import { FakeKubeApi } from '../kube/fake-api';

describe('the serving certificate names of cluster mode', () => {
  const service = ['mooring', 'mooring.mesh', 'mooring.mesh.svc', 'mooring.mesh.svc.cluster.local'];
  it.each([
    ['the Service names only when listening on every address', '0.0.0.0', service, []],
    ['the Service names only when listening on every IPv6 address', '::', service, []],
    ['the listen IP too (a webhook registered by URL)', '127.0.0.1', service, ['127.0.0.1']],
    ['the listen host name too', 'mooring.example.com', [...service, 'mooring.example.com'], []],
  ])('are %s', (_name, host, dnsNames, ipAddresses) => {
    expect(clusterServingNames('mooring', 'mesh', host)).toEqual({ dnsNames, ipAddresses });
  });
});

describe("cluster mode's namespace", () => {
  const config = validateConfig({ cluster: { namespace: 'from-config' } }, 'test');
  it('is $POD_NAMESPACE when set (the downward API)', () => {
    expect(clusterNamespace(config, { POD_NAMESPACE: 'from-pod' })).toBe('from-pod');
  });
  it('is config.cluster.namespace otherwise', () => {
    expect(clusterNamespace(config, {})).toBe('from-config');
    expect(clusterNamespace(config, { POD_NAMESPACE: ' ' })).toBe('from-config');
  });
  it('defaults to mooring-system', () => {
    expect(clusterNamespace(defaultConfig(), {})).toBe('mooring-system');
  });
});

describe("the check of Mooring's namespace at start", () => {
  const failing = (error: Error): FakeKubeApi => {
    const api = new FakeKubeApi();
    api.failures.push({ when: () => true, error });
    return api;
  };
  it.each<[string, FakeKubeApi, string, string]>([
    [
      'a namespace that does not exist',
      new FakeKubeApi(),
      'CFG_ERR_INVALID',
      'kubectl create namespace mesh',
    ],
    [
      'a refused credential (401): not "cannot reach"',
      failing(new KubeApiError(401, 'Unauthorized', 'Unauthorized')),
      'CA_ERR_STORE',
      "the Kubernetes API refuses Mooring's credential (expired, revoked or wrong token",
    ],
    [
      'a forbidden read (403)',
      failing(new KubeApiError(403, 'Forbidden', 'forbidden')),
      'CA_ERR_STORE',
      'does not allow Mooring to get namespace "mesh"',
    ],
    [
      'an API that cannot be reached',
      failing(new Error('connect ECONNREFUSED 127.0.0.1:6443')),
      'CA_ERR_STORE',
      'cannot reach the Kubernetes API: connect ECONNREFUSED',
    ],
  ])('names %s', async (_name, api, code, message) => {
    const err = (await requireNamespace(api, 'mesh').then(
      () => new Error('no error'),
      (e: unknown) => e,
    )) as { code?: string; message: string };
    expect({ code: err.code, message: err.message }).toMatchObject({
      code,
      message: expect.stringContaining(message) as unknown,
    });
  });
});

describe('the replica identity on the Lease', () => {
  it('names the Pod and is unique per process start', () => {
    const a = replicaIdentity({ POD_NAME: 'mooring-7d9f-abcde' });
    const b = replicaIdentity({ POD_NAME: 'mooring-7d9f-abcde' });
    expect(a).toMatch(/^mooring-7d9f-abcde-[0-9a-f]{8}$/);
    expect(a).not.toBe(b);
  });
});

describe('the CA state in Secret mooring-ca', () => {
  const state = {
    schema: 1,
    roots: [
      { certPem: 'CERT-A', keyPem: 'KEY-A', status: 'active', addedAt: '2030-01-01T00:00:00.000Z' },
      {
        certPem: 'CERT-B',
        keyPem: 'KEY-B',
        status: 'pending',
        addedAt: '2030-01-02T00:00:00.000Z',
        activateAt: '2030-01-02T00:15:00.000Z',
      },
    ],
  } as CAState;

  it('keeps the whole state under ca-state.json and the bundle under root-cert.pem', () => {
    const data = caStateCodec.encode(state);
    expect(Object.keys(data).sort()).toEqual([SECRET_KEYS.state, SECRET_KEYS.bundle].sort());
    expect(data[SECRET_KEYS.bundle]).toBe('CERT-A\nCERT-B\n');
    expect(caStateCodec.decode(data)).toEqual(state);
  });

  it('refuses a Secret without the state key or with an invalid state', () => {
    expect(() => caStateCodec.decode({})).toThrow('ca-state.json');
    expect(() => caStateCodec.decode({ [SECRET_KEYS.state]: '{"schema":2,"roots":[]}' })).toThrow(
      /schema/,
    );
  });
});

// `helm lint --strict` and values.schema.json: good values pass, bad ones are refused by Helm
// before anything reaches the cluster.
import { CHART_DIR, runHelm, templateRaw, withValuesFile } from './helm';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----';

function lint(values: Record<string, unknown>): ReturnType<typeof runHelm> {
  return withValuesFile(values, (file) =>
    runHelm(['lint', '--strict', CHART_DIR, '--namespace', 'mooring-system', '-f', file]),
  );
}

describe('helm lint --strict', () => {
  it.each<[string, Record<string, unknown>]>([
    ['the default values', {}],
    [
      'a webhook URL and an explicit caBundle',
      { webhook: { url: 'https://10.0.0.5:8443', caBundle: PEM } },
    ],
    [
      'a plug-in CA and auto-approved CSRs',
      { ca: { pluginSecretName: 'cacerts' }, config: { cluster: { csrAutoApprove: true } } },
    ],
    [
      'one replica, no RBAC, an existing ServiceAccount',
      { replicaCount: 1, rbac: { create: false }, serviceAccount: { create: false, name: 'sa' } },
    ],
    [
      'a pinned digest and failurePolicy Ignore',
      { image: { digest: `sha256:${'0'.repeat(64)}` }, webhook: { failurePolicy: 'Ignore' } },
    ],
  ])('passes with %s', async (_name, values) => {
    const result = await lint(values);
    expect({ code: result.code, output: result.stdout + result.stderr }).toMatchObject({ code: 0 });
    expect(result.stdout).toContain('0 chart(s) failed');
  });

  it('fails (non-zero) on values the schema refuses', async () => {
    const result = await lint({ replicaCount: 'two' });
    expect(result.code).not.toBe(0);
    expect(result.stdout + result.stderr).toContain('replicaCount');
  });
});

describe('values.schema.json refuses', () => {
  it.each<[string, Record<string, unknown>, string]>([
    ['an unknown top-level value', { replicas: 3 }, 'replicas'],
    [
      'a failurePolicy other than Fail and Ignore',
      { webhook: { failurePolicy: 'Maybe' } },
      '/webhook/failurePolicy',
    ],
    ['a plain-HTTP webhook URL', { webhook: { url: 'http://10.0.0.5:8443' } }, '/webhook/url'],
    ['a webhook URL with a query', { webhook: { url: 'https://a/inject?x=1' } }, '/webhook/url'],
    [
      'a config key the server does not know',
      { config: { injector: { proxyImg: 'x' } } },
      'proxyImg',
    ],
    [
      'a config key the chart sets itself',
      { config: { cluster: { namespace: 'other' } } },
      'namespace',
    ],
    [
      'a config value the server refuses',
      { config: { ca: { rootKeyType: 'rsa-1024' } } },
      '/config/ca/rootKeyType',
    ],
    [
      'a config port out of range',
      { config: { injector: { ports: { agent: 70000 } } } },
      '/config/injector/ports/agent',
    ],
    [
      'a topology rule Kubernetes does not have',
      { topologySpread: { whenUnsatisfiable: 'Sometimes' } },
      'whenUnsatisfiable',
    ],
    ['a digest that is not sha256', { image: { digest: 'latest' } }, '/image/digest'],
  ])('%s', async (_name, values, where) => {
    const result = await templateRaw(values);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(where);
  });
});

describe('the chart refuses at template time what the server or the API server would', () => {
  it.each<[string, Record<string, unknown>, string]>([
    [
      'a webhook URL without a caBundle (nothing would set it)',
      { webhook: { url: 'https://10.0.0.5:8443' } },
      'webhook.url needs webhook.caBundle',
    ],
    [
      'a caBundle that is neither PEM nor base64 of a PEM',
      { webhook: { caBundle: 'notapem' } },
      'webhook.caBundle must be PEM certificates',
    ],
    [
      'base64 of something that is not a certificate',
      { webhook: { caBundle: Buffer.from('hello').toString('base64') } },
      'webhook.caBundle must be PEM certificates',
    ],
    [
      'a default workload lifetime above the maximum',
      { config: { ca: { workloadDefaultTtlSeconds: 100, workloadMaxTtlSeconds: 10 } } },
      'config.ca.workloadDefaultTtlSeconds (100) must not exceed config.ca.workloadMaxTtlSeconds (10)',
    ],
    [
      'a root that would be rotated as soon as it is made',
      { config: { ca: { rootLifetimeSeconds: 86400 } } },
      'config.ca.rootLifetimeSeconds (86400) must exceed config.ca.rotation.beforeExpirySeconds + config.ca.rotation.propagationDelaySeconds (63072900)',
    ],
  ])('%s', async (_name, values, message) => {
    const result = await templateRaw(values);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(message);
  });

  it('takes a short root lifetime when automatic rotation is off', async () => {
    const result = await templateRaw({
      config: { ca: { rootLifetimeSeconds: 86400, rotation: { auto: false } } },
    });
    expect({ code: result.code, stderr: result.stderr }).toEqual({ code: 0, stderr: '' });
  });
});

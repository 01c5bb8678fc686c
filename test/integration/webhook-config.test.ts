import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { runCli } from '../fixtures/cli';

const ROOT = join(__dirname, '..', '..');
const COMMITTED = join(ROOT, 'webhook-config', 'mutatingwebhookconfiguration.yaml');
const COMMITTED_VALIDATING = join(ROOT, 'webhook-config', 'validatingwebhookconfiguration.yaml');

const run = (...args: string[]) => runCli(args);

interface Requirement {
  key: string;
  operator: 'In' | 'NotIn';
  values: string[];
}
interface Webhook {
  name: string;
  clientConfig: { url?: string; caBundle?: string; service?: Record<string, unknown> };
  namespaceSelector: { matchExpressions: Requirement[] };
  objectSelector: { matchExpressions: Requirement[] };
  [key: string]: unknown;
}
interface Configuration {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  webhooks: Webhook[];
}

function parseConfiguration(text: string): Configuration {
  const docs = parseAllDocuments(text).map((d) => d.toJS() as unknown);
  const objects = docs.filter((d) => d !== null);
  expect(objects).toHaveLength(1);
  return objects[0] as Configuration;
}

/** Kubernetes label-selector semantics: NotIn also matches when the key is absent. */
function matches(requirements: Requirement[], labels: Record<string, string>): boolean {
  return requirements.every((r) => {
    const value = labels[r.key];
    if (r.operator === 'In') return value !== undefined && r.values.includes(value);
    return value === undefined || !r.values.includes(value);
  });
}

function webhooksFor(
  config: Configuration,
  namespace: string,
  nsLabel: string | null,
  podLabel: string | null,
): string[] {
  const nsLabels: Record<string, string> = { 'kubernetes.io/metadata.name': namespace };
  if (nsLabel !== null) nsLabels['mooring.dev/inject'] = nsLabel;
  const podLabels: Record<string, string> = { app: 'web' };
  if (podLabel !== null) podLabels['mooring.dev/inject'] = podLabel;
  return config.webhooks
    .filter((w) => matches(w.namespaceSelector.matchExpressions, nsLabels))
    .filter((w) => matches(w.objectSelector.matchExpressions, podLabels))
    .map((w) => w.name);
}

describe('mooring webhook-config', () => {
  it('prints exactly the committed webhook-config/mutatingwebhookconfiguration.yaml (drift check)', async () => {
    const { code, stdout } = await run('webhook-config', '--service', 'mooring-system/mooring');
    expect(code).toBe(0);
    expect(readFileSync(COMMITTED, 'utf8')).toBe(stdout);
  });

  it('configures both webhooks as PRODUCT.md says: CREATE pods, v1 reviews, Fail, no side effects, 10 s', async () => {
    const config = parseConfiguration(
      (await run('webhook-config', '--service', 'mooring-system/mooring')).stdout,
    );
    expect(config.apiVersion).toBe('admissionregistration.k8s.io/v1');
    expect(config.kind).toBe('MutatingWebhookConfiguration');
    expect(config.metadata.name).toBe('mooring-sidecar-injector');
    expect(config.webhooks.map((w) => w.name)).toEqual([
      'namespace.sidecar-injector.mooring.dev',
      'object.sidecar-injector.mooring.dev',
    ]);
    for (const w of config.webhooks) {
      expect(w.clientConfig).toEqual({
        service: { namespace: 'mooring-system', name: 'mooring', path: '/inject', port: 443 },
      });
      expect(w.rules).toEqual([
        {
          operations: ['CREATE'],
          apiGroups: [''],
          apiVersions: ['v1'],
          resources: ['pods'],
          scope: 'Namespaced',
        },
      ]);
      expect(w).toMatchObject({
        admissionReviewVersions: ['v1'],
        failurePolicy: 'Fail',
        sideEffects: 'None',
        timeoutSeconds: 10,
        reinvocationPolicy: 'IfNeeded',
        matchPolicy: 'Equivalent',
      });
    }
  });

  describe('selectors: a Pod goes to at most one webhook, and only when it belongs in the mesh', () => {
    let config: Configuration;
    beforeAll(async () => {
      config = parseConfiguration(
        (await run('webhook-config', '--service', 'mooring-system/mooring')).stdout,
      );
    });

    it.each<[string, string, string | null, string | null, string[]]>([
      [
        'namespace enabled, Pod unlabelled',
        'shop',
        'enabled',
        null,
        ['namespace.sidecar-injector.mooring.dev'],
      ],
      [
        'namespace enabled, Pod "true"',
        'shop',
        'enabled',
        'true',
        ['namespace.sidecar-injector.mooring.dev'],
      ],
      ['namespace enabled, Pod "false" (the Pod wins)', 'shop', 'enabled', 'false', []],
      [
        'namespace unlabelled, Pod "true"',
        'shop',
        null,
        'true',
        ['object.sidecar-injector.mooring.dev'],
      ],
      ['namespace unlabelled, Pod unlabelled', 'shop', null, null, []],
      ['namespace unlabelled, Pod "false"', 'shop', null, 'false', []],
      ['namespace disabled, Pod "true" (never)', 'shop', 'disabled', 'true', []],
      ['namespace disabled, Pod unlabelled', 'shop', 'disabled', null, []],
      [
        'namespace with another value, Pod "true"',
        'shop',
        'yes',
        'true',
        ['object.sidecar-injector.mooring.dev'],
      ],
      ['kube-system enabled', 'kube-system', 'enabled', null, []],
      ['kube-public, Pod "true"', 'kube-public', null, 'true', []],
      ['kube-node-lease enabled, Pod "true"', 'kube-node-lease', 'enabled', 'true', []],
    ])('%s', (_name, namespace, nsLabel, podLabel, expected) => {
      expect(webhooksFor(config, namespace, nsLabel, podLabel)).toEqual(expected);
    });
  });

  it('points at a URL, adds /inject when it has no path, and embeds the CA bundle as base64', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mooring-wc-'));
    const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
    writeFileSync(join(dir, 'ca.pem'), pem);
    const { code, stdout } = await run(
      'webhook-config',
      '--url',
      'https://127.0.0.1:8443',
      '--ca-bundle',
      join(dir, 'ca.pem'),
      '--failure-policy',
      'Ignore',
      '--name',
      'my-injector',
    );
    expect(code).toBe(0);
    const config = parseConfiguration(stdout);
    expect(config.metadata.name).toBe('my-injector');
    for (const w of config.webhooks) {
      expect(w.clientConfig).toEqual({
        url: 'https://127.0.0.1:8443/inject',
        caBundle: Buffer.from(pem).toString('base64'),
      });
      expect(w.failurePolicy).toBe('Ignore');
    }
  });

  describe('--validating', () => {
    it('prints exactly the committed webhook-config/validatingwebhookconfiguration.yaml (drift check)', async () => {
      const { code, stdout } = await run(
        ...['webhook-config', '--validating', '--service', 'mooring-system/mooring'],
      );
      expect(code).toBe(0);
      expect(readFileSync(COMMITTED_VALIDATING, 'utf8')).toBe(stdout);
    });

    it('names its defaults (mooring-traffic-validator, Ignore) and sends the traffic kinds to /validate', async () => {
      const { stdout } = await run(
        ...['webhook-config', '--validating', '--service', 'mooring-system/mooring'],
      );
      expect(stdout.split('\n')[0]).toBe(
        '# Generated by `mooring webhook-config --validating --service mooring-system/mooring`. ' +
          'Do not edit: run the command again.',
      );
      const config = parseConfiguration(stdout);
      expect(config.kind).toBe('ValidatingWebhookConfiguration');
      expect(config.metadata.name).toBe('mooring-traffic-validator');
      expect(config.webhooks.map((w) => [w.name, w.failurePolicy, w.clientConfig])).toEqual([
        [
          'traffic.validator.mooring.dev',
          'Ignore',
          {
            service: { namespace: 'mooring-system', name: 'mooring', path: '/validate', port: 443 },
          },
        ],
      ]);
    });

    it('adds /validate to a URL without a path and takes Fail and a name', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'mooring-wc-'));
      const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';
      writeFileSync(join(dir, 'ca.pem'), pem);
      const { code, stdout } = await run(
        ...['webhook-config', '--validating', '--url', 'https://127.0.0.1:8443'],
        ...['--ca-bundle', join(dir, 'ca.pem'), '--failure-policy', 'Fail', '--name', 'v'],
      );
      expect(code).toBe(0);
      expect(stdout).toContain('--failure-policy Fail --name v`');
      const config = parseConfiguration(stdout);
      expect(config.metadata.name).toBe('v');
      expect(config.webhooks[0]?.failurePolicy).toBe('Fail');
      expect(config.webhooks[0]?.clientConfig).toEqual({
        url: 'https://127.0.0.1:8443/validate',
        caBundle: Buffer.from(pem).toString('base64'),
      });
    });
  });

  it('keeps a URL path that is given', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mooring-wc-'));
    writeFileSync(
      join(dir, 'ca.pem'),
      '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
    );
    const config = parseConfiguration(
      (
        await run(
          'webhook-config',
          ...['--url', 'https://mooring.example:9443/hooks/inject'],
          ...['--ca-bundle', join(dir, 'ca.pem')],
        )
      ).stdout,
    );
    expect(config.webhooks[0]?.clientConfig.url).toBe('https://mooring.example:9443/hooks/inject');
  });

  it.each<[string, string[], RegExp]>([
    ['neither --url nor --service', [], /exactly one of --url URL and --service NS\/NAME/],
    ['both --url and --service', ['--url', 'https://a', '--service', 'a/b'], /exactly one/],
    ['a plain-HTTP URL', ['--url', 'http://127.0.0.1:8443', '--ca-bundle', 'x.pem'], /https/],
    ['a relative URL', ['--url', 'inject', '--ca-bundle', 'x.pem'], /absolute URL/],
    [
      'a URL without --ca-bundle, as the chart refuses webhook.url without webhook.caBundle',
      ['--url', 'https://127.0.0.1:8443/inject'],
      /^mooring: --url needs --ca-bundle FILE: the API server must trust the server it calls/,
    ],
    ['a service without namespace', ['--service', 'mooring'], /NAMESPACE\/NAME/],
    ['a service with upper case', ['--service', 'Mooring/x'], /NAMESPACE\/NAME/],
    [
      'an unknown failure policy',
      ['--service', 'a/b', '--failure-policy', 'Maybe'],
      /Fail, Ignore/,
    ],
    ['an invalid name', ['--service', 'a/b', '--name', 'Not_A_Name'], /DNS subdomain/],
  ])('exits 2 (usage) for %s', async (_name, args, message) => {
    const { code, stdout, stderr } = await run('webhook-config', ...args);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toMatch(message);
  });

  it('exits 1 when the CA bundle file holds no certificate', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mooring-wc-'));
    writeFileSync(join(dir, 'empty.pem'), 'nothing');
    const { code, stderr } = await run(
      'webhook-config',
      '--service',
      'a/b',
      '--ca-bundle',
      join(dir, 'empty.pem'),
    );
    expect(code).toBe(1);
    expect(stderr).toMatch(/no PEM certificate/);
  });
});

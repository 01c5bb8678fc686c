// The chart's MutatingWebhookConfiguration is the one `mooring webhook-config` prints, for the
// same inputs: same name and webhooks; the CLI's labels are among the chart's. The same for the
// ValidatingWebhookConfiguration of the traffic kinds and `mooring webhook-config --validating`.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runWebhookConfigCli } from './cli';
import { one, parseObjects, render, type KubeObject, type TemplateOptions } from './helm';
import { VALIDATING_FILE, WEBHOOK_CONFIG_DIR, WEBHOOK_FILE } from './render-webhook-config';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n';

interface Case {
  readonly values: Record<string, unknown>;
  readonly options?: TemplateOptions;
  /** CLI arguments; `CA_FILE` stands for a file holding PEM. */
  readonly args: readonly string[];
}

async function cliObject(
  args: readonly string[],
  kind = 'MutatingWebhookConfiguration',
): Promise<KubeObject> {
  const dir = mkdtempSync(join(tmpdir(), 'mooring-wc-'));
  try {
    const caFile = join(dir, 'ca.pem');
    writeFileSync(caFile, PEM);
    const result = await runWebhookConfigCli(args.map((a) => (a === 'CA_FILE' ? caFile : a)));
    if (result.code !== 0) throw new Error(`mooring webhook-config failed: ${result.stderr}`);
    return one(parseObjects(result.stdout), kind);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Equal in content: everything but the labels, which the chart may add to. */
function expectSameContent(chart: KubeObject, cli: KubeObject): void {
  const { metadata: chartMeta, ...chartRest } = chart;
  const { metadata: cliMeta, ...cliRest } = cli;
  expect(chartRest).toEqual(cliRest);
  expect(Object.keys(chartMeta).sort()).toEqual(Object.keys(cliMeta).sort());
  expect(chartMeta.name).toBe(cliMeta.name);
  expect(chartMeta.labels).toMatchObject(cliMeta.labels ?? {});
}

/** The cases of both configurations where the webhook is the release's Service. */
const SERVICE_CASES: [string, Case][] = [
  ['for the defaults', { values: {}, args: ['--service', 'mooring-system/mooring'] }],
  [
    'for another release and namespace',
    {
      values: {},
      options: { release: 'mesh', namespace: 'infra' },
      args: ['--service', 'infra/mesh-mooring'],
    },
  ],
];

describe('the chart and `mooring webhook-config` give the same configuration', () => {
  it.each<[string, Case]>([
    ...SERVICE_CASES,
    [
      'for a URL without a path, a caBundle, Ignore and another name',
      {
        values: {
          webhook: {
            url: 'https://127.0.0.1:8443',
            caBundle: PEM,
            failurePolicy: 'Ignore',
            name: 'dev-injector',
          },
        },
        args: [
          ...['--url', 'https://127.0.0.1:8443', '--ca-bundle', 'CA_FILE'],
          ...['--failure-policy', 'Ignore', '--name', 'dev-injector'],
        ],
      },
    ],
    [
      'for a URL with a path',
      {
        values: { webhook: { url: 'https://dev.example:9443/hooks/inject', caBundle: PEM } },
        args: ['--url', 'https://dev.example:9443/hooks/inject', '--ca-bundle', 'CA_FILE'],
      },
    ],
    [
      'for the Service and a caBundle',
      {
        values: { webhook: { caBundle: PEM } },
        args: ['--service', 'mooring-system/mooring', '--ca-bundle', 'CA_FILE'],
      },
    ],
  ])('%s', async (_name, c) => {
    const chart = one(await render(c.values, c.options), 'MutatingWebhookConfiguration');
    expectSameContent(chart, await cliObject(c.args));
  });

  it('and refuse the same: a URL without a caBundle', async () => {
    await expect(render({ webhook: { url: 'https://127.0.0.1:8443' } })).rejects.toThrow(
      'webhook.url needs webhook.caBundle',
    );
    const cli = await runWebhookConfigCli(['--url', 'https://127.0.0.1:8443']);
    expect(cli.code).toBe(2);
    expect(cli.stdout).toBe('');
    expect(cli.stderr).toContain('--url needs --ca-bundle FILE');
  });

  it('and the committed webhook-config/ file is that configuration too', async () => {
    const committed = one(
      parseObjects(readFileSync(join(WEBHOOK_CONFIG_DIR, WEBHOOK_FILE), 'utf8')),
      'MutatingWebhookConfiguration',
    );
    expectSameContent(one(await render(), 'MutatingWebhookConfiguration'), committed);
  });

  it('notices a difference (the comparison itself works)', async () => {
    const chart = one(
      await render({ webhook: { failurePolicy: 'Ignore' } }),
      'MutatingWebhookConfiguration',
    );
    const cli = await cliObject(['--service', 'mooring-system/mooring']);
    expect(() => expectSameContent(chart, cli)).toThrow();
  });
});

describe('the chart and `mooring webhook-config --validating` give the same configuration', () => {
  const VWC = 'ValidatingWebhookConfiguration';
  it.each<[string, Case]>([
    ...SERVICE_CASES,
    [
      'for a URL (path /validate), a caBundle, Fail and another name',
      {
        values: {
          webhook: { url: 'https://127.0.0.1:8443', caBundle: PEM },
          validatingWebhook: { failurePolicy: 'Fail', name: 'dev-validator' },
        },
        args: [
          ...['--url', 'https://127.0.0.1:8443', '--ca-bundle', 'CA_FILE'],
          ...['--failure-policy', 'Fail', '--name', 'dev-validator'],
        ],
      },
    ],
    [
      'for the Service and a caBundle',
      {
        values: { webhook: { caBundle: PEM } },
        args: ['--service', 'mooring-system/mooring', '--ca-bundle', 'CA_FILE'],
      },
    ],
  ])('%s', async (_name, c) => {
    const chart = one(await render(c.values, c.options), VWC);
    expectSameContent(chart, await cliObject(['--validating', ...c.args], VWC));
  });

  it('and the committed webhook-config/ file is that configuration too', async () => {
    const committed = one(
      parseObjects(readFileSync(join(WEBHOOK_CONFIG_DIR, VALIDATING_FILE), 'utf8')),
      VWC,
    );
    expectSameContent(one(await render(), VWC), committed);
  });

  it('notices a difference (the comparison itself works)', async () => {
    const chart = one(await render({ validatingWebhook: { failurePolicy: 'Fail' } }), VWC);
    const cli = await cliObject(['--validating', '--service', 'mooring-system/mooring'], VWC);
    expect(() => expectSameContent(chart, cli)).toThrow();
  });
});

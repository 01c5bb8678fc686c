// webhook-config/: the kubectl-appliable manifests, rendered from charts/mooring with its default
// values (release `mooring`, namespace `mooring-system`). `make webhook-config` writes them
// (REFRESH_GOLDEN=1 on test/chart/generated.test.ts); that test fails when they are stale.
//   mooring.yaml: the Namespace, then every object of the chart but the webhook configuration;
//   mutatingwebhookconfiguration.yaml: what `mooring webhook-config --service mooring-system/mooring`
//     prints, byte for byte (test/integration/webhook-config.test.ts checks that too); a test
//     (webhook-config-cli.test.ts) proves it equal in content to the chart's.
//   validatingwebhookconfiguration.yaml: the same for `mooring webhook-config --validating
//     --service mooring-system/mooring` (the traffic kinds, POST /validate).
// The CRDs are not in it (the chart renders them only with crds.install): webhook-config/README.md
// says how to install the chart's copies with kubectl.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { INJECT_LABEL, NAMESPACE_DISABLED } from '../../src/constants';
import { runWebhookConfigCli } from './cli';
import { DEFAULT_NAMESPACE, DEFAULT_RELEASE, REPO_ROOT, templateRaw } from './helm';

export const WEBHOOK_CONFIG_DIR = join(REPO_ROOT, 'webhook-config');
/** Everything but the webhook configuration, Namespace first (kubectl applies files by name). */
export const MAIN_FILE = 'mooring.yaml';
/** The MutatingWebhookConfiguration, applied last (after the Service it points at exists). */
export const WEBHOOK_FILE = 'mutatingwebhookconfiguration.yaml';
/** The ValidatingWebhookConfiguration of the traffic kinds, applied last too. */
export const VALIDATING_FILE = 'validatingwebhookconfiguration.yaml';
/** The `mooring webhook-config` arguments that match the chart's defaults. */
export const WEBHOOK_CLI_ARGS = ['--service', `${DEFAULT_NAMESPACE}/${DEFAULT_RELEASE}`] as const;
export const VALIDATING_CLI_ARGS = ['--validating', ...WEBHOOK_CLI_ARGS] as const;
/** The kinds that have a file of their own, made by the CLI. */
const OWN_FILE_KINDS = ['MutatingWebhookConfiguration', 'ValidatingWebhookConfiguration'];

const HEADER = [
  '# Generated from charts/mooring with its default values by `make webhook-config`',
  `# (helm template ${DEFAULT_RELEASE} charts/mooring --namespace ${DEFAULT_NAMESPACE}).`,
  '# Do not edit: change the chart and run `make webhook-config`; `make verify` fails when this',
  '# file is stale. Apply with `kubectl apply -f webhook-config/`.',
].join('\n');

/** The release namespace, which Helm does not render: Mooring's own Pods are never injected. */
function namespaceDocument(): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Namespace',
    metadata: {
      name: DEFAULT_NAMESPACE,
      labels: { 'app.kubernetes.io/part-of': 'mooring', [INJECT_LABEL]: NAMESPACE_DISABLED },
    },
  });
}

/** Splits `helm template` output into its documents (text kept, comments included). */
export function splitDocuments(text: string): string[] {
  return text
    .split(/^---$/m)
    .map((doc) => doc.replace(/^\n+/, '').trimEnd())
    .filter((doc) => parse(doc) !== null);
}

function kindOf(doc: string): string {
  const parsed: unknown = parse(doc);
  const kind = (parsed as { kind?: unknown }).kind;
  if (typeof kind !== 'string') throw new Error(`a rendered document has no kind:\n${doc}`);
  return kind;
}

/** The files of webhook-config/, by name, as they must be. */
export async function renderWebhookConfig(): Promise<Map<string, string>> {
  const result = await templateRaw({});
  if (result.code !== 0) throw new Error(`helm template failed:\n${result.stderr}`);
  const docs = splitDocuments(result.stdout);
  const rest = docs.filter((d) => !OWN_FILE_KINDS.includes(kindOf(d)));
  const main = [namespaceDocument().trimEnd(), ...rest].map((p) => `---\n${p}\n`).join('');
  const cli = async (args: readonly string[]): Promise<string> => {
    const result = await runWebhookConfigCli(args);
    if (result.code !== 0) throw new Error(`mooring webhook-config failed:\n${result.stderr}`);
    return result.stdout;
  };
  return new Map([
    [MAIN_FILE, `${HEADER}\n${main}`],
    [WEBHOOK_FILE, await cli(WEBHOOK_CLI_ARGS)],
    [VALIDATING_FILE, await cli(VALIDATING_CLI_ARGS)],
  ]);
}

/** The YAML files in webhook-config/ now. */
export function readWebhookConfigDir(): Map<string, string> {
  const files = new Map<string, string>();
  for (const name of readdirSync(WEBHOOK_CONFIG_DIR).sort()) {
    if (/\.ya?ml$/.test(name))
      files.set(name, readFileSync(join(WEBHOOK_CONFIG_DIR, name), 'utf8'));
  }
  return files;
}

export async function writeWebhookConfig(): Promise<void> {
  for (const [name, text] of await renderWebhookConfig()) {
    writeFileSync(join(WEBHOOK_CONFIG_DIR, name), text);
  }
}

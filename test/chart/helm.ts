// Runs the helm binary (.cache/bin/helm, put there by `make control-plane`; HELM overrides it)
// on charts/mooring and parses what it renders.
import { execFile } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';

export const REPO_ROOT = resolve(__dirname, '..', '..');
export const CHART_DIR = join(REPO_ROOT, 'charts', 'mooring');
export const DEFAULT_RELEASE = 'mooring';
export const DEFAULT_NAMESPACE = 'mooring-system';

/** A Kubernetes object as rendered: only the fields every object has are typed. */
export interface KubeObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: {
    readonly name: string;
    readonly namespace?: string;
    readonly labels?: Record<string, string>;
    readonly annotations?: Record<string, string>;
  };
  readonly [field: string]: unknown;
}

export interface HelmResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The helm binary, or an error that says how to get it. */
export function helmBinary(): string {
  const bin = process.env.HELM ?? join(REPO_ROOT, '.cache', 'bin', 'helm');
  try {
    accessSync(bin, constants.X_OK);
  } catch {
    throw new Error(
      `${bin} is missing: run \`make control-plane\` (test/e2e/harness/build-control-plane.sh ` +
        'puts helm into .cache/bin), or set HELM to a helm 3.x/4.x binary',
    );
  }
  return bin;
}

/** Runs helm; resolves with its exit code and output (never rejects on a non-zero exit). */
export function runHelm(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
  timeoutMs = 60_000,
): Promise<HelmResult> {
  const bin = helmBinary();
  return new Promise((done, fail) => {
    execFile(
      bin,
      [...args],
      { env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') {
          fail(new Error(`helm ${args.join(' ')}: ${err.message}\n${stderr}`));
          return;
        }
        done({ code: err ? Number(err.code) : 0, stdout, stderr });
      },
    );
  });
}

/** Writes values to a temporary file for `-f`; the callback's result is returned. */
export async function withValuesFile<T>(
  values: Record<string, unknown>,
  fn: (file: string) => Promise<T>,
): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'mooring-values-'));
  try {
    const file = join(dir, 'values.yaml');
    writeFileSync(file, stringify(values));
    return await fn(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface TemplateOptions {
  readonly release?: string;
  readonly namespace?: string;
  readonly extraArgs?: readonly string[];
}

/** `helm template` of the chart with these values; resolves with helm's result. */
export function templateRaw(
  values: Record<string, unknown> = {},
  options: TemplateOptions = {},
): Promise<HelmResult> {
  return withValuesFile(values, (file) =>
    runHelm([
      'template',
      options.release ?? DEFAULT_RELEASE,
      CHART_DIR,
      '--namespace',
      options.namespace ?? DEFAULT_NAMESPACE,
      '-f',
      file,
      ...(options.extraArgs ?? []),
    ]),
  );
}

/** Parses a multi-document YAML stream into objects (empty documents dropped). */
export function parseObjects(text: string): KubeObject[] {
  return parseAllDocuments(text)
    .map((doc) => {
      if (doc.errors.length > 0) throw new Error(`invalid YAML: ${doc.errors[0]?.message}`);
      return doc.toJS() as unknown;
    })
    .filter((o): o is KubeObject => o !== null && typeof o === 'object');
}

/** `helm template` that must succeed; resolves with the rendered objects. */
export async function render(
  values: Record<string, unknown> = {},
  options: TemplateOptions = {},
): Promise<KubeObject[]> {
  const result = await templateRaw(values, options);
  if (result.code !== 0) {
    throw new Error(`helm template failed (exit ${result.code}):\n${result.stderr}`);
  }
  return parseObjects(result.stdout);
}

/** The one object of this kind (and name, if given); throws when there is not exactly one. */
export function one<T = KubeObject>(
  objects: readonly KubeObject[],
  kind: string,
  name?: string,
): T {
  const found = objects.filter(
    (o) => o.kind === kind && (name === undefined || o.metadata.name === name),
  );
  if (found.length !== 1) {
    throw new Error(`expected one ${kind}${name ? ` ${name}` : ''}, found ${found.length}`);
  }
  return found[0] as T;
}

export function kinds(objects: readonly KubeObject[]): string[] {
  return objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
}

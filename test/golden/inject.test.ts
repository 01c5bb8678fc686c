// Golden files of `mooring inject`: each test/golden/inject/<case>.yaml (input) has a
// <case>.yaml.injected holding what the core writes: the report lines as `# mooring: ` comments
// (what the CLI prints on stderr), then the output YAML. An optional <case>.config.yaml is the configuration
// (defaults otherwise). Each case is checked three ways:
//   1. the output equals the golden file;
//   2. each document's JSONPatch, applied to the input document, gives the golden document;
//   3. injecting the golden output again changes nothing (same text, empty patches).
// REFRESH_GOLDEN=1 rewrites the golden files (and large-env.yaml, from its fixture builder);
// a stale or missing one fails.

import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { applyPatch, deepClone } from 'fast-json-patch';
import { parse, stringify } from 'yaml';
import { validateConfig } from '../../src/config/validate';
import {
  describeReport,
  injectManifests,
  parseManifests,
  type ManifestsResult,
} from '../../src/injector/manifests';
import type { WorkloadContext } from '../../src/injector/workload';
import { largeEnvPod } from '../fixtures/pods';

const DIR = join(__dirname, 'inject');
const INPUT = '.yaml';
const GOLDEN = '.yaml.injected';
const CONFIG = '.config.yaml';
/** A fixed version, so that a release does not make every golden file stale. */
const GOLDEN_VERSION = '0.0.0-golden';
const refresh = process.env.REFRESH_GOLDEN === '1';
/** Report lines at the top of a golden file. */
const HEADER = '# mooring: ';

const files = readdirSync(DIR);
const cases = files
  .filter((f) => f.endsWith(INPUT) && !f.endsWith(CONFIG))
  .map((f) => f.slice(0, -INPUT.length))
  .sort();

function contextFor(name: string): WorkloadContext {
  const configPath = join(DIR, `${name}${CONFIG}`);
  const raw: unknown = existsSync(configPath) ? parse(readFileSync(configPath, 'utf8')) : {};
  return { config: validateConfig(raw, configPath), version: GOLDEN_VERSION };
}

function render(result: ManifestsResult): string {
  const header = result.reports.flatMap(describeReport).map((line) => `${HEADER}${line}\n`);
  return `${header.join('')}${result.output}`;
}

/** The golden file without its comment header: the output YAML. */
function outputOf(golden: string): string {
  const lines = golden.split('\n');
  const first = lines.findIndex((line) => !line.startsWith(HEADER));
  return lines.slice(first).join('\n');
}

function golden(name: string): string {
  const path = join(DIR, `${name}${GOLDEN}`);
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: run REFRESH_GOLDEN=1 npx jest test/golden/inject.test.ts`);
  }
  return readFileSync(path, 'utf8');
}

describe('golden injection files (test/golden/inject)', () => {
  it('has at least 30 cases, and no golden file without its input', () => {
    expect(cases.length).toBeGreaterThanOrEqual(30);
    const orphans = files
      .filter((f) => f.endsWith(GOLDEN))
      .filter((f) => !cases.includes(f.slice(0, -GOLDEN.length)));
    expect(orphans).toEqual([]);
  });

  it('large-env.yaml is the 1,500-variable Pod of the fixture builder', () => {
    const path = join(DIR, 'large-env.yaml');
    const generated =
      '# Generated from largeEnvPod() in test/fixtures/pods.ts (REFRESH_GOLDEN=1 rewrites it).\n' +
      stringify(largeEnvPod(), { lineWidth: 0 });
    if (refresh) writeFileSync(path, generated);
    expect(readFileSync(path, 'utf8')).toBe(generated);
  });

  describe.each(cases)('%s', (name) => {
    const input = readFileSync(join(DIR, `${name}${INPUT}`), 'utf8');
    const ctx = contextFor(name);
    const result = injectManifests(input, ctx);

    it('1. the output equals the golden file', () => {
      const rendered = render(result);
      if (refresh) writeFileSync(join(DIR, `${name}${GOLDEN}`), rendered);
      expect(rendered).toBe(golden(name));
    });

    it('2. the patch applied to the input gives the golden documents', () => {
      const expected = parseManifests(outputOf(golden(name)));
      const patched = result.documents.map(
        ({ input: doc, result: r }) => applyPatch(deepClone(doc), r.patch).newDocument as unknown,
      );
      expect(patched).toEqual(expected);
    });

    it('3. injecting the golden output again changes nothing', () => {
      const output = outputOf(golden(name));
      const again = injectManifests(output, ctx);
      expect(again.output).toBe(output);
      expect(again.documents.map((d) => d.result.patch)).toEqual(again.documents.map(() => []));
      expect(again.reports.map((r) => r.outcome.action)).not.toContain('injected');
    });
  });
});

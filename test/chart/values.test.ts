// values.yaml against the server's own configuration schema, and its documentation.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isMap, isPair, isScalar, parse, parseDocument, type YAMLMap } from 'yaml';
import { CONFIG_SCHEMA } from '../../src/config/schema';
import { defaultConfig, validateConfig } from '../../src/config/validate';
import {
  CHART_DERIVED_KEYS,
  CHART_OWNED_KEYS,
  leafPaths,
  schemaLeafPaths,
  valueAt,
} from './config-values';
import { CHART_DIR } from './helm';

const VALUES_FILE = join(CHART_DIR, 'values.yaml');
const valuesText = readFileSync(VALUES_FILE, 'utf8');
const values = parse(valuesText) as { config: Record<string, unknown> };

/** Values passed as they are into the Pod spec: one comment documents the whole object. */
const PASS_THROUGH = [
  'resources',
  'podSecurityContext',
  'securityContext',
  'grafana.dashboards.labels',
];

/** Every key of values.yaml without a `# -- ` comment, as dotted paths. */
function undocumentedKeys(map: YAMLMap, prefix = ''): string[] {
  return map.items.flatMap((pair, index) => {
    if (!isPair(pair) || !isScalar(pair.key)) return [];
    const path = prefix === '' ? String(pair.key.value) : `${prefix}.${String(pair.key.value)}`;
    // The comment above a map's first key belongs to the map in the YAML tree.
    const comment = pair.key.commentBefore ?? (index === 0 ? map.commentBefore : undefined);
    const documented = comment?.includes('-- ') ?? false;
    if (isMap(pair.value) && pair.value.items.length > 0) {
      if (documented && PASS_THROUGH.includes(path)) return [];
      return undocumentedKeys(pair.value, path);
    }
    return documented ? [] : [path];
  });
}

describe('values.yaml', () => {
  it('is valid for the server: its config passes src/config/validate.ts', () => {
    expect(() => validateConfig(values.config, 'values.yaml config')).not.toThrow();
  });

  it("gives every config key the server's own default", () => {
    const defaults = defaultConfig();
    const differing = leafPaths(values.config).filter(
      (path) =>
        JSON.stringify(valueAt(values.config, path)) !== JSON.stringify(valueAt(defaults, path)),
    );
    expect(differing).toEqual([]);
  });

  it('lists every key of the server schema but those the chart sets itself', () => {
    const inValues = leafPaths(values.config);
    const chartKeys = [...CHART_OWNED_KEYS, ...CHART_DERIVED_KEYS];
    expect(inValues.filter((p) => chartKeys.includes(p))).toEqual([]);
    expect([...inValues, ...chartKeys].sort()).toEqual(schemaLeafPaths(CONFIG_SCHEMA).sort());
  });

  it('documents every value with a `# -- ` comment', () => {
    const doc = parseDocument(valuesText);
    if (!isMap(doc.contents)) throw new Error('values.yaml is not a map');
    expect(undocumentedKeys(doc.contents)).toEqual([]);
  });

  it('finds an undocumented key (the check itself works)', () => {
    const doc = parseDocument('# -- documented\na: 1\nb:\n  # -- documented\n  c: 2\n  d: 3\n');
    if (!isMap(doc.contents)) throw new Error('not a map');
    expect(undocumentedKeys(doc.contents)).toEqual(['b.d']);
  });
});

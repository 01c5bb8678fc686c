// How the chart's `config` values relate to the server's configuration schema
// (src/config/schema.ts): which keys the chart sets itself, and the JSON schema of `config` in
// charts/mooring/values.schema.json, derived from the server's.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CONFIG_SCHEMA } from '../../src/config/schema';
import { CHART_DIR, REPO_ROOT } from './helm';

/**
 * Keys the chart always sets (templates/_helpers.tpl, "mooring.config"): they must agree with the
 * objects the chart makes, so values cannot set them (values.schema.json has no such key).
 */
export const CHART_OWNED_KEYS: readonly string[] = [
  'cluster.namespace',
  'cluster.serviceName',
  'cluster.webhookConfigName',
  'cluster.validatingWebhookConfigName',
  'server.listen',
  'server.adminListen',
  'server.dataDir',
  'ca.pluginDir',
  // Local mode only: in a cluster the mesh comes from the API server (left unset, null).
  'server.meshDir',
];

/** Keys whose default the chart derives (its image, its Service); values may still set them. */
export const CHART_DERIVED_KEYS: readonly string[] = [
  'injector.proxyImage',
  'injector.initImage',
  'injector.caAddress',
];

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

function isObject(value: unknown): value is JsonObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** The dotted paths of the leaves (non-object values) of a plain object. */
export function leafPaths(value: unknown, prefix = ''): string[] {
  if (!isObject(value)) return [prefix];
  return Object.entries(value).flatMap(([key, child]) =>
    leafPaths(child, prefix === '' ? key : `${prefix}.${key}`),
  );
}

/** The dotted paths of the leaf properties of a JSON schema (objects with `properties`). */
export function schemaLeafPaths(schema: unknown, prefix = ''): string[] {
  if (!isObject(schema) || !isObject(schema.properties)) return [prefix];
  return Object.entries(schema.properties).flatMap(([key, child]) =>
    schemaLeafPaths(child, prefix === '' ? key : `${prefix}.${key}`),
  );
}

/** The value at a dotted path, or undefined. */
export function valueAt(value: unknown, path: string): unknown {
  return path
    .split('.')
    .reduce<unknown>((node, key) => (isObject(node) ? node[key] : undefined), value);
}

/**
 * The server's schema as the schema of the chart's `config` value: no $id, no defaults (values.yaml
 * holds them), no chart-owned keys, and no `default: {}` that would make Helm see objects the user
 * never wrote.
 */
export function configValuesSchema(): JsonObject {
  const strip = (node: Json, path: string): Json => {
    if (Array.isArray(node)) return node.map((item) => strip(item, path));
    if (!isObject(node)) return node;
    const out: JsonObject = {};
    for (const [key, child] of Object.entries(node)) {
      if (key === '$id' || key === 'default') continue;
      if (key === 'properties' && isObject(child)) {
        const props: JsonObject = {};
        for (const [name, prop] of Object.entries(child)) {
          const propPath = path === '' ? name : `${path}.${name}`;
          if (!CHART_OWNED_KEYS.includes(propPath)) props[name] = strip(prop, propPath);
        }
        out[key] = props;
      } else {
        out[key] = strip(child, path);
      }
    }
    return out;
  };
  const schema = strip(JSON.parse(JSON.stringify(CONFIG_SCHEMA)) as Json, '');
  if (!isObject(schema)) throw new Error('the configuration schema is not an object');
  return {
    description:
      "The server's configuration (src/config/schema.ts, without the keys the chart sets itself).",
    ...schema,
  };
}

export const VALUES_SCHEMA_FILE = join(CHART_DIR, 'values.schema.json');

export function readValuesSchema(): JsonObject {
  const parsed: unknown = JSON.parse(readFileSync(VALUES_SCHEMA_FILE, 'utf8'));
  if (!isObject(parsed) || !isObject(parsed.properties)) {
    throw new Error(`${VALUES_SCHEMA_FILE} has no properties`);
  }
  return parsed;
}

/**
 * values.schema.json with its `config` property derived again, formatted by the repository's
 * prettier (run as a program: its API needs dynamic import, which jest's VM does not allow).
 */
export function valuesSchemaText(): string {
  const schema = readValuesSchema();
  const properties = schema.properties as JsonObject;
  properties.config = configValuesSchema();
  return execFileSync(
    join(REPO_ROOT, 'node_modules', '.bin', 'prettier'),
    ['--stdin-filepath', VALUES_SCHEMA_FILE],
    { input: JSON.stringify(schema, null, 2), encoding: 'utf8', cwd: REPO_ROOT },
  );
}

export function writeValuesSchema(): void {
  writeFileSync(VALUES_SCHEMA_FILE, valuesSchemaText());
}

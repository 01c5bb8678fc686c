import Ajv, { type ErrorObject } from 'ajv';
import { checkCAPolicy } from '../ca/policy';
import { MooringError } from '../errors';
import { CONFIG_SCHEMA } from './schema';
import type { Config } from './types';

// Compiled once, lazily: nothing is built when the module is imported.
let compiled: ReturnType<Ajv['compile']> | undefined;
function validator(): ReturnType<Ajv['compile']> {
  // verbose: an error carries its schema, so that an unknown key can list the known ones.
  compiled ??= new Ajv({ allErrors: true, useDefaults: true, strict: true, verbose: true }).compile(
    CONFIG_SCHEMA,
  );
  return compiled;
}

function describe(e: ErrorObject): string {
  const path = e.instancePath === '' ? '(root)' : e.instancePath;
  if (e.keyword === 'additionalProperties') {
    const known = Object.keys(
      (e.parentSchema as { properties?: Record<string, unknown> } | undefined)?.properties ?? {},
    );
    const hint = known.length > 0 ? ` (known keys: ${known.join(', ')})` : '';
    return `${path}: unknown key "${String(e.params.additionalProperty)}"${hint}`;
  }
  if (e.keyword === 'enum') {
    return `${path}: must be one of ${(e.params.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`;
  }
  if (e.keyword === 'const') return `${path}: must be ${JSON.stringify(e.params.allowedValue)}`;
  return `${path}: ${e.message ?? 'is invalid'}`;
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/**
 * Validates raw configuration (already parsed), fills every default and deep-freezes the result.
 * Throws one CFG_ERR_INVALID that lists every violation with its path.
 */
export function validateConfig(raw: unknown, source = 'configuration'): Config {
  const data: unknown = raw === undefined || raw === null ? {} : structuredClone(raw);
  const validate = validator();
  if (!validate(data)) {
    // anyOf failures repeat the same path; keep each line once.
    const lines = [
      ...new Set((validate.errors ?? []).filter((e) => e.keyword !== 'anyOf').map(describe)),
    ];
    throw new MooringError(
      'CFG_ERR_INVALID',
      `${source} is invalid:\n${lines.map((l) => `  - ${l}`).join('\n')}`,
      { details: lines },
    );
  }
  const config = data as Config;
  if (config.ca.workloadDefaultTtlSeconds > config.ca.workloadMaxTtlSeconds) {
    throw new MooringError(
      'CFG_ERR_INVALID',
      `${source} is invalid:\n  - /ca/workloadDefaultTtlSeconds: must not exceed /ca/workloadMaxTtlSeconds`,
    );
  }
  checkCAPolicy(config.ca);
  return deepFreeze(config);
}

/** The defaults alone. */
export function defaultConfig(): Config {
  return validateConfig({});
}

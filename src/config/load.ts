import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { MooringError } from '../errors';
import { yamlErrorSummary } from '../json';
import type { Config } from './types';
import { validateConfig } from './validate';

/** Reads a YAML or JSON file (JSON is YAML), validates it once and returns it frozen. */
export function loadConfigFile(path: string | undefined): Config {
  if (path === undefined) return validateConfig({});
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new MooringError(
      'CFG_ERR_READ',
      `cannot read configuration file ${path}: ${(err as Error).message}`,
      {
        cause: err,
      },
    );
  }
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (err) {
    throw new MooringError(
      'CFG_ERR_INVALID',
      `${path} is not valid YAML or JSON: ${yamlErrorSummary(err)}`,
      {
        cause: err,
      },
    );
  }
  return validateConfig(raw, path);
}

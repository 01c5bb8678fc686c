// The configuration's text (YAML, or JSON, which is YAML) into the validated, defaulted, frozen
// configuration. Pure: reading the file is src/adapters/config-file.ts.

import { parse } from 'yaml';
import { MooringError } from '../errors';
import { yamlErrorSummary } from '../json';
import type { Config } from './types';
import { validateConfig } from './validate';

/** Parses and validates `text`; `source` (the file name) starts every error message. */
export function parseConfigText(text: string, source: string): Config {
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (err) {
    throw new MooringError(
      'CFG_ERR_INVALID',
      `${source} is not valid YAML or JSON: ${yamlErrorSummary(err)}`,
      { cause: err },
    );
  }
  return validateConfig(raw, source);
}

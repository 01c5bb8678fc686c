// The configuration file of every command (`--config FILE`): read here, parsed and validated by
// src/config/parse.ts. No file: the defaults.

import { readFileSync } from 'node:fs';
import { parseConfigText } from '../config/parse';
import type { Config } from '../config/types';
import { defaultConfig } from '../config/validate';
import { MooringError } from '../errors';

/** Reads a YAML or JSON file, validates it once and returns it frozen; the defaults without one. */
export function readConfigFile(path: string | undefined): Config {
  if (path === undefined) return defaultConfig();
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new MooringError(
      'CFG_ERR_READ',
      `cannot read configuration file ${path}: ${(err as Error).message}`,
      { cause: err },
    );
  }
  return parseConfigText(text, path);
}

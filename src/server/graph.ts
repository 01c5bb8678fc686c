// The mesh graph's dependencies for the admin app: the Prometheus client of ui.prometheusUrl and
// cytoscape.js from the installed package (served by Mooring itself).

import { readFileSync } from 'node:fs';
import { prometheusQuery } from '../adapters/prometheus';
import type { Config } from '../config/types';
import type { GraphDeps } from '../http/plugins/graph';

let cytoscape: string | null = null;

export function graphDeps(config: Config, now: () => Date = () => new Date()): GraphDeps {
  cytoscape ??= readFileSync(require.resolve('cytoscape/dist/cytoscape.min.js'), 'utf8');
  const url = config.ui.prometheusUrl;
  return { query: url === null ? null : prometheusQuery(url), cytoscape, now };
}

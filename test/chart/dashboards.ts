// Mooring's Grafana dashboards (charts/mooring/dashboards/*.json): reading them and their PromQL,
// for the chart test and the end-to-end test that runs every query against a real Prometheus.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CHART_DIR } from './helm';

export const DASHBOARDS = ['mesh', 'service', 'workload'] as const;

export interface Dashboard {
  uid: string;
  title: string;
  templating: { list: { name: string; type: string; query: unknown }[] };
  panels: { id: number; title: string; targets: { expr: string; refId: string }[] }[];
}

export const dashboardText = (name: string): string =>
  readFileSync(join(CHART_DIR, 'dashboards', `${name}.json`), 'utf8');

export const dashboard = (name: string): Dashboard => JSON.parse(dashboardText(name)) as Dashboard;

/** Every panel query of a dashboard: [panel title, PromQL]. */
export const queries = (d: Dashboard): [string, string][] =>
  d.panels.flatMap((p) => p.targets.map((t): [string, string] => [p.title, t.expr]));

/** A query with Grafana's variables replaced, as Grafana would send it. */
export function substitute(expr: string, vars: Readonly<Record<string, string>>): string {
  return expr
    .replace(/\$__rate_interval/g, '1m')
    .replace(/\$(\w+)/g, (m, name: string) => vars[name] ?? m);
}

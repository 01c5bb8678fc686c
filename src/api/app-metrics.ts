// Metrics merging, Istio's way: the injector points a Pod's `prometheus.io/*` scrape annotations
// at the agent (15020 `/stats/prometheus`) and hands the app's own scrape target to the agent in
// MOORING_PROMETHEUS_ANNOTATIONS; the agent answers one scrape with the app's metrics, the proxy's
// and its own. This is the wire contract between the two ends: the annotation keys, the value
// of the variable (JSON of the original annotations, as Istio's ISTIO_PROMETHEUS_ANNOTATIONS),
// and where the merged metrics are served. Pure.

export const PROMETHEUS_ANNOTATION = {
  scrape: 'prometheus.io/scrape',
  port: 'prometheus.io/port',
  path: 'prometheus.io/path',
} as const;

/** Where the agent serves the merged metrics (on its own port, 15020). */
export const MERGED_METRICS_PATH = '/stats/prometheus';
export const DEFAULT_METRICS_PATH = '/metrics';

/** The app's scrape annotations, as the Pod had them. */
export interface AppMetricsTarget {
  readonly port: number;
  readonly path: string;
}

/** The variable's value: the original annotations (all strings), as JSON. */
export function appMetricsText(annotations: {
  readonly scrape?: string;
  readonly port?: string;
  readonly path?: string;
}): string {
  return JSON.stringify(annotations);
}

/**
 * The app's scrape target from the variable, or null when the app asked for no scrape (no
 * variable, `scrape` not "true", no port). Throws an Error naming what is wrong otherwise.
 */
export function parseAppMetrics(text: string | undefined): AppMetricsTarget | null {
  if (text === undefined || text.trim() === '') return null;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new Error('is not JSON');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new Error('must be a JSON object');
  }
  const o = raw as Record<string, unknown>;
  if (o.scrape !== 'true') return null;
  if (o.port === undefined) return null;
  const port = typeof o.port === 'string' && /^[0-9]{1,5}$/.test(o.port) ? Number(o.port) : NaN;
  if (!(port >= 1 && port <= 65535)) {
    throw new Error(`port ${JSON.stringify(o.port)} is not a port (1-65535)`);
  }
  const path = o.path === undefined || o.path === '' ? DEFAULT_METRICS_PATH : o.path;
  if (typeof path !== 'string' || !path.startsWith('/')) {
    throw new Error(`path ${JSON.stringify(o.path)} must start with /`);
  }
  return { port, path };
}

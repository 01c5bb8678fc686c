// Metrics merging in the injector (Istio's `enablePrometheusMerge`): a Pod's `prometheus.io/*`
// annotations are pointed at the agent, which serves the app's metrics, the proxy's and its own in
// one scrape; the originals go to the agent (src/api/app-metrics.ts). A Pod that says
// `prometheus.io/scrape: "false"` keeps its annotations and gets no merging. Pure.

import { appMetricsText, MERGED_METRICS_PATH, PROMETHEUS_ANNOTATION } from '../api/app-metrics';

export interface ScrapeRewrite {
  /** The annotations to set on the Pod. */
  readonly annotations: Readonly<Record<string, string>>;
  /** MOORING_PROMETHEUS_ANNOTATIONS for the agent; undefined when the app asked for no scrape. */
  readonly appMetrics: string | undefined;
}

/** The rewrite for a Pod's annotations, or null when it opted out of scraping. */
export function scrapeRewrite(
  annotations: Readonly<Record<string, unknown>>,
  agentPort: number,
): ScrapeRewrite | null {
  const text = (key: string): string | undefined => {
    const v = annotations[key];
    return typeof v === 'string' ? v : undefined;
  };
  const scrape = text(PROMETHEUS_ANNOTATION.scrape);
  if (scrape === 'false') return null;
  const port = text(PROMETHEUS_ANNOTATION.port);
  const path = text(PROMETHEUS_ANNOTATION.path);
  return {
    annotations: {
      [PROMETHEUS_ANNOTATION.scrape]: 'true',
      [PROMETHEUS_ANNOTATION.port]: String(agentPort),
      [PROMETHEUS_ANNOTATION.path]: MERGED_METRICS_PATH,
    },
    appMetrics:
      scrape === 'true'
        ? appMetricsText({
            scrape,
            ...(port === undefined ? {} : { port }),
            ...(path === undefined ? {} : { path }),
          })
        : undefined,
  };
}

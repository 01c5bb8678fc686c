// One scrape for the whole Pod, as Istio's agent answers on 15020 `/stats/prometheus`: the app's
// metrics (from the target the injector handed over, src/api/app-metrics.ts), the proxy's
// (Istio's standard metrics) and the agent's own, one after the other in Prometheus text. Each
// source is read on its own and a broken one is left out, never the others: an app that is down,
// slow, answers 500 or sends something too large costs only its own part (the agent counts and
// logs the failure).

import http from 'node:http';
import { Counter, type Registry } from 'prom-client';
import type { AppMetricsTarget } from '../../api/app-metrics';

/** The app's metrics are read with this time limit (Prometheus' scrape timeout is 10 s). */
export const APP_SCRAPE_TIMEOUT_MS = 5_000;
/** A larger answer from the app is refused (a runaway exporter must not exhaust the agent). */
export const APP_SCRAPE_MAX_BYTES = 32 * 1024 * 1024;

export interface MetricsSource {
  readonly name: string;
  read(): Promise<string> | string;
}

export interface MergedScrape {
  readonly text: string;
  /** The sources that failed, with why (for the agent's log). */
  readonly failures: readonly { readonly source: string; readonly reason: string }[];
}

/** Text ending with exactly one newline; an OpenMetrics `# EOF` line removed. */
function section(text: string): string {
  let t = text.replace(/\r\n/g, '\n');
  t = t.replace(/(^|\n)# EOF\s*$/, '$1');
  if (t.length > 0 && !t.endsWith('\n')) t += '\n';
  return t;
}

/** Reads every source at once; what answers is joined in the given order. */
export async function mergeMetrics(sources: readonly MetricsSource[]): Promise<MergedScrape> {
  const results = await Promise.allSettled(sources.map(async (s) => s.read()));
  let text = '';
  const failures: { source: string; reason: string }[] = [];
  results.forEach((r, i) => {
    const name = (sources[i] as MetricsSource).name;
    if (r.status === 'fulfilled') {
      text += section(r.value);
    } else {
      const reason = r.reason instanceof Error ? r.reason.message : String(r.reason);
      failures.push({ source: name, reason });
    }
  });
  return { text, failures };
}

/**
 * GET of the app's metrics on `host` (the Pod's IP, where the app listens as Prometheus would
 * reach it): resolves with the text, rejects with why it could not be read.
 */
export function scrapeApp(
  target: AppMetricsTarget,
  host: string,
  timeoutMs = APP_SCRAPE_TIMEOUT_MS,
  maxBytes = APP_SCRAPE_MAX_BYTES,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      {
        host,
        port: target.port,
        path: target.path,
        headers: { accept: 'text/plain;version=0.0.4;q=1,*/*;q=0.1' },
        timeout: timeoutMs,
        agent: false,
      },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          reject(new Error(`the app answered ${res.statusCode ?? 0} on ${target.path}`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > maxBytes) {
            reject(new Error(`the app's metrics exceed ${maxBytes} bytes`));
            req.destroy();
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
        res.on('error', reject);
      },
    );
    req.on('timeout', () =>
      req.destroy(new Error(`the app did not answer within ${timeoutMs} ms`)),
    );
    req.on('error', (err) => reject(err));
  });
}

export interface PodMetricsDeps {
  /** The app's scrape target (MOORING_PROMETHEUS_ANNOTATIONS), null when it has none. */
  readonly app: AppMetricsTarget | null;
  /** Where the app listens: the Pod's IP (127.0.0.1 without one). */
  readonly appHost: string;
  /** The proxy's metrics text (Istio's standard metrics and its own), null without a proxy. */
  readonly proxy: (() => Promise<string> | string) | null;
  /** The agent's own registry; the failure counter is registered in it. */
  readonly registry: Registry;
  readonly log: { debug(obj: object, msg: string): void };
  readonly appTimeoutMs?: number;
  readonly appMaxBytes?: number;
}

/** The handler of 15020 `/stats/prometheus`: the app's, the proxy's and the agent's metrics. */
export function podMetrics(deps: PodMetricsDeps): () => Promise<string> {
  const failures = new Counter({
    name: 'mooring_agent_app_scrape_failures_total',
    help: "Merged scrapes in which the app's metrics could not be read (the rest was served).",
    registers: [deps.registry],
  });
  const sources: MetricsSource[] = [];
  const app = deps.app;
  if (app !== null) {
    sources.push({
      name: 'app',
      read: () =>
        scrapeApp(
          app,
          deps.appHost,
          deps.appTimeoutMs ?? APP_SCRAPE_TIMEOUT_MS,
          deps.appMaxBytes ?? APP_SCRAPE_MAX_BYTES,
        ),
    });
  }
  if (deps.proxy !== null) sources.push({ name: 'proxy', read: deps.proxy });
  sources.push({ name: 'agent', read: () => deps.registry.metrics() });
  return async () => {
    const merged = await mergeMetrics(sources);
    for (const f of merged.failures) {
      if (f.source === 'app') failures.inc();
      deps.log.debug({ source: f.source, reason: f.reason }, 'metrics left out of the scrape');
    }
    return merged.text;
  };
}

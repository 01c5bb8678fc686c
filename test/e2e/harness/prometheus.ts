// A real Prometheus for the metrics tests: Debian's `prometheus` (apt-get install prometheus),
// scraping the given targets every second, its storage and log in a temporary directory, its
// web API on a free port of 127.0.0.1 (with `netns`: in that network namespace, on `host`).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { freePorts, startTool, waitUntil, type Fetch } from './processes';

export const PROMETHEUS_BIN = process.env.MOORING_PROMETHEUS ?? '/usr/bin/prometheus';

export interface PrometheusTarget {
  /** The job label. */
  readonly job: string;
  /** `host:port` targets. */
  readonly targets: readonly string[];
  readonly metricsPath: string;
}

export interface Prometheus {
  /** `http://HOST:PORT`. */
  readonly url: string;
  /** A fetch that reaches `url` (the global one, or one inside `netns`). */
  readonly fetch: Fetch;
  readonly logPath: string;
  /** One instant query: the result vector. */
  query(promql: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]>;
  /** Resolves once every target has been scraped successfully at least `times` times. */
  waitForScrapes(times: number, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

export function prometheusConfig(jobs: readonly PrometheusTarget[], intervalSeconds = 1): string {
  const lines = [
    'global:',
    `  scrape_interval: ${intervalSeconds}s`,
    `  scrape_timeout: ${intervalSeconds}s`,
    'scrape_configs:',
  ];
  for (const j of jobs) {
    lines.push(
      `  - job_name: ${JSON.stringify(j.job)}`,
      `    metrics_path: ${JSON.stringify(j.metricsPath)}`,
      '    static_configs:',
      `      - targets: [${j.targets.map((t) => JSON.stringify(t)).join(', ')}]`,
    );
  }
  return `${lines.join('\n')}\n`;
}

export function startPrometheus(
  jobs: readonly PrometheusTarget[],
  opts: {
    startTimeoutMs?: number;
    keepTmpDir?: boolean;
    netns?: string;
    host?: string;
    /** Default: a free port of 127.0.0.1. */
    port?: number;
  } = {},
): Promise<Prometheus> {
  const spec = {
    ...opts,
    title: 'Prometheus',
    binary: PROMETHEUS_BIN,
    missing: 'apt-get install prometheus (.ci/run does)',
  };
  return startTool(spec, async ({ tmpDir, logPath, deadline, fetch, spawn, stop }) => {
    const port = opts.port ?? (await freePorts(1))[0];
    const configPath = path.join(tmpDir, 'prometheus.yml');
    fs.writeFileSync(configPath, prometheusConfig(jobs));
    const host = opts.host ?? '127.0.0.1';
    const proc = spawn([
      `--config.file=${configPath}`,
      `--storage.tsdb.path=${path.join(tmpDir, 'data')}`,
      `--web.listen-address=${host}:${port}`,
      '--log.level=warn',
    ]);
    const url = `http://${host}:${port}`;
    await waitUntil('the Prometheus API', proc, deadline, async () => {
      return (await fetch(`${url}/-/ready`)).status === 200;
    });
    const query: Prometheus['query'] = async (promql) => {
      const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(promql)}`);
      const body = (await res.json()) as {
        status: string;
        error?: string;
        data: { result: { metric: Record<string, string>; value: [number, string] }[] };
      };
      if (body.status !== 'success') throw new Error(`PromQL ${promql}: ${body.error ?? ''}`);
      return body.data.result;
    };
    return {
      url,
      fetch,
      logPath,
      query,
      async waitForScrapes(times, timeoutMs = 60_000) {
        const until = Date.now() + timeoutMs;
        await waitUntil(`${times} scrapes of every target`, proc, until, async () => {
          const up = await query('count_over_time(up[1h])');
          const down = await query('up == 0');
          const targets = jobs.reduce((n, j) => n + j.targets.length, 0);
          return (
            down.length === 0 &&
            up.length === targets &&
            up.every((s) => Number(s.value[1]) >= times)
          );
        });
      },
      stop,
    };
  });
}

// A Prometheus client for the mesh graph: one instant query (`GET /api/v1/query`), its vector
// answer. Errors carry a public detail without the URL (it may hold a user and a password).

import type { PromSample } from '../ui/graph';

export class PrometheusError extends Error {
  override readonly name = 'PrometheusError';
  constructor(
    message: string,
    readonly publicDetail: string,
  ) {
    super(message);
  }
}

export function prometheusQuery(
  baseUrl: string,
  timeoutMs = 10_000,
): (promql: string) => Promise<readonly PromSample[]> {
  const base = baseUrl.replace(/\/+$/, '');
  return async (promql) => {
    const url = `${base}/api/v1/query?query=${encodeURIComponent(promql)}`;
    let res: Response;
    try {
      res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).name;
      throw new PrometheusError(
        `Prometheus did not answer: ${cause}`,
        `it could not be reached (${cause})`,
      );
    }
    const body = (await res.json().catch(() => null)) as {
      status?: string;
      error?: string;
      data?: { resultType?: string; result?: PromSample[] };
    } | null;
    if (!res.ok || body?.status !== 'success') {
      throw new PrometheusError(
        `Prometheus answered ${res.status}: ${body?.error ?? 'not a query answer'}`,
        `it answered HTTP ${res.status}`,
      );
    }
    if (body.data?.resultType !== 'vector' || !Array.isArray(body.data.result)) {
      throw new PrometheusError('Prometheus answered something else than a vector', 'not a vector');
    }
    return body.data.result;
  };
}

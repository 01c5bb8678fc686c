// GET /metrics: the Prometheus text of the process's registry (or of its workers').

import type { FastifyInstance } from 'fastify';

/** A prom-client Registry, or the primary's view over its workers (src/server/workers.ts). */
export interface MetricsSource {
  readonly contentType: string;
  metrics(): Promise<string>;
}

export function registerMetricsRoute(app: FastifyInstance, registry: MetricsSource): void {
  app.get('/metrics', async (_request, reply) => {
    const text = await registry.metrics();
    return reply.header('content-type', registry.contentType).send(text);
  });
}

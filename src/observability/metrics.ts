import { collectDefaultMetrics, Registry } from 'prom-client';

/** A fresh registry with process metrics. Each process (and each test) builds its own. */
export function createRegistry(options: { processMetrics?: boolean } = {}): Registry {
  const registry = new Registry();
  if (options.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  return registry;
}

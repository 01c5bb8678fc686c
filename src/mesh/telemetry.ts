// The Telemetries that apply to one workload, merged as Istio merges them: the root namespace's
// (mesh-wide), then its namespace's, then those whose selector takes it, each level's settings
// over the one before (the oldest of a level first, a younger one over it); metric overrides
// add up, the most specific last. Pure.

import type { MetricOverride } from '../api/mesh';
import { appliesTo } from './authorization';
import type { TelemetryObject } from './objects';
import { olderFirst } from './traffic';

export interface ResolvedTelemetry {
  readonly samplingPercent: number | null;
  readonly accessLog: TelemetryObject['accessLog'];
  readonly metricOverrides: readonly MetricOverride[];
}

export function resolveTelemetry(
  workload: { readonly namespace: string; readonly labels: Readonly<Record<string, string>> },
  candidates: Iterable<TelemetryObject>,
  rootNamespace: string,
): ResolvedTelemetry {
  const level = (t: TelemetryObject): number =>
    t.selector !== null ? 2 : t.meta.namespace === rootNamespace ? 0 : 1;
  const applying = [...candidates]
    .filter((t) => appliesTo(t, workload, rootNamespace))
    .sort((a, b) => level(a) - level(b) || olderFirst(a, b));
  let samplingPercent: number | null = null;
  let accessLog: TelemetryObject['accessLog'] = null;
  const metricOverrides: MetricOverride[] = [];
  for (const t of applying) {
    samplingPercent = t.samplingPercent ?? samplingPercent;
    accessLog = t.accessLog ?? accessLog;
    metricOverrides.push(...t.metricOverrides);
  }
  return { samplingPercent, accessLog, metricOverrides };
}

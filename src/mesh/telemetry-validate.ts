// Istio's Telemetry (telemetry.istio.io v1, v1alpha1): a workload's tracing sampling, its access
// log (on, off, one side) and its metrics (off, or labels removed), scoped as Istio scopes it
// (the root namespace, a namespace, a selector). What Mooring cannot do yet is named: warned of
// and ignored where it changes only what is reported (custom tags, filters, UPSERT tag
// overrides), refused where the object would mean something else (targetRefs). Pure.

import { ISTIO_METRICS, type MetricOverride } from '../api/mesh';
import { readSelector, refuseTargetRefs } from './authorization-validate';
import type { Fields, Json } from './fields';
import type { Meta, TelemetryObject } from './objects';
import { unsupported } from './traffic-validate';

const MODES = ['CLIENT_AND_SERVER', 'CLIENT', 'SERVER'] as const;
type Mode = (typeof MODES)[number];
const METRICS = ['ALL_METRICS', ...Object.keys(ISTIO_METRICS)] as MetricOverride['metric'][];
/** Istio's metrics of gRPC messages: Mooring does not count them. */
const UNCOUNTED = ['GRPC_REQUEST_MESSAGES', 'GRPC_RESPONSE_MESSAGES'];

function readMode(f: Fields, raw: Json, field: string): Mode {
  const match = f.object(raw.match, `${field}.match`);
  const text = match === undefined ? undefined : f.string(match.mode, `${field}.match.mode`);
  if (text === undefined) return 'CLIENT_AND_SERVER';
  const mode = MODES.find((m) => m === text);
  if (mode === undefined) {
    f.problem(
      `${field}.match.mode`,
      `must be one of ${MODES.join(', ')}, not ${JSON.stringify(text)}`,
    );
    return 'CLIENT_AND_SERVER';
  }
  return mode;
}

/** Only the first entry of `tracing` and `accessLogging` is read (one provider each). */
function firstOnly(f: Fields, list: unknown[], field: string): void {
  if (list.length > 1) {
    f.warn(
      `${field}[1]`,
      'a second entry is not read by Mooring (one tracer, one access log): ignored',
    );
  }
}

function readTracing(f: Fields, spec: Json): number | null {
  const list = f.array(spec.tracing, 'spec.tracing');
  firstOnly(f, list, 'spec.tracing');
  const tracing = list.length === 0 ? undefined : f.object(list[0], 'spec.tracing[0]');
  if (tracing === undefined) return null;
  const at = 'spec.tracing[0]';
  unsupported(f, tracing, ['customTags', 'useRequestIdForTraceSampling'], at, false);
  if (readMode(f, tracing, at) !== 'CLIENT_AND_SERVER') {
    f.warn(`${at}.match.mode`, 'Mooring samples both sides alike: the mode is ignored');
  }
  const percent = f.number(tracing.randomSamplingPercentage, `${at}.randomSamplingPercentage`, {
    min: 0,
    max: 100,
  });
  if (f.boolean(tracing.disableSpanReporting, `${at}.disableSpanReporting`) === true) return 0;
  return percent ?? null;
}

function readAccessLog(f: Fields, spec: Json): TelemetryObject['accessLog'] {
  const list = f.array(spec.accessLogging, 'spec.accessLogging');
  firstOnly(f, list, 'spec.accessLogging');
  const log = list.length === 0 ? undefined : f.object(list[0], 'spec.accessLogging[0]');
  if (log === undefined) return null;
  const at = 'spec.accessLogging[0]';
  unsupported(f, log, ['filter'], at, false);
  const mode = readMode(f, log, at);
  const disabled = f.boolean(log.disabled, `${at}.disabled`) ?? false;
  return {
    on: !disabled,
    side: mode === 'CLIENT' ? 'outbound' : mode === 'SERVER' ? 'inbound' : null,
  };
}

function readMetrics(f: Fields, spec: Json): MetricOverride[] {
  const out: MetricOverride[] = [];
  for (const [i, m] of f.array(spec.metrics, 'spec.metrics').entries()) {
    const at = `spec.metrics[${i}]`;
    const metrics = f.object(m, at);
    if (metrics === undefined) continue;
    unsupported(f, metrics, ['reportingInterval'], at, false);
    for (const [j, o] of f.array(metrics.overrides, `${at}.overrides`).entries()) {
      const oat = `${at}.overrides[${j}]`;
      const override = f.object(o, oat);
      if (override === undefined) continue;
      const match = f.object(override.match, `${oat}.match`) ?? {};
      if (match.customMetric !== undefined && match.customMetric !== null) {
        f.warn(`${oat}.match.customMetric`, 'Mooring has no custom metric: ignored');
        continue;
      }
      const name = f.string(match.metric, `${oat}.match.metric`) ?? 'ALL_METRICS';
      if (UNCOUNTED.includes(name)) {
        f.warn(`${oat}.match.metric`, `${name} is not reported by Mooring: ignored`);
        continue;
      }
      const metric = METRICS.find((x) => x === name);
      if (metric === undefined) {
        f.problem(
          `${oat}.match.metric`,
          `must be one of ${METRICS.join(', ')}, not ${JSON.stringify(name)}`,
        );
        continue;
      }
      const mode = readMode(f, override, oat);
      const disabled = f.boolean(override.disabled, `${oat}.disabled`);
      const removeTags: string[] = [];
      const tags = f.object(override.tagOverrides, `${oat}.tagOverrides`) ?? {};
      for (const [tag, value] of Object.entries(tags)) {
        const op = f.object(value, `${oat}.tagOverrides.${tag}`) ?? {};
        const operation =
          f.string(op.operation, `${oat}.tagOverrides.${tag}.operation`) ?? 'UPSERT';
        if (operation === 'REMOVE') removeTags.push(tag);
        else if (operation === 'UPSERT') {
          f.warn(
            `${oat}.tagOverrides.${tag}`,
            'UPSERT (a label from an expression) is not supported by Mooring yet: ignored',
          );
        } else {
          f.problem(
            `${oat}.tagOverrides.${tag}.operation`,
            `must be UPSERT or REMOVE, not ${JSON.stringify(operation)}`,
          );
        }
      }
      out.push({
        metric,
        mode,
        ...(disabled === undefined ? {} : { disabled }),
        ...(removeTags.length === 0 ? {} : { removeTags: removeTags.sort() }),
      });
    }
  }
  return out;
}

export function readTelemetry(raw: Json, f: Fields, meta: Meta): TelemetryObject {
  const spec = f.object(raw.spec, 'spec') ?? {};
  const selector = readSelector(f, spec);
  refuseTargetRefs(f, spec);
  return {
    kind: 'Telemetry',
    meta,
    selector,
    samplingPercent: readTracing(f, spec),
    accessLog: readAccessLog(f, spec),
    metricOverrides: readMetrics(f, spec),
  };
}

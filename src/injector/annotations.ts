// The annotation registry: every Pod key of PRODUCT.md with its accepted values, its default (from
// the configuration), its parser and its effect on the injected sidecar. `resolveSettings` reads a
// Pod's annotations into PodSettings; an invalid value is an INJ_ERR_ANNOTATION error naming the
// key and the value. Unknown keys of Mooring's domains (typos) and misplaced keys are warnings.

import type { InjectorConfig, ProxyLogLevel, ResourceConfig } from '../config/types';
import { ANNOTATION, INJECT_LABEL, MOUNT_PATH, STATUS_ANNOTATION } from '../constants';
import { MooringError } from '../errors';
import {
  parseCidrList,
  parseCidrListOrWildcard,
  parsePortList,
  parsePortListOrWildcard,
  type ParseResult,
} from './lists';
import type { VolumeMount } from './pod';
import { quantityValue } from './quantity';
import type { RedirectSpec } from './redirect';

/** What one Pod gets: the configuration with the Pod's annotations on top. */
export interface PodSettings {
  readonly proxyImage: string;
  readonly resources: ResourceConfig;
  readonly logLevel: ProxyLogLevel;
  readonly nativeSidecar: boolean;
  readonly holdApplication: boolean;
  readonly rewriteProbes: boolean;
  /** Volumes of the Pod mounted into mooring-proxy (files a DestinationRule's tls names). */
  readonly userVolumeMounts: readonly VolumeMount[];
  /** The traffic annotations; `excludeInboundPorts` does not yet hold the sidecar's own ports. */
  readonly traffic: Pick<
    RedirectSpec,
    | 'includeInboundPorts'
    | 'excludeInboundPorts'
    | 'includeOutboundIPRanges'
    | 'excludeOutboundIPRanges'
    | 'excludeOutboundPorts'
  >;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] extends object ? Mutable<T[K]> : T[K] };
type Draft = Mutable<PodSettings>;

export interface AnnotationDefinition {
  readonly key: string;
  /** What the value may be, as the README table and error messages say it. */
  readonly values: string;
  /** The value used when the annotation is absent (from the configuration). */
  readonly defaultValue: (config: InjectorConfig) => string;
  /** What it changes in the injected Pod. */
  readonly effect: string;
  /** Parses `value` into the draft; returns why it is invalid, or undefined. */
  readonly apply: (value: string, draft: Draft) => string | undefined;
}

const LOG_LEVELS: readonly ProxyLogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'off'];

// The reference grammar of container images (distribution/reference): optional registry host
// (with port), lower-case path components, optional tag, optional digest.
const DOMAIN_PART = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = `(?:${DOMAIN_PART}(?:\\.${DOMAIN_PART})*|\\[[0-9a-fA-F:]+\\])(?::[0-9]+)?`;
const PATH_PART = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const IMAGE_REF = new RegExp(
  `^(?:${DOMAIN}/)?${PATH_PART}(?:/${PATH_PART})*(?::[\\w][\\w.-]{0,127})?` +
    '(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$',
);

export function isImageReference(value: string): boolean {
  return value.length <= 512 && IMAGE_REF.test(value);
}

function parseBoolean(value: string): ParseResult<boolean> {
  if (value === 'true') return { ok: true, value: true };
  if (value === 'false') return { ok: true, value: false };
  return { ok: false, reason: 'must be "true" or "false"' };
}

/** Adapts a ParseResult parser and a setter into an `apply`. */
function applying<T>(
  parse: (value: string) => ParseResult<T>,
  set: (draft: Draft, value: T) => void,
): AnnotationDefinition['apply'] {
  return (value, draft) => {
    const result = parse(value);
    if (!result.ok) return result.reason;
    set(draft, result.value);
    return undefined;
  };
}

function quantity(field: keyof ResourceConfig): AnnotationDefinition['apply'] {
  return (value, draft) => {
    if (quantityValue(value) === undefined) {
      return 'is not a Kubernetes quantity (e.g. 100m, 0.5, 128Mi, 1Gi)';
    }
    draft.resources[field] = value;
    return undefined;
  };
}

const onOff = (b: boolean): string => (b ? '"true"' : '"false"');

/** The proxy's own mount paths: a user's mount may not cover one, or lie under one. */
const OWN_MOUNTS: readonly string[] = Object.values(MOUNT_PATH);

const overlaps = (a: string, b: string): boolean =>
  a === b || a.startsWith(`${b.replace(/\/$/, '')}/`) || b.startsWith(`${a.replace(/\/$/, '')}/`);

/**
 * `[{"name": "db-tls", "mountPath": "/etc/db"}]`: mounts of the Pod's volumes (checked against
 * them by the injector) for mooring-proxy, read-only unless `"readOnly": false`; `subPath` too.
 */
function parseVolumeMounts(value: string): ParseResult<VolumeMount[]> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    return { ok: false, reason: 'is not JSON (a JSON array of {"name", "mountPath"})' };
  }
  if (!Array.isArray(parsed)) return { ok: false, reason: 'must be a JSON array of mounts' };
  const out: VolumeMount[] = [];
  for (const [i, item] of (parsed as unknown[]).entries()) {
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      return { ok: false, reason: `has an entry ${i} that is not an object` };
    }
    const m = item as Record<string, unknown>;
    const extra = Object.keys(m).filter(
      (k) => !['name', 'mountPath', 'readOnly', 'subPath'].includes(k),
    );
    if (extra.length > 0) {
      return { ok: false, reason: `has an entry ${i} with unknown field ${extra.join(', ')}` };
    }
    if (typeof m.name !== 'string' || m.name === '') {
      return { ok: false, reason: `has an entry ${i} without a name (the Pod's volume)` };
    }
    if (typeof m.mountPath !== 'string' || !m.mountPath.startsWith('/')) {
      return { ok: false, reason: `has an entry ${i} whose mountPath is not an absolute path` };
    }
    const mountPath = m.mountPath;
    if (OWN_MOUNTS.some((own) => overlaps(own, mountPath))) {
      return {
        ok: false,
        reason: `mounts ${mountPath} over one of the proxy's own (${OWN_MOUNTS.join(', ')})`,
      };
    }
    if (out.some((o) => o.mountPath === mountPath)) {
      return { ok: false, reason: `mounts ${mountPath} twice` };
    }
    if (m.readOnly !== undefined && typeof m.readOnly !== 'boolean') {
      return { ok: false, reason: `has an entry ${i} whose readOnly is not true or false` };
    }
    if (m.subPath !== undefined && typeof m.subPath !== 'string') {
      return { ok: false, reason: `has an entry ${i} whose subPath is not a string` };
    }
    out.push({
      name: m.name,
      mountPath,
      readOnly: m.readOnly !== false,
      ...(m.subPath === undefined ? {} : { subPath: m.subPath }),
    });
  }
  return { ok: true, value: out };
}

/** Every Pod annotation of PRODUCT.md, in the order of its table. */
export const ANNOTATIONS: readonly AnnotationDefinition[] = [
  {
    key: ANNOTATION.proxyImage,
    values: 'image reference',
    defaultValue: (c) => c.proxyImage,
    effect: 'image of the mooring-proxy container',
    apply: (value, draft) => {
      if (!isImageReference(value)) return 'is not an image reference (e.g. registry/name:tag)';
      draft.proxyImage = value;
      return undefined;
    },
  },
  {
    key: ANNOTATION.cpuRequest,
    values: 'Kubernetes quantity',
    defaultValue: (c) => c.resources.cpuRequest,
    effect: "mooring-proxy's CPU request",
    apply: quantity('cpuRequest'),
  },
  {
    key: ANNOTATION.memoryRequest,
    values: 'Kubernetes quantity',
    defaultValue: (c) => c.resources.memoryRequest,
    effect: "mooring-proxy's memory request",
    apply: quantity('memoryRequest'),
  },
  {
    key: ANNOTATION.cpuLimit,
    values: 'Kubernetes quantity',
    defaultValue: (c) => c.resources.cpuLimit ?? '(none)',
    effect: "mooring-proxy's CPU limit",
    apply: quantity('cpuLimit'),
  },
  {
    key: ANNOTATION.memoryLimit,
    values: 'Kubernetes quantity',
    defaultValue: (c) => c.resources.memoryLimit ?? '(none)',
    effect: "mooring-proxy's memory limit",
    apply: quantity('memoryLimit'),
  },
  {
    key: ANNOTATION.logLevel,
    values: LOG_LEVELS.join(' '),
    defaultValue: (c) => c.logLevel,
    effect: 'log level of the proxy and its agent (MOORING_LOG_LEVEL)',
    apply: (value, draft) => {
      const level = LOG_LEVELS.find((l) => l === value);
      if (level === undefined) return `must be one of ${LOG_LEVELS.join(', ')}`;
      draft.logLevel = level;
      return undefined;
    },
  },
  {
    key: ANNOTATION.nativeSidecar,
    values: '"true" / "false"',
    defaultValue: (c) => onOff(c.nativeSidecar),
    effect:
      'true: mooring-proxy is an init container with restartPolicy: Always (Kubernetes 1.29+); ' +
      'false: a regular container',
    apply: applying(parseBoolean, (d, v) => (d.nativeSidecar = v)),
  },
  {
    key: ANNOTATION.holdApplication,
    values: '"true" / "false"',
    defaultValue: (c) => onOff(c.holdApplication),
    effect:
      'app containers start only once the proxy is ready (native: startup probe; classic: ' +
      'proxy first with a postStart hook)',
    apply: applying(parseBoolean, (d, v) => (d.holdApplication = v)),
  },
  {
    key: ANNOTATION.rewriteProbes,
    values: '"true" / "false"',
    defaultValue: (c) => onOff(c.rewriteProbes),
    effect: 'HTTP/TCP/gRPC probes of app containers go through the agent on 15020',
    apply: applying(parseBoolean, (d, v) => (d.rewriteProbes = v)),
  },
  {
    key: ANNOTATION.userVolumeMount,
    values: 'JSON array of volume mounts',
    defaultValue: () => '(none)',
    effect:
      'volumes of the Pod mounted into mooring-proxy, read-only unless `"readOnly": false` ' +
      "(e.g. the files of a DestinationRule's tls SIMPLE or MUTUAL)",
    apply: applying(parseVolumeMounts, (d, v) => (d.userVolumeMounts = v)),
  },
  {
    key: ANNOTATION.includeOutboundIPRanges,
    values: 'CIDR list or *',
    defaultValue: () => '*',
    effect: 'outbound destinations redirected to the proxy (15001)',
    apply: applying(parseCidrListOrWildcard, (d, v) => (d.traffic.includeOutboundIPRanges = v)),
  },
  {
    key: ANNOTATION.excludeOutboundIPRanges,
    values: 'CIDR list',
    defaultValue: () => '(none)',
    effect: 'outbound destinations never redirected',
    apply: applying(parseCidrList, (d, v) => (d.traffic.excludeOutboundIPRanges = v)),
  },
  {
    key: ANNOTATION.includeInboundPorts,
    values: 'port list or *',
    defaultValue: () => '*',
    effect: 'inbound ports redirected to the proxy (15006)',
    apply: applying(parsePortListOrWildcard, (d, v) => (d.traffic.includeInboundPorts = v)),
  },
  {
    key: ANNOTATION.excludeInboundPorts,
    values: 'port list',
    defaultValue: (c) =>
      `(none; ${c.ports.agent}, ${c.ports.readiness}, ${c.ports.proxyMetrics} always)`,
    effect: 'inbound ports never redirected',
    apply: applying(parsePortList, (d, v) => (d.traffic.excludeInboundPorts = v)),
  },
  {
    key: ANNOTATION.excludeOutboundPorts,
    values: 'port list',
    defaultValue: () => '(none)',
    effect: 'outbound destination ports never redirected',
    apply: applying(parsePortList, (d, v) => (d.traffic.excludeOutboundPorts = v)),
  },
];

const BY_KEY: ReadonlyMap<string, AnnotationDefinition> = new Map(
  ANNOTATIONS.map((a) => [a.key, a]),
);

/** Keys of Mooring's domains that are not registry annotations but are known. */
const OTHER_KNOWN_ANNOTATIONS: readonly string[] = [STATUS_ANNOTATION];

export function defaultSettings(config: InjectorConfig): PodSettings {
  return {
    proxyImage: config.proxyImage,
    resources: { ...config.resources },
    logLevel: config.logLevel,
    nativeSidecar: config.nativeSidecar,
    holdApplication: config.holdApplication,
    rewriteProbes: config.rewriteProbes,
    userVolumeMounts: [],
    traffic: {
      includeInboundPorts: '*',
      excludeInboundPorts: [],
      includeOutboundIPRanges: '*',
      excludeOutboundIPRanges: [],
      excludeOutboundPorts: [],
    },
  };
}

/** `mooring.dev`, `proxy.mooring.dev`, `traffic.mooring.dev`, or any other `*.mooring.dev`. */
export function isMooringKey(key: string): boolean {
  const slash = key.indexOf('/');
  if (slash < 0) return false;
  const domain = key.slice(0, slash);
  return domain === 'mooring.dev' || domain.endsWith('.mooring.dev');
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      current[j] = Math.min(
        (previous[j] ?? 0) + 1,
        (current[j - 1] ?? 0) + 1,
        (previous[j - 1] ?? 0) + cost,
      );
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** The known key closest to `key` when it is close enough to be a typo. */
export function closestKey(key: string, known: readonly string[]): string | undefined {
  let best: { key: string; distance: number } | undefined;
  for (const candidate of known) {
    const distance = editDistance(key, candidate);
    if (best === undefined || distance < best.distance) best = { key: candidate, distance };
  }
  return best !== undefined && best.distance <= Math.max(2, Math.floor(key.length / 6))
    ? best.key
    : undefined;
}

const ANNOTATION_KEYS: readonly string[] = ANNOTATIONS.map((a) => a.key);

/** Warnings for keys of Mooring's domains that have no effect where they are. */
export function keyWarnings(
  annotations: Readonly<Record<string, unknown>>,
  labels: Readonly<Record<string, unknown>>,
): string[] {
  const warnings: string[] = [];
  for (const key of Object.keys(annotations)) {
    if (!isMooringKey(key) || BY_KEY.has(key) || OTHER_KNOWN_ANNOTATIONS.includes(key)) continue;
    if (key === INJECT_LABEL) {
      warnings.push(
        `annotation ${INJECT_LABEL} has no effect: ${INJECT_LABEL} is read from the Pod's labels`,
      );
      continue;
    }
    const guess = closestKey(key, ANNOTATION_KEYS);
    warnings.push(
      `unknown annotation ${key} is ignored` +
        (guess === undefined ? '' : ` (did you mean ${guess}?)`),
    );
  }
  for (const key of Object.keys(labels)) {
    if (!isMooringKey(key) || key === INJECT_LABEL) continue;
    if (BY_KEY.has(key)) {
      warnings.push(`label ${key} has no effect: ${key} is read from the Pod's annotations`);
    } else if (closestKey(key, [INJECT_LABEL]) !== undefined) {
      warnings.push(`unknown label ${key} is ignored (did you mean ${INJECT_LABEL}?)`);
    }
  }
  return warnings;
}

/** One invalid key, as `key: "value": reason`. */
export const describeInvalid = (key: string, value: unknown, reason: string): string =>
  `${key}: ${JSON.stringify(value)} ${reason}`;

/** Throws INJ_ERR_ANNOTATION listing every problem (each names its key and value). */
export function invalidAnnotations(problems: readonly string[]): MooringError {
  const message =
    problems.length === 1
      ? `invalid annotation ${problems[0] ?? ''}`
      : `invalid annotations: ${problems.join('; ')}`;
  return new MooringError('INJ_ERR_ANNOTATION', message, { details: problems });
}

function checkRequestBelowLimit(
  annotations: Readonly<Record<string, unknown>>,
  resources: ResourceConfig,
  resource: 'cpu' | 'memory',
): string | undefined {
  const request = resource === 'cpu' ? resources.cpuRequest : resources.memoryRequest;
  const limit = resource === 'cpu' ? resources.cpuLimit : resources.memoryLimit;
  if (limit === null) return undefined;
  if ((quantityValue(request) ?? 0) <= (quantityValue(limit) ?? Infinity)) return undefined;
  const requestKey = resource === 'cpu' ? ANNOTATION.cpuRequest : ANNOTATION.memoryRequest;
  const limitKey = resource === 'cpu' ? ANNOTATION.cpuLimit : ANNOTATION.memoryLimit;
  if (annotations[limitKey] !== undefined) {
    return describeInvalid(limitKey, limit, `is below the ${resource} request ${request}`);
  }
  return describeInvalid(
    requestKey,
    request,
    `is above the ${resource} limit ${limit} (raise it with ${limitKey})`,
  );
}

export interface ResolvedSettings {
  readonly settings: PodSettings;
  readonly warnings: readonly string[];
}

/**
 * The Pod's settings: defaults from the configuration, overridden by its annotations. Throws
 * INJ_ERR_ANNOTATION naming every invalid key and value.
 */
export function resolveSettings(
  annotations: Readonly<Record<string, unknown>>,
  labels: Readonly<Record<string, unknown>>,
  config: InjectorConfig,
): ResolvedSettings {
  // defaultSettings builds fresh objects: the draft shares nothing with the frozen config.
  const draft = defaultSettings(config) as Draft;
  const problems: string[] = [];
  for (const definition of ANNOTATIONS) {
    const value = annotations[definition.key];
    if (value === undefined) continue;
    if (typeof value !== 'string') {
      problems.push(
        describeInvalid(definition.key, value, 'must be a string (quote it in YAML: "…")'),
      );
      continue;
    }
    const reason = definition.apply(value, draft);
    if (reason !== undefined) problems.push(describeInvalid(definition.key, value, reason));
  }
  if (problems.length === 0) {
    for (const resource of ['cpu', 'memory'] as const) {
      const problem = checkRequestBelowLimit(annotations, draft.resources, resource);
      if (problem !== undefined) problems.push(problem);
    }
  }
  if (problems.length > 0) throw invalidAnnotations(problems);
  return { settings: draft, warnings: keyWarnings(annotations, labels) };
}

/** The README table row of each annotation, with the defaults of `config`. */
export function annotationTable(config: InjectorConfig): string {
  const rows = ANNOTATIONS.map(
    (a) => `| \`${a.key}\` | ${a.values} | ${a.defaultValue(config)} | ${a.effect} |`,
  );
  return ['| annotation | values | default | effect |', '|---|---|---|---|', ...rows].join('\n');
}

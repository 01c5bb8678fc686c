// Injection into whatever `mooring inject` reads: a Pod, the Pod template of a workload
// (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, ReplicationController; CronJob's
// jobTemplate), or a List of them. Other kinds pass through unchanged. For a workload, the keys
// are read from the Pod template's labels and annotations, where the Pods get them from.

import type { Operation } from 'fast-json-patch';
import type { Config } from '../config/types';
import { INJECT_LABEL } from '../constants';
import { isMooringError, MooringError } from '../errors';
import { ANNOTATIONS } from './annotations';
import { inject, type InjectOutcome } from './inject';
import { createPatch, namedArraysAt, type PathSegments } from './patch';
import { assertPod, isObject, type Pod } from './pod';

/** Where each workload kind keeps its Pod template. */
export const TEMPLATE_PATHS: Readonly<Record<string, PathSegments>> = {
  Deployment: ['spec', 'template'],
  StatefulSet: ['spec', 'template'],
  DaemonSet: ['spec', 'template'],
  ReplicaSet: ['spec', 'template'],
  Job: ['spec', 'template'],
  ReplicationController: ['spec', 'template'],
  CronJob: ['spec', 'jobTemplate', 'spec', 'template'],
};

export interface WorkloadContext {
  readonly config: Config;
  readonly version: string;
  /** The namespace of objects that name none (default `default`, like kubectl). */
  readonly defaultNamespace?: string;
}

export interface WorkloadReport {
  readonly kind: string;
  readonly namespace: string;
  /** The name, `<generateName>*`, or `(unnamed)`. */
  readonly name: string;
  /** `unchanged`: a kind that has no Pod template. */
  readonly outcome: InjectOutcome | { readonly action: 'unchanged' };
  /** Warnings about the object itself (keys set where they have no effect). */
  readonly warnings: readonly string[];
}

export interface WorkloadResult {
  /** The injected object; the input itself when nothing changed. */
  readonly object: unknown;
  readonly changed: boolean;
  /** The JSONPatch from the input to `object` (empty when nothing changed). */
  readonly patch: Operation[];
  /** One report per Pod or workload met, Lists flattened, in document order. */
  readonly reports: readonly WorkloadReport[];
}

type JsonObject = Record<string, unknown>;

const text = (value: unknown): string | undefined =>
  typeof value === 'string' && value !== '' ? value : undefined;

function identity(obj: JsonObject, defaultNamespace: string): { name: string; namespace: string } {
  const metadata = isObject(obj.metadata) ? obj.metadata : {};
  const generated = text(metadata.generateName);
  return {
    name: text(metadata.name) ?? (generated === undefined ? '(unnamed)' : `${generated}*`),
    namespace: text(metadata.namespace) ?? defaultNamespace,
  };
}

/** Keys set on a workload's own metadata, where Pods never see them. */
function misplacedKeyWarnings(obj: JsonObject, kind: string, templatePath: PathSegments): string[] {
  const metadata = isObject(obj.metadata) ? obj.metadata : {};
  const annotations = isObject(metadata.annotations) ? metadata.annotations : {};
  const labels = isObject(metadata.labels) ? metadata.labels : {};
  const where = `${templatePath.join('.')}.metadata`;
  const warnings = ANNOTATIONS.filter((a) => annotations[a.key] !== undefined).map(
    (a) =>
      `annotation ${a.key} on the ${kind} itself has no effect: set it in ${where}.annotations`,
  );
  if (labels[INJECT_LABEL] !== undefined) {
    warnings.push(
      `label ${INJECT_LABEL} on the ${kind} itself has no effect: set it in ${where}.labels`,
    );
  }
  return warnings;
}

/** Prefixes an injection error with the object it is about. */
function about(err: unknown, kind: string, namespace: string, name: string): unknown {
  if (!isMooringError(err)) return err;
  return new MooringError(err.code, `${kind} ${namespace}/${name}: ${err.message}`, {
    cause: err,
    details: err.details,
  });
}

interface Visit {
  readonly ctx: WorkloadContext;
  readonly defaultNamespace: string;
  readonly reports: WorkloadReport[];
  /** The named arrays of every injected Pod or template, for the patch. */
  readonly namedArrays: PathSegments[];
}

function injectAt(
  obj: JsonObject,
  pod: Pod,
  path: PathSegments,
  visit: Visit,
  warnings: readonly string[],
): InjectOutcome {
  const kind = typeof obj.kind === 'string' ? obj.kind : 'Pod';
  const { name, namespace } = identity(obj, visit.defaultNamespace);
  let outcome: InjectOutcome;
  try {
    assertPod(pod, path.length === 0 ? 'the Pod' : path.join('.'));
    outcome = inject(pod, { config: visit.ctx.config, version: visit.ctx.version, namespace });
  } catch (err) {
    throw about(err, kind, namespace, name);
  }
  visit.reports.push({ kind, name, namespace, outcome, warnings });
  return outcome;
}

function visitObject(obj: unknown, path: PathSegments, visit: Visit): unknown {
  if (!isObject(obj)) return obj;
  const kind = typeof obj.kind === 'string' ? obj.kind : '';
  if (Array.isArray(obj.items) && (kind === 'List' || kind.endsWith('List'))) {
    const items: unknown[] = obj.items;
    const out = items.map((item, i) => visitObject(item, [...path, 'items', i], visit));
    return out.some((item, i) => item !== items[i]) ? { ...obj, items: out } : obj;
  }
  if (kind === 'Pod') {
    const outcome = injectAt(obj, obj as Pod, [], visit, []);
    if (outcome.action !== 'injected') return obj;
    visit.namedArrays.push(...namedArraysAt(path));
    return outcome.pod;
  }
  const templatePath = TEMPLATE_PATHS[kind];
  if (templatePath === undefined) {
    const { name, namespace } = identity(obj, visit.defaultNamespace);
    visit.reports.push({ kind, name, namespace, outcome: { action: 'unchanged' }, warnings: [] });
    return obj;
  }
  const template = templatePath.reduce<unknown>(
    (node, key) => (isObject(node) ? node[key as string] : undefined),
    obj,
  );
  if (!isObject(template)) {
    const { name, namespace } = identity(obj, visit.defaultNamespace);
    throw new MooringError(
      'INJ_ERR_INPUT',
      `${kind} ${namespace}/${name}: ${templatePath.join('.')} must be an object`,
    );
  }
  const pod = { metadata: template.metadata, spec: template.spec } as Pod;
  const outcome = injectAt(
    obj,
    pod,
    templatePath,
    visit,
    misplacedKeyWarnings(obj, kind, templatePath),
  );
  if (outcome.action !== 'injected') return obj;
  visit.namedArrays.push(...namedArraysAt([...path, ...templatePath]));
  // A template without metadata gets it first, where people expect to read it.
  const { metadata, spec } = outcome.pod;
  const injected: JsonObject = { metadata, ...template };
  injected.metadata = metadata;
  injected.spec = spec;
  return replaceAt(obj, templatePath, injected);
}

function replaceAt(obj: JsonObject, path: PathSegments, value: unknown): JsonObject {
  const [head, ...rest] = path;
  if (head === undefined) return obj;
  const key = String(head);
  const child = obj[key];
  return {
    ...obj,
    [key]: rest.length === 0 || !isObject(child) ? value : replaceAt(child, rest, value),
  };
}

/**
 * Injects every Pod and Pod template in `obj` (Lists recursively). Throws INJ_ERR_ANNOTATION
 * (invalid annotation) or INJ_ERR_INPUT (a workload without a Pod template), each naming the
 * object.
 */
export function injectWorkload(obj: unknown, ctx: WorkloadContext): WorkloadResult {
  const visit: Visit = {
    ctx,
    defaultNamespace: ctx.defaultNamespace ?? 'default',
    reports: [],
    namedArrays: [],
  };
  const object = visitObject(obj, [], visit);
  const changed = object !== obj;
  return {
    object,
    changed,
    patch: changed ? createPatch(obj as object, object as object, visit.namedArrays) : [],
    reports: visit.reports,
  };
}

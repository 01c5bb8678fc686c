// Local mode's mesh (`mooring serve --mesh-dir DIR`): the objects of each file, then of the
// whole directory. A file is YAML (several documents) or JSON; a document is an object or a
// `List` (also `ServiceList` and the like, whose items may leave out their kind). Every object
// goes through validateMeshObject, as the apiserver's objects do.
//
// What is wrong is reported with the file, kind, name and field, and skipped; the rest keeps
// working. An object that was valid before and is now invalid keeps its last valid version (an
// edit with a typo never takes a Service or a STRICT policy away); a file that is not YAML at all
// keeps every object it last gave. An object defined in two files is taken from the first in
// name order. Pure: the adapter (src/adapters/mesh-dir.ts) reads the files.

import { parseManifests } from '../injector/manifests';
import { yamlErrorSummary } from '../json';
import { MESH_KINDS, refKey, refOf, type MeshKind, type MeshObject } from './objects';
import { validateMeshObject, type FieldProblem, type ObjectIdentity } from './validate';

export type ProblemEffect = 'skipped' | 'kept-last-valid' | 'field-ignored';

/** One thing wrong with one object, as the log line and the debug view show it. */
export interface ObjectProblem {
  /** The file it comes from, or `cluster`. */
  readonly source: string;
  readonly kind: string;
  readonly namespace: string;
  readonly name: string;
  /** The field (`spec.ports[0].port`), '' for the object or the file as a whole. */
  readonly field: string;
  readonly message: string;
  readonly effect: ProblemEffect;
}

export interface FileObjects {
  /** By refKey: the valid objects of the file, and kept last-valid versions. */
  readonly objects: ReadonlyMap<string, MeshObject>;
  readonly problems: readonly ObjectProblem[];
  /** Objects of kinds the mesh does not read, as `Kind namespace/name`. */
  readonly ignored: readonly string[];
}

export const MESH_FILE_EXTENSIONS = ['.yaml', '.yml', '.json'] as const;

export const isMeshFile = (name: string): boolean =>
  !name.startsWith('.') && MESH_FILE_EXTENSIONS.some((ext) => name.endsWith(ext));

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** The objects of one parsed document: itself, or the items of a List. */
function flatten(doc: unknown): unknown[] {
  if (!isObject(doc) || typeof doc.kind !== 'string' || !doc.kind.endsWith('List')) return [doc];
  if (!Array.isArray(doc.items)) return [doc];
  const itemKind = doc.kind === 'List' ? null : doc.kind.slice(0, -'List'.length);
  const items: unknown[] = doc.items;
  return items.map((item) =>
    itemKind !== null && isObject(item) && item.kind === undefined
      ? { apiVersion: doc.apiVersion, kind: itemKind, ...item }
      : item,
  );
}

function parse(file: string, text: string): unknown[] {
  if (file.endsWith('.json')) {
    const value = JSON.parse(text) as unknown;
    return value === null ? [] : flatten(value);
  }
  return parseManifests(text).flatMap(flatten);
}

const problemsOf = (
  source: string,
  identity: Pick<ObjectIdentity, 'kind' | 'namespace' | 'name'>,
  list: readonly FieldProblem[],
  effect: ProblemEffect,
): ObjectProblem[] =>
  list.map((p) => ({
    source,
    kind: identity.kind,
    namespace: identity.namespace,
    name: identity.name,
    field: p.field,
    message: p.message,
    effect,
  }));

/**
 * The objects of one file from its text; `previous` is what the file gave last time (null for
 * a new file): it supplies the last valid version of an object that became invalid.
 */
export function readMeshFile(
  file: string,
  text: string,
  previous: FileObjects | null,
  defaultNamespace = 'default',
): FileObjects {
  let raws: unknown[];
  try {
    raws = parse(file, text);
  } catch (err) {
    const kept = previous !== null && previous.objects.size > 0;
    const problem: ObjectProblem = {
      source: file,
      kind: '',
      namespace: '',
      name: '',
      field: '',
      message: `not valid ${file.endsWith('.json') ? 'JSON' : 'YAML or JSON'}: ${yamlErrorSummary(err).replace(/^document \d+ is not valid YAML or JSON: /, '')}${kept ? '; keeping the objects it last gave' : ''}`,
      effect: kept ? 'kept-last-valid' : 'skipped',
    };
    return {
      objects: previous?.objects ?? new Map(),
      problems: [problem],
      ignored: previous?.ignored ?? [],
    };
  }
  const objects = new Map<string, MeshObject>();
  const problems: ObjectProblem[] = [];
  const ignored: string[] = [];
  for (const raw of raws) {
    const v = validateMeshObject(raw, defaultNamespace);
    if (v.status === 'ignored') {
      ignored.push(`${v.identity.kind} ${v.identity.namespace}/${v.identity.name}`);
      continue;
    }
    if (v.status === 'valid') {
      const ref = refOf(v.object);
      const key = refKey(ref);
      if (objects.has(key)) {
        problems.push(
          ...problemsOf(
            file,
            ref,
            [
              {
                field: 'metadata.name',
                message: 'is defined twice in this file: the first one is used',
              },
            ],
            'skipped',
          ),
        );
        continue;
      }
      objects.set(key, v.object);
      problems.push(...problemsOf(file, ref, v.warnings, 'field-ignored'));
      continue;
    }
    const kind = MESH_KINDS.find((k) => k === v.identity.kind);
    const key =
      kind === undefined || v.identity.name === ''
        ? null
        : refKey({
            kind: kind satisfies MeshKind,
            namespace: v.identity.namespace,
            name: v.identity.name,
          });
    const last = key === null ? undefined : previous?.objects.get(key);
    if (key !== null && last !== undefined && !objects.has(key)) {
      objects.set(key, last);
      problems.push(...problemsOf(file, v.identity, v.problems, 'kept-last-valid'));
    } else {
      problems.push(...problemsOf(file, v.identity, v.problems, 'skipped'));
    }
  }
  return { objects, problems, ignored };
}

/** The objects of every file (in name order: the first file that defines an object gives it). */
export function mergeMeshFiles(files: readonly (readonly [string, FileObjects])[]): {
  readonly objects: Map<string, MeshObject>;
  readonly problems: ObjectProblem[];
} {
  const objects = new Map<string, MeshObject>();
  const from = new Map<string, string>();
  const problems: ObjectProblem[] = [];
  const sorted = [...files].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  for (const [file, result] of sorted) {
    problems.push(...result.problems);
    for (const [key, obj] of result.objects) {
      const first = from.get(key);
      if (first !== undefined) {
        problems.push(
          ...problemsOf(
            file,
            refOf(obj),
            [{ field: 'metadata.name', message: `is also defined in ${first}, which is used` }],
            'skipped',
          ),
        );
        continue;
      }
      objects.set(key, obj);
      from.set(key, file);
    }
  }
  return { objects, problems };
}

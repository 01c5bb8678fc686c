// Local mode's mesh (`mooring serve --mesh-dir DIR`): the objects of each file, then of the
// whole directory. A file is YAML (several documents) or JSON; a document is an object or a
// `List` (also `ServiceList` and the like, whose items may leave out their kind). Every object
// goes through validateMeshObject, as the apiserver's objects do.
//
// What is wrong is reported with the file, kind, name and field, and skipped; the rest keeps
// working. An object that was valid before and is now invalid keeps its last valid version (an
// edit with a typo never takes a Service or a STRICT policy away), but an invalid
// AuthorizationPolicy, which stands in closed instead (the validator's `failClosed`); a file that
// is not YAML at all keeps every object it last gave. An object defined in two files is taken
// from the first in name order. Pure: the adapter (src/adapters/mesh-dir.ts) reads the files.

import { parseManifests } from '../injector/manifests';
import { yamlErrorSummary } from '../json';
import {
  MESH_KINDS,
  refKey,
  refOf,
  type MeshKind,
  type MeshObject,
  type ObjectRef,
} from './objects';
import { validateMeshObject, type FieldProblem, type ObjectIdentity } from './validate';

/**
 * What became of an object with problems: `fail-closed` is an invalid AuthorizationPolicy, which
 * stands in closed (the validator's `failClosed`) instead of being skipped or kept.
 */
export type ProblemEffect = 'skipped' | 'kept-last-valid' | 'field-ignored' | 'fail-closed';

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
    if (key !== null && v.failClosed !== undefined && !objects.has(key)) {
      // Dropping it, or keeping its last valid version, would open what it closes.
      objects.set(key, v.failClosed);
      problems.push(...problemsOf(file, v.identity, v.problems, 'fail-closed'));
      continue;
    }
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

/**
 * The objects of every file of the directory, kept up to date file by file: the first file (by
 * name) that defines an object gives it; a later definition is reported and skipped. A change of
 * one file tells which objects to put into the model or take out of it, without going over the
 * objects of the other files.
 */
export class MeshFileSet {
  private readonly files = new Map<string, FileObjects>();
  /** The files that define each object (refKey). */
  private readonly definers = new Map<string, Set<string>>();

  /** Sets (or, with null, removes) the objects of a file; returns what the model must do. */
  setFile(
    file: string,
    result: FileObjects | null,
  ): { readonly upserts: MeshObject[]; readonly removes: ObjectRef[] } {
    const old = this.files.get(file);
    const affected = new Map<string, ObjectRef>();
    for (const [key, obj] of old?.objects ?? []) {
      affected.set(key, refOf(obj));
      this.definers.get(key)?.delete(file);
    }
    if (result === null) this.files.delete(file);
    else this.files.set(file, result);
    for (const [key, obj] of result?.objects ?? []) {
      affected.set(key, refOf(obj));
      let set = this.definers.get(key);
      if (set === undefined) this.definers.set(key, (set = new Set()));
      set.add(file);
    }
    const upserts: MeshObject[] = [];
    const removes: ObjectRef[] = [];
    for (const [key, ref] of affected) {
      const obj = this.objectOf(key);
      if (obj === undefined) {
        this.definers.delete(key);
        removes.push(ref);
      } else {
        upserts.push(obj);
      }
    }
    return { upserts, removes };
  }

  /** The file that gives an object: the first by name among those that define it. */
  private winner(key: string): string | undefined {
    let first: string | undefined;
    for (const file of this.definers.get(key) ?? [])
      if (first === undefined || file < first) first = file;
    return first;
  }

  private objectOf(key: string): MeshObject | undefined {
    const file = this.winner(key);
    return file === undefined ? undefined : this.files.get(file)?.objects.get(key);
  }

  fileNames(): string[] {
    return [...this.files.keys()].sort();
  }

  /** Every object given, by refKey. */
  objects(): Map<string, MeshObject> {
    const out = new Map<string, MeshObject>();
    for (const key of this.definers.keys()) {
      const obj = this.objectOf(key);
      if (obj !== undefined) out.set(key, obj);
    }
    return out;
  }

  size(): number {
    return this.definers.size;
  }

  /** The problems of every file, then the objects defined twice. */
  problems(): ObjectProblem[] {
    const problems: ObjectProblem[] = [];
    for (const file of this.fileNames()) problems.push(...(this.files.get(file)?.problems ?? []));
    for (const [key, files] of this.definers) {
      if (files.size < 2) continue;
      const first = this.winner(key) ?? '';
      const obj = this.objectOf(key);
      if (obj === undefined) continue;
      for (const file of [...files].sort()) {
        if (file === first) continue;
        problems.push(
          ...problemsOf(
            file,
            refOf(obj),
            [{ field: 'metadata.name', message: `is also defined in ${first}, which is used` }],
            'skipped',
          ),
        );
      }
    }
    return problems;
  }
}

/** The objects of every file at once (in name order: the first file that defines an object gives it). */
export function mergeMeshFiles(files: readonly (readonly [string, FileObjects])[]): {
  readonly objects: Map<string, MeshObject>;
  readonly problems: ObjectProblem[];
} {
  const set = new MeshFileSet();
  for (const [file, result] of files) set.setFile(file, result);
  return { objects: set.objects(), problems: set.problems() };
}

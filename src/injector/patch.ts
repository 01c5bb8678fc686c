// The JSONPatch of an injection: the diff of the original and the mutated object (fast-json-patch
// `compare`), with metadata.managedFields out of it.
//
// `compare` diffs arrays index by index. Inserting mooring-proxy before an app container (or
// mooring-init before other init containers) would then "replace" every field of every shifted
// element: a Pod with 1,500 environment variables would get a patch of 1,500 variables. So the
// arrays of named elements (containers, init containers, volumes) are aligned by name first: each
// element is diffed with its namesake (`compare` again), and the new ones are added whole at
// their final index. The patch is then as small as the change, whatever the size of the Pod.

import { compare, escapePathComponent, type Operation } from 'fast-json-patch';
import { isObject } from './pod';

export type PathSegments = readonly (string | number)[];

/** The arrays of named elements of a Pod, aligned by name in its patch. */
export const POD_NAMED_ARRAYS: readonly PathSegments[] = [
  ['spec', 'initContainers'],
  ['spec', 'containers'],
  ['spec', 'volumes'],
];

/** `prefix` + each Pod path: the named arrays of a Pod template inside a workload. */
export function namedArraysAt(prefix: PathSegments): PathSegments[] {
  return POD_NAMED_ARRAYS.map((path) => [...prefix, ...path]);
}

const pointer = (path: PathSegments): string =>
  path.map((s) => `/${escapePathComponent(String(s))}`).join('');

function valueAt(root: unknown, path: PathSegments): unknown {
  let node = root;
  for (const segment of path) {
    if (Array.isArray(node) && typeof segment === 'number') node = (node as unknown[])[segment];
    else if (isObject(node) && typeof segment === 'string') node = node[segment];
    else return undefined;
  }
  return node;
}

/** A copy of `root` with `value` at `path` (shallow copies along the path only). */
function withValueAt(root: unknown, path: PathSegments, value: unknown): unknown {
  const [head, ...rest] = path;
  if (head === undefined) return value;
  if (Array.isArray(root) && typeof head === 'number') {
    const items: readonly unknown[] = root;
    return items.map((item, i) => (i === head ? withValueAt(item, rest, value) : item));
  }
  if (isObject(root) && typeof head === 'string') {
    return { ...root, [head]: withValueAt(root[head], rest, value) };
  }
  return root;
}

/** The object without metadata.managedFields (a shallow copy when there are some). */
function withoutManagedFields(root: unknown): unknown {
  if (!isObject(root) || !isObject(root.metadata) || !('managedFields' in root.metadata)) {
    return root;
  }
  const { managedFields: _dropped, ...metadata } = root.metadata;
  return { ...root, metadata };
}

function nameOf(element: unknown): string | undefined {
  return isObject(element) && typeof element.name === 'string' ? element.name : undefined;
}

/** Element names, or undefined when one has no name or two share one. */
function names(elements: readonly unknown[]): string[] | undefined {
  const out = elements.map(nameOf);
  if (out.some((n) => n === undefined)) return undefined;
  const known = out as string[];
  return new Set(known).size === known.length ? known : undefined;
}

/**
 * The operations that turn `before` into `after` when `after` holds every element of `before`
 * (by name, in the same order) plus new ones: the changes of each kept element at its original
 * index, then each new element added whole, in ascending final index. Undefined when the arrays
 * cannot be aligned so (an element removed or reordered): `compare` then diffs them.
 */
function diffNamedArray(
  at: string,
  before: readonly unknown[],
  after: readonly unknown[],
): Operation[] | undefined {
  const beforeNames = names(before);
  const afterNames = names(after);
  if (beforeNames === undefined || afterNames === undefined) return undefined;
  const position = new Map(afterNames.map((name, i) => [name, i]));
  let last = -1;
  for (const name of beforeNames) {
    const i = position.get(name);
    if (i === undefined || i <= last) return undefined;
    last = i;
  }
  const ops: Operation[] = [];
  beforeNames.forEach((name, i) => {
    const j = position.get(name) as number;
    for (const op of compare(before[i] as object, after[j] as object)) {
      ops.push({ ...op, path: `${at}/${i}${op.path}` });
    }
  });
  const kept = new Set(beforeNames);
  afterNames.forEach((name, j) => {
    if (!kept.has(name)) ops.push({ op: 'add', path: `${at}/${j}`, value: after[j] });
  });
  return ops;
}

/**
 * The JSONPatch from `original` to `mutated`, managedFields excluded, with the arrays at
 * `namedArrays` aligned by element name. Applying it to `original` gives `mutated` (apart from
 * managedFields, which it never touches). The values of the operations that add elements are the
 * elements of `mutated` themselves, not copies: treat the patch as read-only.
 */
export function createPatch(
  original: object,
  mutated: object,
  namedArrays: readonly PathSegments[] = POD_NAMED_ARRAYS,
): Operation[] {
  const before = withoutManagedFields(original) as object;
  let after = withoutManagedFields(mutated) as object;
  const arrayOps: Operation[] = [];
  for (const path of namedArrays) {
    const from = valueAt(before, path);
    const to = valueAt(after, path);
    if (!Array.isArray(to)) continue;
    if (from === undefined && isObject(valueAt(before, path.slice(0, -1)))) {
      // A new array: added whole (compare would add it too, after a deep copy of it).
      arrayOps.push({ op: 'add', path: pointer(path), value: to });
      after = withValueAt(after, path, undefined) as object;
      continue;
    }
    if (!Array.isArray(from)) continue;
    const ops = diffNamedArray(pointer(path), from, to);
    if (ops === undefined) continue;
    arrayOps.push(...ops);
    // The aligned array is done: `compare` now sees the same array on both sides and skips it.
    after = withValueAt(after, path, from) as object;
  }
  return [...arrayOps, ...compare(before, after)];
}

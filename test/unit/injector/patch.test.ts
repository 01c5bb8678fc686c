import fc from 'fast-check';
import { applyPatch, compare, deepClone, type Operation } from 'fast-json-patch';
import { validateConfig } from '../../../src/config/validate';
import { ANNOTATION } from '../../../src/constants';
import { inject, type InjectionContext } from '../../../src/injector/inject';
import { createPatch } from '../../../src/injector/patch';
import type { Pod } from '../../../src/injector/pod';
import {
  container,
  largeEnvPod,
  pod,
  withAnnotation,
  withContainer,
  withContainers,
  withEnvVars,
  withInitContainer,
  withManagedFields,
  withPort,
  withProbe,
  httpGet,
  withVolume,
} from '../../fixtures/pods';

const ctx: InjectionContext = { config: validateConfig({}), namespace: 'shop', version: '1.0.0' };

function patchOf(p: Pod, context: InjectionContext = ctx): Operation[] {
  const outcome = inject(p, context);
  if (outcome.action !== 'injected') throw new Error(`not injected: ${outcome.reason}`);
  return outcome.patch;
}

const size = (ops: Operation[]): number => JSON.stringify(ops).length;

/** The same Pod shape with `vars` environment variables in each of two app containers. */
const podWithEnv = (vars: number, ...mods: Parameters<typeof pod>[1][]): Pod =>
  pod(
    'app',
    withContainers(
      container(
        'app',
        withPort(8080, 'http'),
        withEnvVars(vars),
        withProbe('readinessProbe', httpGet('http')),
      ),
      container('worker', withEnvVars(vars, 'W')),
    ),
    withInitContainer(container('setup', withEnvVars(vars, 'S'))),
    ...mods,
  );

describe('createPatch', () => {
  it('gives a Pod with 1,500 environment variables the same patch as a small Pod', () => {
    const small = patchOf(
      pod(
        'large-env',
        withContainers(
          container(
            'app',
            withPort(8080, 'http'),
            withEnvVars(1),
            withProbe('readinessProbe', httpGet('http', '/ready')),
          ),
        ),
      ),
    );
    const large = patchOf(largeEnvPod());
    expect(size(large)).toBeLessThan(size(small) * 1.05);
    expect(size(large)).toBeLessThan(10_000);
  });

  it.each([
    ['native (default)', []],
    [
      'classic with hold: the proxy is prepended to containers',
      [withAnnotation(ANNOTATION.nativeSidecar, 'false')],
    ],
    [
      'classic without hold',
      [
        withAnnotation(ANNOTATION.nativeSidecar, 'false'),
        withAnnotation(ANNOTATION.holdApplication, 'false'),
      ],
    ],
  ])('does not grow with the environment of shifted containers: %s', (_name, mods) => {
    const small = patchOf(podWithEnv(2, ...mods));
    const large = patchOf(podWithEnv(1500, ...mods));
    // Only the variable names' length differs between the two; the app's env is never in the patch.
    expect(size(large)).toBe(size(small));
    expect(JSON.stringify(large)).not.toContain('VAR_0001');
    expect(JSON.stringify(large)).not.toContain('/env/');
  });

  it('is far smaller than the index-wise diff of fast-json-patch alone (classic hold)', () => {
    const original = podWithEnv(1500, withAnnotation(ANNOTATION.nativeSidecar, 'false'));
    const outcome = inject(original, ctx);
    if (outcome.action !== 'injected') throw new Error('not injected');
    const naive = compare(original, outcome.pod);
    expect(size(naive)).toBeGreaterThan(20 * size(outcome.patch));
  });

  it('adds new elements whole and changes kept ones in place', () => {
    const original = podWithEnv(3, withAnnotation(ANNOTATION.nativeSidecar, 'false'));
    const ops = patchOf(original);
    const paths = ops.map((op) => `${op.op} ${op.path}`);
    expect(paths).toEqual(
      expect.arrayContaining([
        'add /spec/containers/0',
        'add /spec/initContainers/1',
        'add /spec/volumes',
        'replace /spec/containers/0/readinessProbe/httpGet/port',
      ]),
    );
    // The app's probe change is addressed at its original index, before the proxy is inserted.
    const probeOp = paths.indexOf('replace /spec/containers/0/readinessProbe/httpGet/port');
    expect(probeOp).toBeLessThan(paths.indexOf('add /spec/containers/0'));
  });

  it('leaves managedFields out of the patch, even when they differ', () => {
    const original = pod('web', withManagedFields());
    const mutated = deepClone(original) as Pod;
    (mutated.metadata as { managedFields: unknown[] }).managedFields = [];
    (mutated.metadata as { labels: Record<string, string> }).labels.extra = 'yes';
    const ops = createPatch(original, mutated);
    expect(ops).toEqual([{ op: 'add', path: '/metadata/labels/extra', value: 'yes' }]);
  });

  it('falls back to an index-wise diff when an element was removed or reordered', () => {
    const original = pod('web', withContainer(container('b')), withContainer(container('c')));
    const mutated = deepClone(original) as Pod;
    mutated.spec.containers.reverse();
    const ops = createPatch(original, mutated);
    expect(applyPatch(deepClone(original), ops).newDocument).toEqual(mutated);
  });

  it('escapes keys in paths (annotations with slashes)', () => {
    const original = pod('web');
    const outcome = inject(original, ctx);
    const paths = outcome.action === 'injected' ? outcome.patch.map((op) => op.path) : [];
    expect(paths).toContain('/metadata/annotations');
    const withAnnotations = pod('web', withAnnotation('a', 'b'));
    const more = patchOf(withAnnotations).map((op) => op.path);
    expect(more).toContain('/metadata/annotations/mooring.dev~1status');
  });

  // Any insertion of new named elements into the named arrays, plus changes to kept elements:
  // the patch applied to the original gives the mutated object.
  it('patch applied to the original gives the mutated object, for arbitrary insertions', () => {
    const names = fc.uniqueArray(fc.stringMatching(/^[a-z]{1,6}$/), { minLength: 0, maxLength: 6 });
    fc.assert(
      fc.property(
        names,
        names,
        fc.array(fc.nat(), { maxLength: 6 }),
        fc.boolean(),
        (kept, added, positions, change) => {
          const fresh = added.filter((n) => !kept.includes(n)).map((n) => `new-${n}`);
          const before = kept.map((name) => ({ name, env: [{ name: 'A', value: name }] }));
          const after = deepClone(before) as { name: string; env?: unknown[]; changed?: boolean }[];
          if (change && after[0] !== undefined) after[0].changed = true;
          fresh.forEach((name, i) => {
            const at = (positions[i] ?? 0) % (after.length + 1);
            after.splice(at, 0, { name });
          });
          const original = { spec: { containers: before, volumes: before } };
          const mutated = { spec: { containers: after, volumes: deepClone(before) } };
          const ops = createPatch(original, mutated);
          expect(applyPatch(deepClone(original), ops).newDocument).toEqual(mutated);
          // Kept elements are never re-sent whole.
          const sent = ops.filter((op) => op.op === 'add' && /\/\d+$/.test(op.path)).length;
          expect(sent).toBe(fresh.length);
        },
      ),
    );
  });

  it('patch of an injection applied to the Pod gives the injected Pod, for every mode', () => {
    for (const mods of [
      [],
      [withAnnotation(ANNOTATION.nativeSidecar, 'false')],
      [
        withAnnotation(ANNOTATION.nativeSidecar, 'false'),
        withAnnotation(ANNOTATION.holdApplication, 'false'),
      ],
      [withAnnotation(ANNOTATION.holdApplication, 'false')],
    ]) {
      const original = podWithEnv(
        5,
        withManagedFields(),
        withVolume({ name: 'data', emptyDir: {} }),
        ...mods,
      );
      const outcome = inject(original, ctx);
      if (outcome.action !== 'injected') throw new Error('not injected');
      expect(applyPatch(deepClone(original), outcome.patch).newDocument).toEqual(outcome.pod);
    }
  });
});

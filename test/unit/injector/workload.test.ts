import { applyPatch, deepClone } from 'fast-json-patch';
import { validateConfig } from '../../../src/config/validate';
import { ANNOTATION, INJECT_LABEL, PROXY_CONTAINER_NAME } from '../../../src/constants';
import { isMooringError, type MooringError } from '../../../src/errors';
import { injectManifests } from '../../../src/injector/manifests';
import type { Container } from '../../../src/injector/pod';
import {
  injectWorkload,
  TEMPLATE_PATHS,
  type WorkloadContext,
} from '../../../src/injector/workload';
import {
  cronJob,
  daemonSet,
  deployment,
  job,
  list,
  pod,
  replicaSet,
  replicationController,
  statefulSet,
  withAnnotation,
  withHostNetwork,
  withLabel,
  withSpecField,
  withWorkloadNamespace,
} from '../../fixtures/pods';

const ctx: WorkloadContext = { config: validateConfig({}), version: '1.0.0' };
type Json = Record<string, unknown>;

function at(obj: unknown, path: readonly (string | number)[]): unknown {
  return path.reduce<unknown>((node, key) => (node as Json | undefined)?.[key as string], obj);
}

function thrown(fn: () => unknown): MooringError {
  try {
    fn();
  } catch (err) {
    if (isMooringError(err)) return err;
    throw err;
  }
  throw new Error('did not throw');
}

const allNames = (podSpec: unknown): string[] => {
  const spec = podSpec as { initContainers?: Container[]; containers: Container[] };
  return [...(spec.initContainers ?? []), ...spec.containers].map((c) => c.name);
};

describe('injectWorkload', () => {
  it.each([
    ['Deployment', deployment],
    ['StatefulSet', statefulSet],
    ['DaemonSet', daemonSet],
    ['ReplicaSet', replicaSet],
    ['Job', job],
    ['CronJob', cronJob],
    ['ReplicationController', replicationController],
  ])('injects the Pod template of a %s, and its patch gives the same object', (kind, build) => {
    const workload = withWorkloadNamespace('shop')(
      build(
        'web',
        pod('web', withSpecField('restartPolicy', kind.endsWith('Job') ? 'Never' : 'Always')),
      ),
    );
    const result = injectWorkload(workload, ctx);
    const path = TEMPLATE_PATHS[kind] ?? [];
    expect(allNames(at(result.object, [...path, 'spec']))).toContain(PROXY_CONTAINER_NAME);
    expect(result.reports).toMatchObject([
      { kind, name: 'web', namespace: 'shop', outcome: { action: 'injected' } },
    ]);
    expect(applyPatch(deepClone(workload), result.patch).newDocument).toEqual(result.object);
    expect(result.patch.every((op) => op.path.startsWith(`/${path.join('/')}/`))).toBe(true);
    // Only the template changed.
    expect({ ...(result.object as Json), spec: null }).toEqual({ ...workload, spec: null });
  });

  it('injects a bare Pod', () => {
    const result = injectWorkload(pod('web'), ctx);
    expect(result.changed).toBe(true);
    expect(result.reports[0]).toMatchObject({ kind: 'Pod', namespace: 'default', name: 'web' });
  });

  it('reads the keys from the Pod template', () => {
    const template = pod('web', withAnnotation(ANNOTATION.logLevel, 'debug'));
    const result = injectWorkload(deployment('web', template), ctx);
    expect(result.reports[0]?.outcome).toMatchObject({
      action: 'injected',
      summary: { settings: { logLevel: 'debug' } },
    });
  });

  it('warns about keys on the workload itself, which Pods never see', () => {
    const workload = deployment('web', pod('web'));
    workload.metadata = {
      name: 'web',
      labels: { [INJECT_LABEL]: 'false' },
      annotations: { [ANNOTATION.logLevel]: 'debug' },
    };
    const [report] = injectWorkload(workload, ctx).reports;
    expect(report?.warnings).toEqual([
      'annotation proxy.mooring.dev/log-level on the Deployment itself has no effect: set it in spec.template.metadata.annotations',
      'label mooring.dev/inject on the Deployment itself has no effect: set it in spec.template.metadata.labels',
    ]);
  });

  it('passes skipped workloads and other kinds through as the same object', () => {
    for (const obj of [
      deployment('net', pod('net', withHostNetwork())),
      deployment('out', pod('out', withLabel(INJECT_LABEL, 'false'))),
      withWorkloadNamespace('kube-system')(daemonSet('dns', pod('dns'))),
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'web' } },
      { apiVersion: 'v1', kind: 'ConfigMap' },
    ]) {
      const result = injectWorkload(obj, ctx);
      expect(result.object).toBe(obj);
      expect(result.patch).toEqual([]);
    }
  });

  it('injects every item of a List, recursively, and its patch gives the same List', () => {
    const input = list(
      deployment('a', pod('a')),
      { apiVersion: 'v1', kind: 'Service', metadata: { name: 'a' } },
      list(pod('b'), pod('c', withLabel(INJECT_LABEL, 'false'))),
    );
    const result = injectWorkload(input, ctx);
    expect(result.reports.map((r) => [r.kind, r.name, r.outcome.action])).toEqual([
      ['Deployment', 'a', 'injected'],
      ['Service', 'a', 'unchanged'],
      ['Pod', 'b', 'injected'],
      ['Pod', 'c', 'skipped'],
    ]);
    expect(applyPatch(deepClone(input), result.patch).newDocument).toEqual(result.object);
    expect(at(result.object, ['items', 2, 'items', 1])).toBe(at(input, ['items', 2, 'items', 1]));
  });

  it('refuses a workload without a Pod template, naming it', () => {
    const error = thrown(() =>
      injectWorkload(
        { kind: 'Deployment', metadata: { name: 'x', namespace: 'n' }, spec: {} },
        ctx,
      ),
    );
    expect(error.code).toBe('INJ_ERR_INPUT');
    expect(error.message).toBe('Deployment n/x: spec.template must be an object');
  });

  it('names the workload in an invalid annotation error', () => {
    const error = thrown(() =>
      injectWorkload(
        deployment('web', pod('web', withAnnotation(ANNOTATION.cpuLimit, 'much'))),
        ctx,
      ),
    );
    expect(error.code).toBe('INJ_ERR_ANNOTATION');
    expect(error.message).toBe(
      'Deployment default/web: invalid annotation proxy.mooring.dev/cpu-limit: "much" is not a Kubernetes quantity (e.g. 100m, 0.5, 128Mi, 1Gi)',
    );
  });
});

describe('injectManifests', () => {
  it('reads JSON and multi-document YAML, keeping document order', () => {
    const text = [
      JSON.stringify({ apiVersion: 'v1', kind: 'Service', metadata: { name: 's' } }),
      'apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n    - name: app\n      image: app\n',
      '',
    ].join('\n---\n');
    const result = injectManifests(text, ctx);
    expect(result.documents.map((d) => (d.input as Json).kind)).toEqual(['Service', 'Pod']);
    expect(result.output.split('---\n')).toHaveLength(2);
    expect(result.output).toContain('name: mooring-proxy');
  });

  it('reads YAML as kubectl does: 0644 is octal, timestamps stay strings', () => {
    const text =
      'apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  creationTimestamp: 2025-01-01T00:00:00Z\n' +
      'spec:\n  containers: [{name: app, image: app}]\n  volumes:\n    - name: c\n      configMap: {name: c, defaultMode: 0644}\n';
    const [doc] = injectManifests(text, ctx).documents;
    expect(at(doc?.input, ['spec', 'volumes', 0, 'configMap', 'defaultMode'])).toBe(0o644);
    expect(at(doc?.input, ['metadata', 'creationTimestamp'])).toBe('2025-01-01T00:00:00Z');
  });

  it('refuses text that is not YAML with INJ_ERR_INPUT', () => {
    expect(thrown(() => injectManifests('a: [1, 2\n', ctx)).code).toBe('INJ_ERR_INPUT');
  });

  it('refuses an unquoted boolean annotation as kubectl would', () => {
    const text =
      'apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n    proxy.mooring.dev/native-sidecar: false\n' +
      'spec:\n  containers: [{name: app, image: app}]\n';
    expect(thrown(() => injectManifests(text, ctx)).message).toContain('must be a string');
  });

  it('gives empty output for empty input', () => {
    expect(injectManifests('', ctx).output).toBe('');
    expect(injectManifests('---\n---\n', ctx).output).toBe('');
  });
});

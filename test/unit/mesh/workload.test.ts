import { workloadInfoOf, workloadOf } from '../../../src/mesh/workload';
import type { PodObject } from '../../../src/mesh/objects';
import {
  ownedBy,
  pod,
  valid,
  withField,
  withLabels,
  type Modifier,
} from '../../fixtures/mesh-objects';

const podObject = (name: string, ...mods: Modifier[]): PodObject =>
  valid(pod(name, ...mods)) as PodObject;

describe("a Pod's workload (Istio's GetDeployMetaFromPod)", () => {
  it.each([
    ['a bare Pod is its own workload', podObject('debug'), { kind: 'Pod', name: 'debug' }],
    [
      'a Pod of a Deployment is named after the Deployment (ReplicaSet name less the pod-template-hash)',
      podObject(
        'web-7d4b9c6f5d-x2x9z',
        ownedBy('ReplicaSet', 'web-7d4b9c6f5d'),
        withLabels({ 'pod-template-hash': '7d4b9c6f5d' }),
      ),
      { kind: 'Deployment', name: 'web' },
    ],
    [
      'a Pod of a bare ReplicaSet (no pod-template-hash) is named after the ReplicaSet',
      podObject('cache-abcde', ownedBy('ReplicaSet', 'cache')),
      { kind: 'ReplicaSet', name: 'cache' },
    ],
    [
      'a ReplicaSet whose name does not end with the hash keeps its name',
      podObject('x-1', ownedBy('ReplicaSet', 'other'), withLabels({ 'pod-template-hash': 'abc' })),
      { kind: 'ReplicaSet', name: 'other' },
    ],
    [
      'a Pod of a StatefulSet is named after the StatefulSet',
      podObject('db-0', ownedBy('StatefulSet', 'db')),
      { kind: 'StatefulSet', name: 'db' },
    ],
    [
      'a Pod of a DaemonSet is named after the DaemonSet',
      podObject('agent-x7k2p', ownedBy('DaemonSet', 'agent')),
      { kind: 'DaemonSet', name: 'agent' },
    ],
    [
      'a Pod of a Job is named after the Job',
      podObject('migrate-abcde', ownedBy('Job', 'migrate')),
      { kind: 'Job', name: 'migrate' },
    ],
    [
      'a Pod of a CronJob (its Job named <cronjob>-<8 to 10 digits>) is named after the CronJob',
      podObject('report-29000000-abcde', ownedBy('Job', 'report-29000000')),
      { kind: 'CronJob', name: 'report' },
    ],
    [
      'a Job with a shorter numeric suffix stays a Job',
      podObject('batch-1234-abcde', ownedBy('Job', 'batch-1234')),
      { kind: 'Job', name: 'batch-1234' },
    ],
    [
      'an owner without generateName (a Pod named by hand) is ignored, as Istio does',
      podObject('named', ownedBy('StatefulSet', 'db'), withField('metadata.generateName', '')),
      { kind: 'Pod', name: 'named' },
    ],
  ])('%s', (_sentence, p, expected) => {
    expect(workloadOf(p)).toEqual(expected);
  });

  it.each([
    ['app and version labels', { app: 'web', version: 'v2' }, { app: 'web', version: 'v2' }],
    [
      'the app.kubernetes.io labels when app and version are absent',
      { 'app.kubernetes.io/name': 'shop', 'app.kubernetes.io/version': '1.4' },
      { app: 'shop', version: '1.4' },
    ],
    [
      'app over app.kubernetes.io/name when both are there',
      { app: 'web', 'app.kubernetes.io/name': 'shop' },
      { app: 'web', version: null },
    ],
  ])('reads %s', (_sentence, labels, expected) => {
    const info = workloadInfoOf(podObject('p', withField('metadata.labels', labels)));
    expect({ app: info.app, version: info.version }).toEqual(expected);
  });

  it('has no app when the Pod carries no such label', () => {
    expect(workloadInfoOf(podObject('p', withField('metadata.labels', {})))).toEqual({
      name: 'p',
      namespace: 'default',
      app: null,
      version: null,
    });
  });
});

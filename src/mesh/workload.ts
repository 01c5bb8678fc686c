// Who a Pod is, for metric labels and the config dump, derived as Istio derives it
// (pkg/kube/util.go, GetDeployMetaFromPod): a Pod whose name was generated is named after its
// controller: a ReplicaSet named `<deployment>-<pod-template-hash>` gives the Deployment, a Job
// named `<cronjob>-<8 to 10 digits>` gives the CronJob, any other controller (StatefulSet,
// DaemonSet, Job, ReplicaSet, ReplicationController) its own name; a bare Pod is its own
// workload. No owner is looked up: the Pod's own metadata says it all. Pure.

import type { WorkloadInfo } from '../api/mesh';
import type { PodObject, WorkloadEntryObject } from './objects';

const CRON_JOB_NAME = /^(.+)-\d{8,10}$/;

export interface WorkloadKind {
  readonly kind: string;
  readonly name: string;
}

/** The workload's kind and name. */
export function workloadOf(pod: PodObject): WorkloadKind {
  const { controller, generateName, meta } = pod;
  if (generateName === null || controller === null || controller.name === '') {
    return { kind: 'Pod', name: meta.name };
  }
  if (controller.kind === 'ReplicaSet') {
    const hash = meta.labels['pod-template-hash'];
    if (hash !== undefined && hash !== '' && controller.name.endsWith(`-${hash}`)) {
      return { kind: 'Deployment', name: controller.name.slice(0, -(hash.length + 1)) };
    }
  }
  if (controller.kind === 'Job') {
    const cron = CRON_JOB_NAME.exec(controller.name);
    if (cron?.[1] !== undefined) return { kind: 'CronJob', name: cron[1] };
  }
  return { kind: controller.kind, name: controller.name };
}

const firstLabel = (labels: Readonly<Record<string, string>>, keys: readonly string[]) => {
  for (const key of keys) {
    const value = labels[key];
    if (value !== undefined && value !== '') return value;
  }
  return null;
};

/** A workload named `name` with the `app` and `version` labels (or their app.kubernetes.io forms). */
const workloadInfo = (
  name: string,
  namespace: string,
  labels: Readonly<Record<string, string>>,
): WorkloadInfo => ({
  name,
  namespace,
  app: firstLabel(labels, ['app', 'app.kubernetes.io/name']),
  version: firstLabel(labels, ['version', 'app.kubernetes.io/version']),
});

/** A WorkloadEntry as a workload: its own name, its labels. */
export const workloadInfoOfEntry = (entry: WorkloadEntryObject): WorkloadInfo =>
  workloadInfo(entry.meta.name, entry.meta.namespace, entry.labels);

/** The Pod's workload (its controller's name), with the Pod's labels. */
export const workloadInfoOf = (pod: PodObject): WorkloadInfo =>
  workloadInfo(workloadOf(pod).name, pod.meta.namespace, pod.meta.labels);

// Whether a Pod gets the sidecar. A Pod that does not is skipped with a typed reason, never an
// error: the code is the metric label and log field, the sentence is what users read.

import type { InjectorConfig } from '../config/types';
import {
  INIT_CONTAINER_NAME,
  INJECT_LABEL,
  PROXY_CONTAINER_NAME,
  STATUS_ANNOTATION,
  SYSTEM_NAMESPACES,
  VOLUME,
} from '../constants';
import { MooringError } from '../errors';
import { describeInvalid } from './annotations';
import { podAnnotations, podLabels, type Pod } from './pod';

/** Every skip reason, with the sentence that explains it. */
export const SKIP_REASONS = {
  ignored_namespace:
    'the namespace is never injected (kube-system, kube-public, kube-node-lease and the ' +
    'injector.ignoredNamespaces setting)',
  host_network:
    'the Pod uses the host network: redirecting its traffic would capture the whole node',
  unsupported_os: 'the Pod runs on Windows, where the iptables redirect cannot be installed',
  opted_out: `the Pod is labelled ${INJECT_LABEL}: "false"`,
  already_injected: `the Pod already has the Mooring sidecar (${STATUS_ANNOTATION} or a ${PROXY_CONTAINER_NAME} container)`,
  name_conflict:
    'the Pod already uses a container or volume name that the sidecar needs, without being injected',
} as const satisfies Record<string, string>;

export type SkipCode = keyof typeof SKIP_REASONS;

export const SKIP_CODES = Object.keys(SKIP_REASONS) as SkipCode[];

export interface Skip {
  readonly reason: SkipCode;
  /** The reason's sentence, made specific to this Pod. */
  readonly message: string;
}

const skip = (reason: SkipCode, detail?: string): Skip => ({
  reason,
  message: detail === undefined ? SKIP_REASONS[reason] : `${SKIP_REASONS[reason]}: ${detail}`,
});

/** Names the sidecar adds: a Pod already using one of them cannot be injected. */
const OUR_CONTAINERS: readonly string[] = [INIT_CONTAINER_NAME, PROXY_CONTAINER_NAME];
const OUR_VOLUMES: readonly string[] = Object.values(VOLUME);

/** Reads the Pod's mooring.dev/inject label: true, false, or undefined when absent. */
function injectLabel(pod: Pod): boolean | undefined {
  const value = podLabels(pod)[INJECT_LABEL];
  if (value === undefined) return undefined;
  if (value === 'true') return true;
  if (value === 'false') return false;
  const problem = describeInvalid(INJECT_LABEL, value, 'must be "true" or "false"');
  throw new MooringError('INJ_ERR_ANNOTATION', `invalid label ${problem}`, {
    details: [problem],
  });
}

/**
 * The skip decision, in this order: ignored namespace, host network, Windows, opted out, already
 * injected, name conflict. Undefined: inject. Throws INJ_ERR_ANNOTATION for a mooring.dev/inject
 * label that is neither "true" nor "false" (only when the Pod is not skipped for an earlier
 * reason, so that a system Pod is never refused).
 */
export function decide(pod: Pod, namespace: string, config: InjectorConfig): Skip | undefined {
  if (
    (SYSTEM_NAMESPACES as readonly string[]).includes(namespace) ||
    config.ignoredNamespaces.includes(namespace)
  ) {
    return skip('ignored_namespace', `namespace ${namespace}`);
  }
  const { spec } = pod;
  if (spec.hostNetwork === true) return skip('host_network');
  if (spec.os?.name === 'windows') return skip('unsupported_os');
  if (injectLabel(pod) === false) return skip('opted_out');

  const containers = [...(spec.initContainers ?? []), ...spec.containers];
  if (podAnnotations(pod)[STATUS_ANNOTATION] !== undefined) {
    return skip('already_injected', `annotation ${STATUS_ANNOTATION} is present`);
  }
  if (containers.some((c) => c.name === PROXY_CONTAINER_NAME)) {
    return skip('already_injected', `container ${PROXY_CONTAINER_NAME} is present`);
  }
  const container = containers.find((c) => OUR_CONTAINERS.includes(c.name));
  if (container !== undefined) return skip('name_conflict', `container ${container.name}`);
  const volume = (spec.volumes ?? []).find((v) => OUR_VOLUMES.includes(v.name));
  if (volume !== undefined) return skip('name_conflict', `volume ${volume.name}`);
  return undefined;
}

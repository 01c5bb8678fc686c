// inject(): one Pod in, the injected Pod and its JSONPatch out (or a typed skip). Pure: the same
// function serves the webhook (src/admission) and `mooring inject` (src/cli/inject.ts).
//
// The input is never changed. The injected Pod is built copy-on-write rather than from a deep
// clone: every object on the path to a change is a new one, everything else (the app's env,
// volumes, untouched containers) is shared with the input. That costs nothing to build, and lets
// the diff skip shared subtrees by identity, so the time does not grow with the Pod either. Treat
// both the input and the outcome as read-only.
//
// Where things go:
//   native mode (default): initContainers = [mooring-init, mooring-proxy, ...the app's]
//     The proxy is a native sidecar (restartPolicy: Always) started before every app init
//     container, so those already have the mesh. hold-application: its startup probe makes the
//     kubelet wait for the proxy's readiness before the next container starts. Without hold, it
//     has no startup probe and the kubelet starts the next container as soon as the proxy runs.
//   classic mode: initContainers = [...the app's, mooring-init]
//     The redirect is installed last, so that the app's own init containers (which run before any
//     proxy exists) keep a working network. hold-application: containers = [mooring-proxy, ...]
//     with a postStart hook that waits for its readiness (the kubelet starts containers in order
//     and waits for each postStart hook); without hold: containers = [..., mooring-proxy].

import type { Operation } from 'fast-json-patch';
import type { Config } from '../config/types';
import {
  ANNOTATION,
  DEFAULT_CONTAINER_ANNOTATION,
  INIT_CONTAINER_NAME,
  PROXY_CONTAINER_NAME,
  STATUS_ANNOTATION,
} from '../constants';
import {
  describeInvalid,
  invalidAnnotations,
  resolveSettings,
  type PodSettings,
} from './annotations';
import { decide, type SkipCode } from './decide';
import { createPatch } from './patch';
import {
  assertPod,
  containerPorts,
  podAnnotations,
  podLabels,
  type Container,
  type Pod,
  type PodSpec,
} from './pod';
import { appProbesText, type AppProbe } from '../api/app-probes';
import { scrapeRewrite } from './prometheus';
import { rewriteProbes } from './probes';
import {
  initContainer,
  proxyContainer,
  sidecarVolumes,
  statusAnnotation,
  type InjectionStatus,
} from './sidecar';

export interface InjectionContext {
  readonly config: Config;
  /** The Pod's namespace: AdmissionReview's request.namespace (the Pod's own is often empty). */
  readonly namespace: string;
  /** Mooring's version, recorded in mooring.dev/status. */
  readonly version: string;
}

export type InjectOutcome =
  | {
      readonly action: 'injected';
      readonly pod: Pod;
      readonly patch: Operation[];
      readonly warnings: readonly string[];
      /** What was added and why, for `mooring inject`'s report. */
      readonly summary: InjectionSummary;
    }
  | {
      readonly action: 'skipped';
      readonly reason: SkipCode;
      readonly message: string;
      readonly warnings: readonly string[];
    };

export interface InjectionSummary {
  readonly status: InjectionStatus;
  readonly settings: PodSettings;
  /** `<container>/<livez|readyz|startupz>` of every probe handed to the agent. */
  readonly rewrittenProbes: readonly string[];
}

/** Warnings for app containers that listen on a port the sidecar owns. */
function portClashWarnings(
  containers: readonly Container[],
  reserved: readonly number[],
): string[] {
  const warnings: string[] = [];
  for (const container of containers) {
    for (const port of containerPorts(container)) {
      if (reserved.includes(port.containerPort)) {
        warnings.push(
          `container ${container.name} uses port ${port.containerPort}, which the Mooring ` +
            'sidecar needs: the two will clash',
        );
      }
    }
  }
  return warnings;
}

function trafficWarnings(settings: PodSettings, reserved: readonly number[]): string[] {
  const included = settings.traffic.includeInboundPorts;
  if (included === '*') return [];
  return included
    .filter((p) => reserved.includes(p))
    .map(
      (p) =>
        `inbound port ${p} is listed for capture but belongs to the sidecar: it is never captured`,
    );
}

/** A Pod meant to finish never does while a classic (regular container) proxy keeps running. */
function completionWarnings(pod: Pod, settings: PodSettings): string[] {
  const policy = pod.spec.restartPolicy;
  if (settings.nativeSidecar || (policy !== 'Never' && policy !== 'OnFailure')) return [];
  return [
    `restartPolicy ${policy} with the classic sidecar: ${PROXY_CONTAINER_NAME} keeps running ` +
      'after the app containers finish, so the Pod never completes; use the native sidecar ' +
      `(${ANNOTATION.nativeSidecar}: "true")`,
  ];
}

/**
 * The spec with `changes`; a new `initContainers` goes right before `containers` (where people
 * expect to read it), other new keys at the end.
 */
function withSpecChanges(spec: PodSpec, changes: Partial<PodSpec>): PodSpec {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(spec)) {
    if (key === 'containers' && !('initContainers' in spec) && 'initContainers' in changes) {
      out.initContainers = changes.initContainers;
    }
    out[key] = key in changes ? changes[key] : value;
  }
  for (const [key, value] of Object.entries(changes)) if (!(key in out)) out[key] = value;
  return out as PodSpec;
}

/** App containers whose probes the kubelet runs: regular ones and the app's native sidecars. */
function probedContainers(pod: Pod): Container[] {
  const sidecars = (pod.spec.initContainers ?? []).filter((c) => c.restartPolicy === 'Always');
  return [...sidecars, ...pod.spec.containers];
}

/**
 * Injects the sidecar into `pod`, which is not changed. Skips (with a typed reason, never an
 * error) Pods that must not be injected. Throws MooringError INJ_ERR_ANNOTATION naming the key and
 * the value of an invalid annotation, INJ_ERR_INPUT for something that is not a Pod.
 */
export function inject(pod: Pod, ctx: InjectionContext): InjectOutcome {
  assertPod(pod);
  const injector = ctx.config.injector;
  const skip = decide(pod, ctx.namespace, injector);
  if (skip !== undefined) return { action: 'skipped', ...skip, warnings: [] };

  const { settings, warnings: keyWarnings } = resolveSettings(
    podAnnotations(pod),
    podLabels(pod),
    injector,
  );
  const spec = pod.spec;
  const unknownVolumes = settings.userVolumeMounts.filter(
    (m) => !(spec.volumes ?? []).some((v) => v.name === m.name),
  );
  if (unknownVolumes.length > 0) {
    throw invalidAnnotations([
      describeInvalid(
        ANNOTATION.userVolumeMount,
        podAnnotations(pod)[ANNOTATION.userVolumeMount],
        `names no volume of the Pod: ${unknownVolumes.map((m) => m.name).join(', ')}`,
      ),
    ]);
  }
  const reserved = Object.values(injector.ports);
  const warnings = [
    ...keyWarnings,
    ...trafficWarnings(settings, reserved),
    ...portClashWarnings(probedContainers(pod), reserved),
    ...completionWarnings(pod, settings),
  ];

  // Probes: a container whose probes change is copied; the others are kept as they are.
  const probes: (readonly [string, AppProbe])[] = [];
  const withAgentProbes = (container: Container): Container => {
    if (!settings.rewriteProbes) return container;
    const copy = { ...container };
    const rewrite = rewriteProbes(copy, injector.ports.agent);
    probes.push(...rewrite.probes);
    warnings.push(...rewrite.warnings);
    return rewrite.probes.length > 0 ? copy : container;
  };
  const appInit = (spec.initContainers ?? []).map((c) =>
    c.restartPolicy === 'Always' ? withAgentProbes(c) : c,
  );
  const appContainers = spec.containers.map(withAgentProbes);

  const init = initContainer(settings, injector);
  // Metrics merging: Prometheus scrapes the agent, which adds the app's metrics to the proxy's.
  const scrape = scrapeRewrite(podAnnotations(pod), injector.ports.agent);
  const proxy = proxyContainer(settings, injector, {
    appProbes: appProbesText(probes),
    appMetrics: scrape?.appMetrics,
  });
  const volumes = sidecarVolumes();
  const changes: Partial<PodSpec> = {
    initContainers: settings.nativeSidecar ? [init, proxy, ...appInit] : [...appInit, init],
    containers: settings.nativeSidecar
      ? appContainers
      : settings.holdApplication
        ? [proxy, ...appContainers]
        : [...appContainers, proxy],
    volumes: [...(spec.volumes ?? []), ...volumes],
  };

  const status: InjectionStatus = {
    initContainers: settings.nativeSidecar
      ? [INIT_CONTAINER_NAME, PROXY_CONTAINER_NAME]
      : [INIT_CONTAINER_NAME],
    containers: settings.nativeSidecar ? [] : [PROXY_CONTAINER_NAME],
    volumes: volumes.map((v) => v.name),
    image: settings.proxyImage,
    version: ctx.version,
  };
  const annotations: Record<string, string> = {
    ...pod.metadata?.annotations,
    ...scrape?.annotations,
    [STATUS_ANNOTATION]: statusAnnotation(status),
  };
  annotations[DEFAULT_CONTAINER_ANNOTATION] ??= spec.containers[0]?.name ?? '';
  const mutated: Pod = {
    ...pod,
    metadata: { ...pod.metadata, annotations },
    spec: withSpecChanges(spec, changes),
  };

  return {
    action: 'injected',
    pod: mutated,
    patch: createPatch(pod, mutated),
    warnings,
    summary: { status, settings, rewrittenProbes: probes.map(([key]) => key) },
  };
}

/** The webhook's injector (src/admission's PodInjector): `inject` bound to the configuration. */
export function podInjector(
  config: Config,
  version: string,
): (pod: unknown, namespace: string) => InjectOutcome {
  return (pod, namespace) => inject(pod as Pod, { config, namespace, version });
}

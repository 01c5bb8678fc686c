// What the injector adds to a Pod: the mooring-init container (the iptables redirect), the
// mooring-proxy container (`mooring agent`: certificate, readiness, app probes), their volumes, and
// the mooring.dev/status annotation that records it. Pure builders from the settings.

import type { InjectorConfig, ResourceConfig } from '../config/types';
import {
  AGENT_ENV,
  CA_TOKEN_AUDIENCE,
  INIT_CONTAINER_NAME,
  MOUNT_PATH,
  PORT,
  PROXY_CONTAINER_NAME,
  PROXY_NODE_OPTIONS,
  ROOT_CERT_CONFIGMAP,
  ROOT_CERT_KEY,
  TOKEN_FILE,
  VOLUME,
} from '../constants';
import type { PodSettings } from './annotations';
import type { Container, EnvVar, Probe, Volume } from './pod';
import { redirectArgs, type RedirectSpec } from './redirect';

/** Path of the agent's readiness endpoint (src/agent/health/servers.ts serves it). */
export const READY_PATH = '/healthz/ready';
/** Lifetime of the projected token the agent presents to the CA. */
export const TOKEN_EXPIRATION_SECONDS = 3600;
/**
 * The classic-mode postStart hook: `mooring agent wait` polls the readiness endpoint and returns
 * once the agent is ready (or fails after its --timeout, 120s by default), and the kubelet starts
 * the next container only after the hook returns.
 */
export const WAIT_COMMAND: readonly string[] = ['mooring', 'agent', 'wait'];

/** Port names are at most 15 characters and must not collide with the app's. */
export const PORT_NAME = {
  outboundCapture: 'mooring-out',
  inboundCapture: 'mooring-in',
  proxyMetrics: 'mooring-metrics',
  readiness: 'mooring-ready',
  agent: 'mooring-agent',
} as const;

function resources(config: ResourceConfig): Record<string, Record<string, string>> {
  const limits: Record<string, string> = {};
  if (config.cpuLimit !== null) limits.cpu = config.cpuLimit;
  if (config.memoryLimit !== null) limits.memory = config.memoryLimit;
  const out: Record<string, Record<string, string>> = {
    requests: { cpu: config.cpuRequest, memory: config.memoryRequest },
  };
  if (Object.keys(limits).length > 0) out.limits = limits;
  return out;
}

/** What the init container's `mooring iptables` installs for these settings. */
export function redirectSpec(settings: PodSettings, config: InjectorConfig): RedirectSpec {
  const { ports } = config;
  return {
    proxyUID: config.proxyUID,
    proxyGID: config.proxyGID,
    inboundCapturePort: ports.inboundCapture,
    outboundCapturePort: ports.outboundCapture,
    includeInboundPorts: settings.traffic.includeInboundPorts,
    // The sidecar's own ports are named explicitly (the program adds the default ones anyway),
    // so that a configuration with other ports still keeps them out of the redirect.
    excludeInboundPorts: [
      ...new Set([
        ports.agent,
        ports.readiness,
        ports.proxyMetrics,
        ...settings.traffic.excludeInboundPorts,
      ]),
    ],
    includeOutboundIPRanges: settings.traffic.includeOutboundIPRanges,
    excludeOutboundIPRanges: settings.traffic.excludeOutboundIPRanges,
    excludeOutboundPorts: settings.traffic.excludeOutboundPorts,
  };
}

export function initContainer(settings: PodSettings, config: InjectorConfig): Container {
  return {
    name: INIT_CONTAINER_NAME,
    image: config.initImage,
    imagePullPolicy: config.imagePullPolicy,
    command: ['mooring', 'iptables', ...redirectArgs(redirectSpec(settings, config))],
    resources: resources(config.initResources),
    securityContext: {
      runAsUser: 0,
      runAsGroup: 0,
      runAsNonRoot: false,
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { add: ['NET_ADMIN', 'NET_RAW'], drop: ['ALL'] },
    },
    // On nodes with the legacy backend, iptables-restore opens /run/xtables.lock and fails on a
    // read-only root filesystem (exit 4, "can't open lock file"). Linkerd mounts the same.
    volumeMounts: [{ name: VOLUME.xtablesLock, mountPath: MOUNT_PATH.xtablesLock }],
  };
}

const fieldEnv = (name: string, fieldPath: string): EnvVar => ({
  name,
  valueFrom: { fieldRef: { apiVersion: 'v1', fieldPath } },
});

/** The agent's flags for ports that differ from its defaults (it reads no env for them). */
function portFlags(config: InjectorConfig): string[] {
  const flags: string[] = [];
  if (config.ports.readiness !== PORT.readiness) {
    flags.push('--readiness-port', String(config.ports.readiness));
  }
  if (config.ports.agent !== PORT.agent) flags.push('--agent-port', String(config.ports.agent));
  if (config.ports.outboundCapture !== PORT.outboundCapture) {
    flags.push('--outbound-port', String(config.ports.outboundCapture));
  }
  if (config.ports.inboundCapture !== PORT.inboundCapture) {
    flags.push('--inbound-port', String(config.ports.inboundCapture));
  }
  if (config.ports.proxyMetrics !== PORT.proxyMetrics) {
    flags.push('--stats-port', String(config.ports.proxyMetrics));
  }
  return flags;
}

/** The postStart hook's command, with the readiness port when it is not the default. */
export function waitCommand(config: InjectorConfig): string[] {
  return config.ports.readiness === PORT.readiness
    ? [...WAIT_COMMAND]
    : [...WAIT_COMMAND, '--readiness-port', String(config.ports.readiness)];
}

function readyProbe(config: InjectorConfig, timing: Partial<Probe>): Probe {
  return {
    httpGet: { path: READY_PATH, port: config.ports.readiness, scheme: 'HTTP' },
    ...timing,
  };
}

export interface ProxyOptions {
  /** MOORING_APP_PROBES, when the app has probes for the agent. */
  readonly appProbes: string | undefined;
  /** MOORING_PROMETHEUS_ANNOTATIONS, when the app asked to be scraped (metrics merging). */
  readonly appMetrics?: string | undefined;
}

/**
 * mooring-proxy. Native mode: an init container with restartPolicy Always; with hold-application
 * its startup probe makes the kubelet wait for readiness before starting the next container.
 * Classic mode: a regular container; with hold-application, a postStart hook that waits.
 */
export function proxyContainer(
  settings: PodSettings,
  config: InjectorConfig,
  options: ProxyOptions,
): Container {
  const { ports } = config;
  const env: EnvVar[] = [
    // The Pod the built-in proxy serves (its mesh configuration, its app probes' address).
    fieldEnv(AGENT_ENV.podName, 'metadata.name'),
    fieldEnv(AGENT_ENV.podNamespace, 'metadata.namespace'),
    fieldEnv(AGENT_ENV.podIp, 'status.podIP'),
    { name: AGENT_ENV.caUrl, value: config.caAddress },
    // The same server pushes the mesh (as istiod is both CA and discovery address).
    { name: AGENT_ENV.meshUrl, value: config.caAddress },
    { name: AGENT_ENV.tokenFile, value: `${MOUNT_PATH.token}/${TOKEN_FILE}` },
    { name: AGENT_ENV.rootCert, value: `${MOUNT_PATH.rootCert}/${ROOT_CERT_KEY}` },
    { name: AGENT_ENV.outDir, value: MOUNT_PATH.certs },
    { name: AGENT_ENV.logLevel, value: settings.logLevel },
    { name: AGENT_ENV.drain, value: `${config.drainSeconds}s` },
    { name: 'NODE_OPTIONS', value: PROXY_NODE_OPTIONS },
  ];
  if (options.appProbes !== undefined) {
    env.push({ name: AGENT_ENV.appProbes, value: options.appProbes });
  }
  if (options.appMetrics !== undefined) {
    env.push({ name: AGENT_ENV.prometheusAnnotations, value: options.appMetrics });
  }
  const hold = settings.holdApplication;
  const native = settings.nativeSidecar;
  // Native without hold: no startup probe, so that the kubelet starts the next container as soon
  // as the proxy's process runs.
  const startupProbe = !native || hold;
  return {
    name: PROXY_CONTAINER_NAME,
    image: settings.proxyImage,
    imagePullPolicy: config.imagePullPolicy,
    command: ['mooring', 'agent', ...portFlags(config)],
    ...(native ? { restartPolicy: 'Always' } : {}),
    ports: [
      { name: PORT_NAME.outboundCapture, containerPort: ports.outboundCapture, protocol: 'TCP' },
      { name: PORT_NAME.inboundCapture, containerPort: ports.inboundCapture, protocol: 'TCP' },
      { name: PORT_NAME.proxyMetrics, containerPort: ports.proxyMetrics, protocol: 'TCP' },
      { name: PORT_NAME.readiness, containerPort: ports.readiness, protocol: 'TCP' },
      { name: PORT_NAME.agent, containerPort: ports.agent, protocol: 'TCP' },
    ],
    env,
    resources: resources(settings.resources),
    readinessProbe: readyProbe(config, {
      periodSeconds: 5,
      timeoutSeconds: 3,
      failureThreshold: 3,
    }),
    ...(startupProbe
      ? {
          startupProbe: readyProbe(config, {
            periodSeconds: 1,
            timeoutSeconds: 3,
            failureThreshold: 600,
          }),
        }
      : {}),
    ...(!native && hold
      ? { lifecycle: { postStart: { exec: { command: waitCommand(config) } } } }
      : {}),
    securityContext: {
      runAsUser: config.proxyUID,
      runAsGroup: config.proxyGID,
      runAsNonRoot: true,
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
    volumeMounts: [
      { name: VOLUME.token, mountPath: MOUNT_PATH.token, readOnly: true },
      { name: VOLUME.rootCert, mountPath: MOUNT_PATH.rootCert, readOnly: true },
      { name: VOLUME.certs, mountPath: MOUNT_PATH.certs },
      ...settings.userVolumeMounts,
    ],
  };
}

/**
 * The token the agent presents to the CA, the trusted roots, a memory dir for the cert, and the
 * init container's writable /run.
 */
export function sidecarVolumes(): Volume[] {
  return [
    {
      name: VOLUME.token,
      projected: {
        sources: [
          {
            serviceAccountToken: {
              audience: CA_TOKEN_AUDIENCE,
              expirationSeconds: TOKEN_EXPIRATION_SECONDS,
              path: TOKEN_FILE,
            },
          },
        ],
      },
    },
    { name: VOLUME.rootCert, configMap: { name: ROOT_CERT_CONFIGMAP } },
    { name: VOLUME.certs, emptyDir: { medium: 'Memory' } },
    { name: VOLUME.xtablesLock, emptyDir: {} },
  ];
}

/** The mooring.dev/status value: what was added, with the proxy image and Mooring's version. */
export interface InjectionStatus {
  readonly initContainers: readonly string[];
  readonly containers: readonly string[];
  readonly volumes: readonly string[];
  readonly image: string;
  readonly version: string;
}

export function statusAnnotation(status: InjectionStatus): string {
  return JSON.stringify({
    initContainers: status.initContainers,
    containers: status.containers,
    volumes: status.volumes,
    image: status.image,
    version: status.version,
  });
}

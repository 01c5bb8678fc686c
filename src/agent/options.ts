// The agent's options: flags beat environment variables (AGENT_ENV, what the injector sets),
// which beat defaults that match the injected Pod's mounts, so that the container needs no
// arguments. Pure: the CLI passes flags and the environment in.

import { isIP } from 'node:net';
import type { KeyAlgorithm } from '../ca/ports';
import { AGENT_ENV, MOUNT_PATH, PORT, ROOT_CERT_KEY, TOKEN_FILE } from '../constants';
import { MooringError } from '../errors';
import { isDnsLabel, isDnsSubdomain } from '../mesh/validate';
import { AGENT_KEY_TYPES } from './identity/keys';
import { DEFAULT_PROBE_HOST } from './health/probe-runner';
import { parseAppMetrics, type AppMetricsTarget } from '../api/app-metrics';
import { parseAppProbes, type AppProbes } from '../api/app-probes';

export type AgentLogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'off';
const LOG_LEVELS: readonly AgentLogLevel[] = ['trace', 'debug', 'info', 'warn', 'error', 'off'];

export interface AgentOptions {
  readonly caUrl: URL;
  /** Where the mesh configuration comes from (GET /v1/mesh/watch); --ca-url by default. */
  readonly meshUrl: URL;
  /**
   * The Pod the agent serves (--pod-name, --pod-namespace, --pod-ip; the injector sets their
   * environment variables from the downward API); null where not given.
   */
  readonly pod: {
    readonly name: string | null;
    readonly namespace: string | null;
    readonly ip: string | null;
  };
  readonly tokenFile: string;
  readonly rootCert: string;
  readonly outDir: string;
  /** Requested certificate lifetime; undefined lets the CA pick its default. */
  readonly ttlSeconds: number | undefined;
  readonly keyType: KeyAlgorithm;
  readonly renewFraction: number;
  readonly drainSeconds: number;
  readonly logLevel: AgentLogLevel;
  readonly appProbes: AppProbes;
  /** The app's metrics, merged into 15020 /stats/prometheus (MOORING_PROMETHEUS_ANNOTATIONS). */
  readonly appMetrics: AppMetricsTarget | null;
  readonly listenHost: string;
  readonly readinessPort: number;
  readonly agentPort: number;
  /** How often the root file is re-read in case a change notification was missed. */
  readonly rootPollSeconds: number;
  /**
   * Where app probes without a host go: the Pod's IP ($POD_IP, from the downward API), as the
   * kubelet probes it, so that rewriting a probe does not change its result; 127.0.0.1 without.
   */
  readonly probeHost: string;
  /** The proxy command and its arguments; empty when there is none. */
  readonly command: readonly string[];
  /** The built-in sidecar proxy (off with --no-proxy). */
  readonly proxy: ProxyOptions;
}

export interface ProxyOptions {
  readonly enabled: boolean;
  /** Outbound capture (15001) and inbound capture (15006), on every address. */
  readonly outboundPort: number;
  readonly inboundPort: number;
  /** The proxy's admin endpoint on 127.0.0.1 (15000: /config_dump). */
  readonly adminPort: number;
  /** Istio's metrics (15090: /stats/prometheus). */
  readonly statsPort: number;
}

/** Flag values as the CLI parsed them (strings, undefined when absent). */
export interface AgentFlags {
  readonly caUrl?: string;
  readonly meshUrl?: string;
  readonly podName?: string;
  readonly podNamespace?: string;
  readonly podIp?: string;
  readonly tokenFile?: string;
  readonly rootCert?: string;
  readonly outDir?: string;
  readonly ttl?: string;
  readonly keyType?: string;
  readonly renewFraction?: string;
  readonly drain?: string;
  readonly logLevel?: string;
  readonly appProbes?: string;
  readonly listenHost?: string;
  readonly readinessPort?: string;
  readonly agentPort?: string;
  readonly rootPollInterval?: string;
  /** commander's `--no-proxy`: false when given. */
  readonly proxy?: boolean;
  readonly outboundPort?: string;
  readonly inboundPort?: string;
  readonly proxyAdminPort?: string;
  readonly statsPort?: string;
}

export const AGENT_DEFAULTS = {
  caUrl: 'https://mooring.mooring-system.svc:443',
  tokenFile: `${MOUNT_PATH.token}/${TOKEN_FILE}`,
  rootCert: `${MOUNT_PATH.rootCert}/${ROOT_CERT_KEY}`,
  outDir: MOUNT_PATH.certs,
  keyType: 'ecdsa-p256',
  renewFraction: 0.5,
  drainSeconds: 5,
  logLevel: 'info',
  listenHost: '0.0.0.0',
  readinessPort: PORT.readiness,
  agentPort: PORT.agent,
  rootPollSeconds: 10,
  outboundPort: PORT.outboundCapture,
  inboundPort: PORT.inboundCapture,
  proxyAdminPort: PORT.proxyAdmin,
  statsPort: PORT.proxyMetrics,
} as const;

const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400 };

/**
 * A duration in seconds from `90`, `90s`, `1500ms`, `5m`, `24h`, `1h30m` or `7d`. A bare number
 * is seconds. Returns null for anything else.
 */
export function parseDuration(text: string): number | null {
  const s = text.trim();
  if (/^[0-9]+(\.[0-9]+)?$/.test(s)) return Number(s);
  if (!/^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$/.test(s)) return null;
  let total = 0;
  for (const m of s.matchAll(/([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)/g)) {
    total += Number(m[1]) * (UNIT_SECONDS[m[2] ?? 's'] ?? 1);
  }
  return total;
}

/** The flag when given, else the environment variable when set and not empty. */
function pick(
  flag: string | undefined,
  envName: string | undefined,
  env: NodeJS.ProcessEnv,
): { readonly value: string } | undefined {
  if (flag !== undefined) return { value: flag };
  const fromEnv = envName === undefined ? undefined : env[envName];
  return fromEnv === undefined || fromEnv === '' ? undefined : { value: fromEnv };
}

/**
 * Resolves the agent's options. Every invalid value is listed in one CFG_ERR_INVALID error that
 * names the flag and its environment variable.
 */
export function resolveAgentOptions(
  flags: AgentFlags,
  env: NodeJS.ProcessEnv,
  command: readonly string[] = [],
): AgentOptions {
  const problems: string[] = [];
  const bad = (name: string, envName: string | undefined, value: string, want: string): void => {
    const where = envName === undefined ? `--${name}` : `--${name} / ${envName}`;
    problems.push(`${where}: ${JSON.stringify(value)} ${want}`);
  };

  const text = (
    name: string,
    flag: string | undefined,
    envName: string | undefined,
    dflt: string,
  ): string => {
    const p = pick(flag, envName, env);
    if (p === undefined) return dflt;
    if (p.value.trim() === '') bad(name, envName, p.value, 'must not be empty');
    return p.value;
  };

  const seconds = (
    name: string,
    flag: string | undefined,
    envName: string | undefined,
    opts: { min: number },
  ): number | undefined => {
    const p = pick(flag, envName, env);
    if (p === undefined) return undefined;
    const value = parseDuration(p.value);
    if (value === null || value < opts.min) {
      bad(
        name,
        envName,
        p.value,
        `is not a duration of at least ${opts.min}s (e.g. 90, 90s, 5m, 24h)`,
      );
      return undefined;
    }
    return value;
  };

  const portNumber = (name: string, flag: string | undefined, dflt: number): number => {
    if (flag === undefined) return dflt;
    const n = Number(flag);
    if (!/^[0-9]+$/.test(flag.trim()) || n > 65535) {
      bad(name, undefined, flag, 'is not a port (0-65535)');
      return dflt;
    }
    return n;
  };

  const caUrlText = text('ca-url', flags.caUrl, AGENT_ENV.caUrl, AGENT_DEFAULTS.caUrl);
  let caUrl = new URL(AGENT_DEFAULTS.caUrl);
  try {
    caUrl = new URL(caUrlText);
    if (caUrl.protocol !== 'https:')
      bad('ca-url', AGENT_ENV.caUrl, caUrlText, 'must be an https:// URL');
  } catch {
    bad('ca-url', AGENT_ENV.caUrl, caUrlText, 'is not a URL');
  }

  const meshUrlText = pick(flags.meshUrl, AGENT_ENV.meshUrl, env)?.value;
  let meshUrl = caUrl;
  if (meshUrlText !== undefined) {
    try {
      meshUrl = new URL(meshUrlText);
      if (meshUrl.protocol !== 'https:') {
        bad('mesh-url', AGENT_ENV.meshUrl, meshUrlText, 'must be an https:// URL');
      }
    } catch {
      bad('mesh-url', AGENT_ENV.meshUrl, meshUrlText, 'is not a URL');
    }
  }
  const podName = pick(flags.podName, AGENT_ENV.podName, env)?.value.trim() ?? null;
  if (podName !== null && !isDnsSubdomain(podName)) {
    bad('pod-name', AGENT_ENV.podName, podName, 'is not a Pod name (a DNS subdomain)');
  }
  const podNamespace = pick(flags.podNamespace, AGENT_ENV.podNamespace, env)?.value.trim() ?? null;
  if (podNamespace !== null && !isDnsLabel(podNamespace)) {
    bad(
      'pod-namespace',
      AGENT_ENV.podNamespace,
      podNamespace,
      'is not a namespace name (a DNS label)',
    );
  }
  const podIpText = pick(flags.podIp, AGENT_ENV.podIp, env)?.value.trim() ?? null;
  if (podIpText !== null && isIP(podIpText) === 0) {
    bad('pod-ip', AGENT_ENV.podIp, podIpText, 'is not an IP address');
  }
  const podIp = podIpText !== null && isIP(podIpText) !== 0 ? podIpText : null;

  const ttl = seconds('ttl', flags.ttl, AGENT_ENV.ttl, { min: 1 });
  const ttlSeconds = ttl === undefined ? undefined : Math.round(ttl);

  const keyTypeText = text('key-type', flags.keyType, AGENT_ENV.keyType, AGENT_DEFAULTS.keyType);
  const keyType = AGENT_KEY_TYPES.find((k) => k === keyTypeText) ?? AGENT_DEFAULTS.keyType;
  if (!AGENT_KEY_TYPES.includes(keyTypeText as KeyAlgorithm)) {
    bad('key-type', AGENT_ENV.keyType, keyTypeText, `must be one of ${AGENT_KEY_TYPES.join(', ')}`);
  }

  let renewFraction: number = AGENT_DEFAULTS.renewFraction;
  const fraction = pick(flags.renewFraction, AGENT_ENV.renewFraction, env);
  if (fraction !== undefined) {
    const n = Number(fraction.value);
    if (fraction.value.trim() === '' || !Number.isFinite(n) || n <= 0 || n >= 1) {
      bad(
        'renew-fraction',
        AGENT_ENV.renewFraction,
        fraction.value,
        'must be a number between 0 and 1 (exclusive)',
      );
    } else {
      renewFraction = n;
    }
  }

  const drainSeconds =
    seconds('drain', flags.drain, AGENT_ENV.drain, { min: 0 }) ?? AGENT_DEFAULTS.drainSeconds;
  const rootPollSeconds =
    seconds('root-poll-interval', flags.rootPollInterval, undefined, { min: 0.05 }) ??
    AGENT_DEFAULTS.rootPollSeconds;

  const logLevelText = text(
    'log-level',
    flags.logLevel,
    AGENT_ENV.logLevel,
    AGENT_DEFAULTS.logLevel,
  );
  const logLevel = LOG_LEVELS.find((l) => l === logLevelText) ?? AGENT_DEFAULTS.logLevel;
  if (!LOG_LEVELS.includes(logLevelText as AgentLogLevel)) {
    bad('log-level', AGENT_ENV.logLevel, logLevelText, `must be one of ${LOG_LEVELS.join(', ')}`);
  }

  let appProbes: AppProbes = new Map();
  const probesText = pick(flags.appProbes, AGENT_ENV.appProbes, env);
  if (probesText !== undefined) {
    try {
      appProbes = parseAppProbes(probesText.value);
    } catch (err) {
      problems.push(`--app-probes / ${AGENT_ENV.appProbes}: ${(err as Error).message}`);
    }
  }

  // Set by the injector from the app's prometheus.io/* annotations (no flag: Istio has none).
  let appMetrics: AppMetricsTarget | null = null;
  try {
    appMetrics = parseAppMetrics(env[AGENT_ENV.prometheusAnnotations]);
  } catch (err) {
    problems.push(`${AGENT_ENV.prometheusAnnotations}: ${(err as Error).message}`);
  }

  const readinessPort = portNumber(
    'readiness-port',
    flags.readinessPort,
    AGENT_DEFAULTS.readinessPort,
  );
  const agentPort = portNumber('agent-port', flags.agentPort, AGENT_DEFAULTS.agentPort);
  if (readinessPort === agentPort && agentPort !== 0) {
    problems.push(`--readiness-port and --agent-port must differ (both are ${agentPort})`);
  }
  // The kubelet probes the Pod's IP: --pod-ip, else $POD_IP of older injections.
  const podIP = podIp ?? env.POD_IP?.trim() ?? '';

  const proxyEnabled = flags.proxy !== false;
  const proxy: ProxyOptions = {
    enabled: proxyEnabled,
    outboundPort: portNumber('outbound-port', flags.outboundPort, AGENT_DEFAULTS.outboundPort),
    inboundPort: portNumber('inbound-port', flags.inboundPort, AGENT_DEFAULTS.inboundPort),
    adminPort: portNumber('proxy-admin-port', flags.proxyAdminPort, AGENT_DEFAULTS.proxyAdminPort),
    statsPort: portNumber('stats-port', flags.statsPort, AGENT_DEFAULTS.statsPort),
  };
  if (proxyEnabled && (podName === null || podNamespace === null)) {
    problems.push(
      '--pod-name and --pod-namespace are needed by the built-in proxy (the injector sets ' +
        `${AGENT_ENV.podName} and ${AGENT_ENV.podNamespace}); give them, or --no-proxy`,
    );
  }
  if (proxyEnabled) {
    const ports: [string, number][] = [
      ['--readiness-port', readinessPort],
      ['--agent-port', agentPort],
      ['--outbound-port', proxy.outboundPort],
      ['--inbound-port', proxy.inboundPort],
      ['--proxy-admin-port', proxy.adminPort],
      ['--stats-port', proxy.statsPort],
    ];
    for (let i = 0; i < ports.length; i++) {
      for (let j = i + 1; j < ports.length; j++) {
        const [a, pa] = ports[i] as [string, number];
        const [b, pb] = ports[j] as [string, number];
        if (pa === pb && pa !== 0 && !(a === '--readiness-port' && b === '--agent-port')) {
          problems.push(`${a} and ${b} must differ (both are ${pa})`);
        }
      }
    }
  }

  const options: AgentOptions = {
    caUrl,
    meshUrl,
    pod: { name: podName, namespace: podNamespace, ip: podIp },
    tokenFile: text('token-file', flags.tokenFile, AGENT_ENV.tokenFile, AGENT_DEFAULTS.tokenFile),
    rootCert: text('root-cert', flags.rootCert, AGENT_ENV.rootCert, AGENT_DEFAULTS.rootCert),
    outDir: text('out-dir', flags.outDir, AGENT_ENV.outDir, AGENT_DEFAULTS.outDir),
    ttlSeconds,
    keyType,
    renewFraction,
    drainSeconds,
    logLevel,
    appProbes,
    appMetrics,
    listenHost: text('listen-host', flags.listenHost, undefined, AGENT_DEFAULTS.listenHost),
    readinessPort,
    agentPort,
    rootPollSeconds,
    probeHost: isIP(podIP) === 0 ? DEFAULT_PROBE_HOST : podIP,
    command: [...command],
    proxy,
  };
  if (problems.length > 0) {
    throw new MooringError(
      'CFG_ERR_INVALID',
      `the agent's options are invalid:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
      { details: problems },
    );
  }
  return options;
}

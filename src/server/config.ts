// The configuration of `mooring serve`: the file (or the defaults) with the command line's values
// on top, and the numbers derived from it (processes, threads, addresses).

import { readConfigFile } from '../adapters/config-file';
import { usableCpus } from '../adapters/cpus';
import type { Config } from '../config/types';
import { validateConfig } from '../config/validate';
import { MooringError } from '../errors';

/** What the command line gives `mooring serve`: each value beats the file's. */
export interface ServeFlags {
  readonly config?: string;
  readonly dataDir?: string;
  readonly listen?: string;
  readonly adminListen?: string;
  readonly kubeconfig?: string;
  /** `N` or `auto`: node:cluster workers serving the HTTPS port (server.workers). */
  readonly workers?: string;
  /** `N` or `auto`: worker threads answering admission reviews (server.injectThreads). */
  readonly injectThreads?: string;
  /** Local mode: the directory of mesh objects (server.meshDir). */
  readonly meshDir?: string;
  /** Prometheus for the mesh graph (ui.prometheusUrl). */
  readonly prometheusUrl?: string;
}

/** The configuration file (or the defaults) with the command-line flags on top, validated. */
export function resolveConfig(flags: ServeFlags): Config {
  const base = readConfigFile(flags.config);
  const server = {
    ...base.server,
    ...(flags.listen === undefined ? {} : { listen: flags.listen }),
    ...(flags.adminListen === undefined ? {} : { adminListen: flags.adminListen }),
    ...(flags.dataDir === undefined ? {} : { dataDir: flags.dataDir }),
    ...(flags.meshDir === undefined ? {} : { meshDir: flags.meshDir }),
    ...(flags.workers === undefined
      ? {}
      : { workers: flags.workers === 'auto' ? 'auto' : Number(flags.workers) }),
    ...(flags.injectThreads === undefined
      ? {}
      : {
          injectThreads: flags.injectThreads === 'auto' ? 'auto' : Number(flags.injectThreads),
        }),
  };
  const ui = {
    ...base.ui,
    ...(flags.prometheusUrl === undefined ? {} : { prometheusUrl: flags.prometheusUrl }),
  };
  return validateConfig({ ...structuredClone(base), server, ui }, flags.config ?? 'flags');
}

/**
 * How many processes serve the HTTPS port: server.workers, with 'auto' one per usable CPU (the
 * CPUs the process may run on, at most its cgroup's CPU limit: a Pod's limits.cpu).
 */
export function workerCount(config: Config, cpus: () => number = usableCpus): number {
  const { workers } = config.server;
  return workers === 'auto' ? Math.max(1, Math.min(64, cpus())) : workers;
}

/**
 * How many inject threads answer admission reviews: server.injectThreads, with 'auto' one when a
 * single process may use 2 CPUs or more (the event loop keeps TLS and HTTP, the thread the
 * review), none in a worker of --workers (the other workers use the other CPUs).
 */
export function injectThreadCount(
  config: Config,
  role: 'single' | 'worker',
  cpus: () => number = usableCpus,
): number {
  const { injectThreads } = config.server;
  if (injectThreads !== 'auto') return injectThreads;
  return role === 'single' && cpus() >= 2 ? 1 : 0;
}

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** `HOST:PORT` or `[IPv6]:PORT`; CFG_ERR_INVALID names `what` (a flag or a key) otherwise. */
export function parseHostPort(value: string, what: string): HostPort {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):([0-9]{1,5})$/.exec(value);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (host === undefined || !Number.isInteger(port) || port > 65535) {
    throw new MooringError('CFG_ERR_INVALID', `${what} must be HOST:PORT, got "${value}"`);
  }
  return { host, port };
}

/** How often the CA's periodic work runs: the configured interval, at most every 10 seconds. */
export function tickIntervalMs(config: Config): number {
  return Math.min(config.ca.rotation.checkIntervalSeconds, 10) * 1000;
}

// `mooring serve`: the command. It parses and checks the flags (a bad one is a usage error,
// exit 2), then runs the server (src/server/): one process, or a primary and its workers, and
// stops it on SIGTERM/SIGINT (a second signal closes every connection at once).

import type { Command } from 'commander';
import { isMooringError } from '../errors';
import { parseHostPort, type ServeFlags } from '../server/config';
import { EXIT, UsageError, type CliIO } from './io';

/** A count flag (`--workers`, `--inject-threads`): `auto` or an integer from `min` to 64. */
function checkCountFlag(flag: string, value: string | undefined, min: number): void {
  if (value === undefined || value === 'auto') return;
  if (!/^[0-9]+$/.test(value) || Number(value) < min || Number(value) > 64) {
    throw new UsageError(`${flag} must be a number from ${min} to 64, or auto; got "${value}"`);
  }
}

/** An address flag: HOST:PORT or [IPv6]:PORT. */
function checkAddressFlag(flag: string, value: string | undefined): void {
  if (value === undefined) return;
  try {
    parseHostPort(value, flag);
  } catch (err) {
    if (isMooringError(err)) throw new UsageError(err.message);
    throw err;
  }
}

interface RawServeOptions {
  config?: string;
  dataDir?: string;
  listen?: string;
  adminListen?: string;
  kubeconfig?: string;
  workers?: string;
  injectThreads?: string;
  meshDir?: string;
  prometheusUrl?: string;
}

export function registerServe(program: Command, _io: CliIO, setExit: (code: number) => void): void {
  program
    .command('serve')
    .description('run the injector webhook and the CA API (HTTPS) and the admin endpoints (HTTP)')
    .option('--config <file>', 'configuration file (YAML or JSON)')
    .option(
      '--data-dir <dir>',
      'local mode: where the CA, admin-token and tokens.json live (default .data)',
    )
    .option(
      '--listen <host:port>',
      'HTTPS address of the webhook and the CA API (default 0.0.0.0:8443)',
    )
    .option(
      '--admin-listen <host:port>',
      'HTTP address of /healthz, /readyz, /metrics (default 0.0.0.0:9090)',
    )
    .option('--kubeconfig <file>', 'run in cluster mode against this cluster')
    .option(
      '--mesh-dir <dir>',
      'local mode: read the mesh (Services, EndpointSlices, Pods, PeerAuthentications, AuthorizationPolicies, RequestAuthentications, VirtualServices, DestinationRules, ServiceEntries, Sidecars, WorkloadEntries, Telemetries, HTTPRoutes, GRPCRoutes, TCPRoutes, TLSRoutes) from the YAML and JSON files of this directory',
    )
    .option(
      '--workers <n|auto>',
      'processes serving the HTTPS port: N, or auto for one per CPU (default 1)',
    )
    .option(
      '--inject-threads <n|auto>',
      'threads answering admission reviews: N, 0 for the event loop, or auto (default)',
    )
    .option(
      '--prometheus-url <url>',
      'Prometheus that scrapes the sidecars: the mesh graph at /ui/graph on the admin port reads it',
    )
    .action(async (raw: RawServeOptions) => {
      const flags: ServeFlags = {
        ...(raw.config === undefined ? {} : { config: raw.config }),
        ...(raw.dataDir === undefined ? {} : { dataDir: raw.dataDir }),
        ...(raw.listen === undefined ? {} : { listen: raw.listen }),
        ...(raw.adminListen === undefined ? {} : { adminListen: raw.adminListen }),
        ...(raw.kubeconfig === undefined ? {} : { kubeconfig: raw.kubeconfig }),
        ...(raw.workers === undefined ? {} : { workers: raw.workers }),
        ...(raw.injectThreads === undefined ? {} : { injectThreads: raw.injectThreads }),
        ...(raw.meshDir === undefined ? {} : { meshDir: raw.meshDir }),
        ...(raw.prometheusUrl === undefined ? {} : { prometheusUrl: raw.prometheusUrl }),
      };
      checkAddressFlag('--listen', flags.listen);
      checkAddressFlag('--admin-listen', flags.adminListen);
      checkCountFlag('--workers', flags.workers, 1);
      checkCountFlag('--inject-threads', flags.injectThreads, 0);
      // The server's modules load here, not when the CLI starts: other commands never pay for them.
      const [
        workers,
        { resolveConfig, workerCount },
        { MESH_DIR_IN_CLUSTER_MODE, startServer },
        { detectMode },
      ] = await Promise.all([
        import('../server/workers'),
        import('../server/config'),
        import('../server/server'),
        import('../server/mode'),
      ]);
      if (workers.isServeWorker()) {
        setExit(await workers.runWorker(flags));
        return;
      }
      const config = resolveConfig(flags);
      if (config.server.meshDir !== null && detectMode(flags, process.env) === 'cluster') {
        throw new UsageError(MESH_DIR_IN_CLUSTER_MODE);
      }
      if (workerCount(config) > 1) {
        setExit(await workers.runPrimary(flags, config));
        return;
      }
      const server = await startServer(flags, { env: process.env });
      let signals = 0;
      const onSignal = (signal: NodeJS.Signals): void => {
        signals += 1;
        if (signals > 1) {
          server.logger.warn({ signal }, 'second signal: closing every connection now');
          server.webhook.server.closeAllConnections();
          server.admin?.server.closeAllConnections();
          return;
        }
        void server.close(signal);
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
      await server.closed;
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      setExit(EXIT.ok);
    });
}

// `mooring serve`: the composition root of the server process. It reads the configuration,
// builds the logger, the metrics registry, the mode's adapters (local: the CA in --data-dir,
// tokens.json, admin-token; cluster: Kubernetes-backed, see buildClusterMode), the serving
// certificate, the two apps, and listens. SIGTERM/SIGINT: stop accepting, finish what is in
// flight, exit 0.

import { existsSync, readFileSync } from 'node:fs';
import { isIP, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Server as HttpsServer } from 'node:https';
import type { Command } from 'commander';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { Logger } from 'pino';
import type { DestinationStream } from 'pino';
import type { Registry } from 'prom-client';
import type { PodInjector } from '../admission';
import { usableCpus } from '../adapters/cpus';
import type { InjectThreadData } from '../adapters/inject-thread';
import type { InjectThreads } from '../adapters/inject-threads';
import { systemClock } from '../adapters/system-clock';
import { TlsReloader } from '../adapters/tls-reloader';
import type { CryptoMode } from '../ca/csr';
import type {
  AdminAuthorizer,
  Authenticator,
  CertificateService,
  Clock,
  WorkloadIdentity,
} from '../ca/ports';
import { loadConfigFile } from '../config/load';
import type { Config } from '../config/types';
import { validateConfig } from '../config/validate';
import { MooringError } from '../errors';
import type { Readiness } from '../http';
import { EXIT, UsageError, type CliIO } from './io';

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
}

// --- configuration -----------------------------------------------------------------------------

/** The configuration file (or the defaults) with the command-line flags on top, validated. */
export function resolveConfig(flags: ServeFlags): Config {
  const base = loadConfigFile(flags.config);
  const server = {
    ...base.server,
    ...(flags.listen === undefined ? {} : { listen: flags.listen }),
    ...(flags.adminListen === undefined ? {} : { adminListen: flags.adminListen }),
    ...(flags.dataDir === undefined ? {} : { dataDir: flags.dataDir }),
    ...(flags.workers === undefined
      ? {}
      : { workers: flags.workers === 'auto' ? 'auto' : Number(flags.workers) }),
    ...(flags.injectThreads === undefined
      ? {}
      : {
          injectThreads: flags.injectThreads === 'auto' ? 'auto' : Number(flags.injectThreads),
        }),
  };
  return validateConfig({ ...structuredClone(base), server }, flags.config ?? 'flags');
}

/** A count flag (`--workers`, `--inject-threads`): `auto` or an integer from `min` to 64. */
function checkCountFlag(flag: string, value: string | undefined, min: number): void {
  if (value === undefined || value === 'auto') return;
  if (!/^[0-9]+$/.test(value) || Number(value) < min || Number(value) > 64) {
    throw new UsageError(`${flag} must be a number from ${min} to 64, or auto; got "${value}"`);
  }
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

/** `HOST:PORT` or `[IPv6]:PORT`. */
export function parseHostPort(value: string, flag: string): HostPort {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):([0-9]{1,5})$/.exec(value);
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (host === undefined || !Number.isInteger(port) || port > 65535) {
    throw new UsageError(`${flag} must be HOST:PORT, got "${value}"`);
  }
  return { host, port };
}

/** Names the local serving certificate is valid for: localhost, 127.0.0.1, and the listen host. */
export function localServingNames(listenHost: string): {
  dnsNames: string[];
  ipAddresses: string[];
} {
  const dnsNames = ['localhost'];
  const ipAddresses = ['127.0.0.1'];
  const wildcard = listenHost === '0.0.0.0' || listenHost === '::';
  if (!wildcard) {
    if (isIP(listenHost) !== 0) {
      if (!ipAddresses.includes(listenHost)) ipAddresses.push(listenHost);
    } else if (!dnsNames.includes(listenHost)) {
      dnsNames.push(listenHost);
    }
  }
  return { dnsNames, ipAddresses };
}

// --- modes -------------------------------------------------------------------------------------

export type ModeName = 'local' | 'cluster';

export const SERVICE_ACCOUNT_TOKEN = '/var/run/secrets/kubernetes.io/serviceaccount/token';

/** Cluster mode when --kubeconfig is given or an in-cluster service account exists. */
export function detectMode(
  flags: ServeFlags,
  env: NodeJS.ProcessEnv,
  tokenExists: (path: string) => boolean = existsSync,
): ModeName {
  if (flags.kubeconfig !== undefined) return 'cluster';
  if (env.KUBERNETES_SERVICE_HOST !== undefined && tokenExists(SERVICE_ACCOUNT_TOKEN))
    return 'cluster';
  return 'local';
}

export interface ModeContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly clock: Clock;
  readonly listen: HostPort;
  readonly kubeconfig?: string;
  /** The process's metrics registry (served on /metrics), for the mode's own metrics. */
  readonly registry?: Registry;
  /** Where CSR signatures are checked and certificates signed (see serverCryptoMode). */
  readonly cryptoMode?: CryptoMode;
}

/** What a mode gives the server: the ports of the CA and its periodic work. */
export interface ModeAdapters {
  readonly name: ModeName;
  readonly certificates: CertificateService;
  readonly authenticator: Authenticator;
  readonly adminAuthorizer: AdminAuthorizer;
  readonly spiffeIdOf: (identity: WorkloadIdentity) => string;
  /** DNS names and IPs of the webhook's serving certificate. */
  readonly servingNames: { readonly dnsNames: string[]; readonly ipAddresses: string[] };
  /** Periodic work: pick up store changes, rotation transitions. */
  tick(): Promise<void>;
  close(): Promise<void>;
}

export type ModeBuilder = (ctx: ModeContext) => Promise<ModeAdapters>;

/** Local mode: everything in --data-dir (PRODUCT.md "Local mode"). */
export const buildLocalMode: ModeBuilder = async (ctx) => {
  // Loaded on demand so that nothing of the CA is imported when another command runs.
  const local = await import('./serve-local');
  return local.buildLocalMode(ctx);
};

/**
 * Cluster mode (src/cli/serve-cluster.ts): the CA in a Secret, TokenReview and
 * SubjectAccessReview, Lease-guarded rotation. Loaded on demand: local mode never loads the
 * Kubernetes client.
 */
export const buildClusterMode: ModeBuilder = async (ctx) => {
  const cluster = await import('./serve-cluster');
  return cluster.buildClusterMode(ctx);
};

// --- the server --------------------------------------------------------------------------------

export interface ServeEnvironment {
  readonly env: NodeJS.ProcessEnv;
  /** Where the JSON logs go (stderr by default). */
  readonly logDestination?: DestinationStream;
  readonly clock?: Clock;
  /** Overrides the mode chosen by detectMode (tests). */
  readonly buildMode?: ModeBuilder;
  /** The injector; the real one by default. */
  readonly injectPod?: PodInjector;
  /**
   * 'single' (default): the whole server in this process. 'worker': one of server.workers
   * processes under src/cli/serve-workers.ts: no admin port (the primary serves it).
   */
  readonly role?: 'single' | 'worker';
}

/**
 * CSR checks and signatures run on the event loop, batched: those of the requests that arrive
 * together run back to back. It beat libuv's thread pool (two thread hand-offs per certificate)
 * and one-at-a-time checks, in one process and with workers (bench/RESULTS-ca.md).
 */
export function serverCryptoMode(_role: 'single' | 'worker'): CryptoMode {
  return 'batched';
}

export interface RunningServer {
  readonly config: Config;
  readonly mode: ModeAdapters;
  readonly logger: Logger;
  readonly registry: Registry;
  readonly reloader: TlsReloader;
  readonly webhook: FastifyInstance;
  /** Null in a worker process: its primary serves the admin port. */
  readonly admin: FastifyInstance | null;
  readonly webhookAddress: AddressInfo;
  readonly adminAddress: AddressInfo | null;
  readiness(): Readiness;
  /** Graceful stop: not ready, stop accepting, finish in-flight requests, close. Idempotent. */
  close(reason?: string): Promise<void>;
  /** Resolves once the server has stopped. */
  readonly closed: Promise<void>;
}

async function realInjector(config: Config, version: string): Promise<PodInjector> {
  const { podInjector } = await import('../injector');
  return podInjector(config, version);
}

/** With inject threads the event loop never runs the injector. */
const refuseOnEventLoop: PodInjector = () => {
  throw new MooringError('INJ_ERR_INTERNAL', 'the injector runs in the inject threads only');
};

/** Reviews answered in threads when the count says so and the injector is the real one. */
async function startInjectThreads(
  config: Config,
  environment: ServeEnvironment,
  version: string,
  logger: Logger,
  onRestart: () => void,
): Promise<InjectThreads | null> {
  const count = injectThreadCount(config, environment.role ?? 'single');
  if (count === 0 || environment.injectPod !== undefined) return null;
  const { InjectThreads } = await import('../adapters/inject-threads');
  const data: InjectThreadData = { config, version };
  const threads = new InjectThreads({
    size: count,
    workerData: data,
    logger: logger.child({ component: 'inject-threads' }),
    onRestart,
  });
  await threads.start();
  return threads;
}

export function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as {
      version?: unknown;
    };
    return typeof pkg.version === 'string' ? pkg.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/**
 * Builds everything and listens on both ports. The admin port opens first, so that /healthz
 * answers and /readyz says 503 while the CA loads; resolves once both accept connections.
 */
export async function startServer(
  flags: ServeFlags,
  environment: ServeEnvironment,
): Promise<RunningServer> {
  // The server's modules load here, not when the CLI starts: other commands never pay for them.
  const [
    { buildAdminApp, buildWebhookApp, createMooringMetrics },
    { createLogger },
    { createRegistry },
  ] = await Promise.all([
    import('../http'),
    import('../observability/logger'),
    import('../observability/metrics'),
  ]);
  const config = resolveConfig(flags);
  const listen = parseHostPort(config.server.listen, '--listen');
  const adminListen = parseHostPort(config.server.adminListen, '--admin-listen');
  const logger = createLogger(config.server.logLevel, environment.logDestination);
  const fastifyLogger = logger as FastifyBaseLogger;
  const clock = environment.clock ?? systemClock;
  const version = packageVersion();
  const modeName = detectMode(flags, environment.env);
  const buildMode =
    environment.buildMode ?? (modeName === 'cluster' ? buildClusterMode : buildLocalMode);
  const started = performance.now();

  // Filled in as the server comes up; readiness and metrics read them.
  let mode: ModeAdapters | null = null;
  let reloader: TlsReloader | null = null;
  let threads: InjectThreads | null = null;
  let closing = false;
  const readiness = (): Readiness => {
    const checks = {
      caLoaded: mode?.certificates.ready() ?? false,
      servingCertificate: reloader?.valid(clock.now()) ?? false,
      accepting: !closing,
    };
    return { ready: checks.caLoaded && checks.servingCertificate && checks.accepting, checks };
  };
  const registry = createRegistry();
  const metrics = createMooringMetrics(registry, {
    caStatus: () => (mode?.certificates.ready() ? mode.certificates.status() : null),
    servingCert: () => reloader?.current() ?? null,
    injectThreads: () => threads?.readyCount() ?? 0,
  });
  const role = environment.role ?? 'single';
  const admin =
    role === 'worker' ? null : buildAdminApp({ logger: fastifyLogger, registry, readiness });
  if (admin !== null) {
    try {
      await admin.listen({ host: adminListen.host, port: adminListen.port });
    } catch (err) {
      await admin.close();
      throw listenError('--admin-listen', config.server.adminListen, err);
    }
  }

  let webhook: FastifyInstance | null = null;
  // The threads load the injector while this thread loads the CA.
  const threadsStarting = startInjectThreads(config, environment, version, logger, () =>
    metrics.injectThreadRestarts.inc(),
  );
  // Awaited below; a failure while the CA loads must not count as an unhandled rejection.
  threadsStarting.catch(() => undefined);
  try {
    mode = await buildMode({
      config,
      logger,
      clock,
      listen,
      registry,
      cryptoMode: serverCryptoMode(role),
      ...(flags.kubeconfig === undefined ? {} : { kubeconfig: flags.kubeconfig }),
    });
    threads = await threadsStarting;
    const injectPod =
      environment.injectPod ??
      (threads === null ? await realInjector(config, version) : refuseOnEventLoop);
    reloader = new TlsReloader({
      certificates: mode.certificates,
      clock,
      dnsNames: mode.servingNames.dnsNames,
      ipAddresses: mode.servingNames.ipAddresses,
      lifetimeSeconds: config.ca.servingCertLifetimeSeconds,
      renewFraction: config.ca.servingCertRenewFraction,
      logger: logger.child({ component: 'tls' }),
    });
    const serving = await reloader.start();
    webhook = buildWebhookApp({
      logger: fastifyLogger,
      metrics,
      bodyLimitBytes: config.server.bodyLimitBytes,
      failOpen: config.injector.failOpen,
      injectPod,
      ...(threads === null ? {} : { injectThreads: threads }),
      certificates: mode.certificates,
      authenticator: mode.authenticator,
      adminAuthorizer: mode.adminAuthorizer,
      spiffeIdOf: mode.spiffeIdOf,
      tls: { key: serving.key, cert: serving.cert },
    });
    reloader.attach(webhook.server as unknown as HttpsServer);
    try {
      await webhook.listen({ host: listen.host, port: listen.port });
    } catch (err) {
      throw listenError('--listen', config.server.listen, err);
    }
  } catch (err) {
    reloader?.stop();
    await Promise.allSettled([
      webhook?.close(),
      admin?.close(),
      mode?.close(),
      threadsStarting.then((t) => t?.close()),
    ]);
    throw err;
  }
  const readyThreads: InjectThreads | null = threads;
  const readyMode: ModeAdapters = mode;
  const readyReloader: TlsReloader = reloader;
  const webhookApp: FastifyInstance = webhook;
  const webhookAddress = webhookApp.server.address() as AddressInfo;
  const adminAddress = admin === null ? null : (admin.server.address() as AddressInfo);

  // Periodic work: CA store changes and rotation, then the serving certificate (issuer change).
  let ticking = false;
  const tick = async (): Promise<void> => {
    if (ticking || closing) return;
    ticking = true;
    try {
      await readyMode.tick();
      await readyReloader.check();
    } catch (err) {
      logger.error({ err }, 'periodic CA work failed; retrying at the next tick');
    } finally {
      ticking = false;
    }
  };
  const tickTimer = setInterval(() => void tick(), tickIntervalMs(config));
  tickTimer.unref();

  logger.info(
    {
      mode: readyMode.name,
      version,
      listen: `${webhookAddress.address}:${webhookAddress.port}`,
      ...(adminAddress === null
        ? {}
        : { adminListen: `${adminAddress.address}:${adminAddress.port}` }),
      dataDir: readyMode.name === 'local' ? config.server.dataDir : undefined,
      servingSerial: readyReloader.current()?.serialNumber,
      startupMs: Math.round(performance.now() - started),
    },
    role === 'worker' ? 'worker is ready' : 'mooring serve is ready',
  );

  let resolveClosed: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => {
    resolveClosed = resolve;
  });
  let closingPromise: Promise<void> | null = null;
  const close = (reason = 'shutdown'): Promise<void> => {
    closingPromise ??= (async () => {
      closing = true;
      logger.info({ reason }, 'shutting down: no new connections, finishing requests in flight');
      clearInterval(tickTimer);
      readyReloader.stop();
      // Connections that finish a request from now on close right after it (Node applies the
      // keep-alive timeout when a response ends), so close() does not wait for idle clients.
      webhookApp.server.keepAliveTimeout = 1;
      const grace = setTimeout(() => {
        logger.warn(
          { graceSeconds: config.server.shutdownGraceSeconds },
          'grace period over: closing connections',
        );
        webhookApp.server.closeAllConnections();
      }, config.server.shutdownGraceSeconds * 1000);
      grace.unref();
      try {
        await webhookApp.close();
        await readyThreads?.close();
        await admin?.close();
        await readyMode.close();
      } finally {
        clearTimeout(grace);
        logger.info('stopped');
        logger.flush();
        resolveClosed();
      }
    })();
    return closingPromise;
  };

  return {
    config,
    mode: readyMode,
    logger,
    registry,
    reloader: readyReloader,
    webhook: webhookApp,
    admin,
    webhookAddress,
    adminAddress,
    readiness,
    close,
    closed,
  };
}

export function listenError(flag: string, address: string, err: unknown): MooringError {
  return new MooringError(
    'SRV_ERR_LISTEN',
    `${flag} ${address}: cannot listen: ${(err as Error).message}`,
    { cause: err },
  );
}

/** How often the CA's periodic work runs: the configured interval, at most every 10 seconds. */
export function tickIntervalMs(config: Config): number {
  return Math.min(config.ca.rotation.checkIntervalSeconds, 10) * 1000;
}

// --- the command -------------------------------------------------------------------------------

interface RawServeOptions {
  config?: string;
  dataDir?: string;
  listen?: string;
  adminListen?: string;
  kubeconfig?: string;
  workers?: string;
  injectThreads?: string;
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
      '--workers <n|auto>',
      'processes serving the HTTPS port: N, or auto for one per CPU (default 1)',
    )
    .option(
      '--inject-threads <n|auto>',
      'threads answering admission reviews: N, 0 for the event loop, or auto (default)',
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
      };
      if (flags.listen !== undefined) parseHostPort(flags.listen, '--listen');
      if (flags.adminListen !== undefined) parseHostPort(flags.adminListen, '--admin-listen');
      checkCountFlag('--workers', flags.workers, 1);
      checkCountFlag('--inject-threads', flags.injectThreads, 0);
      const workers = await import('./serve-workers');
      if (workers.isServeWorker()) {
        setExit(await workers.runWorker(flags));
        return;
      }
      const config = resolveConfig(flags);
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

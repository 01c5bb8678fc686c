// `mooring serve`: the composition root of the server process. It builds the logger, the metrics
// registry, the mode's adapters (local: the CA in --data-dir, tokens.json, admin-token; cluster:
// Kubernetes-backed), the serving certificate, the two apps, and listens; close() stops accepting,
// finishes what is in flight and resolves. The command (src/cli/serve.ts) parses the flags and
// handles the signals; workers.ts runs several of these behind one port.

import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { DestinationStream, Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { PodInjector } from '../admission';
import type { InjectThreadData } from '../adapters/inject-thread';
import type { InjectThreads } from '../adapters/inject-threads';
import { systemClock } from '../adapters/system-clock';
import { TlsReloader } from '../adapters/tls-reloader';
import type { CryptoMode } from '../ca/csr';
import type { Clock } from '../ca/ports';
import type { Config } from '../config/types';
import { MOORING_VERSION } from '../constants';
import { MooringError } from '../errors';
import type { Readiness } from '../http';
import {
  injectThreadCount,
  parseHostPort,
  resolveConfig,
  tickIntervalMs,
  type ServeFlags,
} from './config';
import { graphDeps } from './graph';
import { detectMode, MODE_CHECK_INTERVAL_MS, type ModeAdapters, type ModeBuilder } from './mode';
import type { MeshRuntime } from './mesh/runtime';

// --- the modes ---------------------------------------------------------------------------------

/** Local mode: everything in --data-dir (PRODUCT.md "Local mode"). */
export const buildLocalMode: ModeBuilder = async (ctx) => {
  // Loaded on demand so that nothing of the CA is imported when another command runs.
  const local = await import('./local-mode');
  return local.buildLocalMode(ctx);
};

/**
 * Cluster mode (cluster-mode.ts): the CA in a Secret, TokenReview and SubjectAccessReview,
 * Lease-guarded rotation. Loaded on demand: local mode never loads the Kubernetes client.
 */
export const buildClusterMode: ModeBuilder = async (ctx) => {
  const cluster = await import('./cluster-mode');
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
   * processes under workers.ts: no admin port (the primary serves it).
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
  /** The mesh model and its push to the proxies. */
  readonly mesh: MeshRuntime;
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
    { deferredMeshDebug, startMesh },
  ] = await Promise.all([
    import('../http'),
    import('../observability/logger'),
    import('../observability/metrics'),
    import('./mesh/runtime'),
  ]);
  const config = resolveConfig(flags);
  const listen = parseHostPort(config.server.listen, '--listen');
  const adminListen = parseHostPort(config.server.adminListen, '--admin-listen');
  const logger = createLogger(config.server.logLevel, environment.logDestination);
  const fastifyLogger = logger as FastifyBaseLogger;
  const clock = environment.clock ?? systemClock;
  const version = MOORING_VERSION;
  const modeName = detectMode(flags, environment.env);
  if (modeName === 'cluster' && config.server.meshDir !== null) {
    throw new MooringError('CFG_ERR_INVALID', MESH_DIR_IN_CLUSTER_MODE);
  }
  const buildMode =
    environment.buildMode ?? (modeName === 'cluster' ? buildClusterMode : buildLocalMode);
  const started = performance.now();

  // Filled in as the server comes up; readiness and metrics read them.
  let mode: ModeAdapters | null = null;
  let reloader: TlsReloader | null = null;
  let threads: InjectThreads | null = null;
  let mesh: MeshRuntime | null = null;
  let closing = false;
  /** The mode's checks as last read (refreshed every MODE_CHECK_INTERVAL_MS). */
  let modeChecks: Readonly<Record<string, string | null>> = {};
  const readiness = (): Readiness => {
    const checks: Record<string, boolean> = {
      caLoaded: mode?.certificates.ready() ?? false,
      servingCertificate: reloader?.valid(clock.now()) ?? false,
      accepting: !closing,
    };
    const problems: Record<string, string> = {};
    for (const [name, problem] of Object.entries(modeChecks)) {
      checks[name] = problem === null;
      if (problem !== null) problems[name] = problem;
    }
    return { ready: Object.values(checks).every(Boolean), checks, problems };
  };
  const registry = createRegistry();
  const metrics = createMooringMetrics(registry, {
    caStatus: () => (mode?.certificates.ready() ? mode.certificates.status() : null),
    servingCert: () => reloader?.current() ?? null,
    injectThreads: () => threads?.readyCount() ?? 0,
  });
  const role = environment.role ?? 'single';
  const admin =
    role === 'worker'
      ? null
      : buildAdminApp({
          logger: fastifyLogger,
          registry,
          readiness,
          meshDebug: deferredMeshDebug(() => mesh),
          graph: graphDeps(config),
        });
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
    mesh = await startMesh({
      config,
      plan: mode.mesh ?? {
        rootNamespace: config.cluster.namespace,
        source: null,
        waitForSource: false,
      },
      log: logger.child({ component: 'mesh' }),
      registry,
    });
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
      meshWatch: mesh.push,
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
    await mesh?.close();
    await Promise.allSettled([
      webhook?.close(),
      admin?.close(),
      mode?.close(),
      threadsStarting.then((t) => t?.close()),
    ]);
    throw err;
  }
  const readyMesh: MeshRuntime = mesh;
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
  const readModeChecks = async (): Promise<void> => {
    try {
      modeChecks = (await readyMode.checks?.()) ?? {};
    } catch (err) {
      logger.error({ err }, 'reading the readiness checks of the mode failed');
    }
  };
  await readModeChecks();
  const checkTimer = setInterval(() => void readModeChecks(), MODE_CHECK_INTERVAL_MS);
  checkTimer.unref();
  const configWatcher = await watchConfigFile(flags, config, readyMesh, logger);

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
      clearInterval(checkTimer);
      configWatcher?.stop();
      readyReloader.stop();
      // The watch streams never end on their own: end them, so that the agents reconnect (to
      // another replica) and close() does not wait for them.
      readyMesh.push.close();
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
        await readyMesh.close();
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
    mesh: readyMesh,
    readiness,
    close,
    closed,
  };
}

export const MESH_DIR_IN_CLUSTER_MODE =
  '--mesh-dir (server.meshDir) is for local mode: in cluster mode the mesh is read from the API server';

export function listenError(flag: string, address: string, err: unknown): MooringError {
  return new MooringError(
    'SRV_ERR_LISTEN',
    `${flag} ${address}: cannot listen: ${(err as Error).message}`,
    { cause: err },
  );
}

/**
 * Follows the configuration file: a change of its `mesh` part reaches the proxies at once (the
 * next push); other parts apply at the next start, and a warning says which. An invalid file
 * keeps the running configuration.
 */
async function watchConfigFile(
  flags: ServeFlags,
  started: Config,
  mesh: MeshRuntime,
  logger: Logger,
): Promise<{ stop(): void } | null> {
  if (flags.config === undefined) return null;
  const { FileWatcher } = await import('../adapters/file-watcher');
  const path = flags.config;
  const watcher = new FileWatcher(path, {
    onChange: () => {
      let next: Config;
      try {
        next = resolveConfig(flags);
      } catch (err) {
        logger.error(
          { config: path, err: (err as Error).message },
          'the configuration file is invalid: keeping the running configuration',
        );
        return;
      }
      mesh.applyConfig(next);
      const restart = (Object.keys(next) as (keyof Config)[]).filter(
        (key) => key !== 'mesh' && JSON.stringify(next[key]) !== JSON.stringify(started[key]),
      );
      if (restart.length > 0) {
        logger.warn(
          { config: path, keys: restart },
          'the configuration file changed: these parts apply at the next start of mooring serve',
        );
      }
    },
  });
  await watcher.start();
  return watcher;
}

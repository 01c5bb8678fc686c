// `mooring serve` with server.workers > 1: a primary process and N node:cluster workers.
//
// Every worker is a whole server (server.ts, role 'worker'): it opens the CA, issues its
// own serving certificate, ticks, and serves the HTTPS port, which the workers share (the
// primary accepts connections and hands them round-robin to the workers). Several workers are
// safe for the same reasons several replicas are: the local store's writes are optimistic and
// atomic, cluster mode's rotation is guarded by a Lease.
//
// The primary holds no CA and serves no HTTPS. It serves the admin port: /readyz is 200 when
// every worker is ready, /metrics is the sum over the workers (prom-client's AggregatorRegistry)
// plus its own worker metrics. A worker that dies is replaced (with backoff); one that fails
// before it was ever ready stops the whole server, as a single process would stop. SIGTERM:
// every worker finishes what it has in flight and exits, then the primary exits 0.

import cluster, { type Worker } from 'node:cluster';
import type { AddressInfo } from 'node:net';
import type { DestinationStream, Logger } from 'pino';
import { restartDelayMs } from '../backoff';

/** Exit codes of `mooring serve` (the CLI's: 0 success, 1 failure). */
const EXIT_OK = 0;
const EXIT_FAILURE = 1;
import type { Config } from '../config/types';
import type { ConfigDumpView, MeshDebug, ObjectsView, SynczView } from './mesh/runtime';
import { graphDeps } from './graph';
import { parseHostPort, workerCount, type ServeFlags } from './config';
import { listenError, startServer } from './server';

/** Set in the environment of the processes the primary forks. */
export const WORKER_ENV = 'MOORING_SERVE_WORKER';

/** True in a process the primary forked as a worker. */
export function isServeWorker(env: NodeJS.ProcessEnv = process.env): boolean {
  return cluster.isWorker && env[WORKER_ENV] === '1';
}

/** Messages from a worker to the primary. */
export type WorkerMessage =
  | { readonly mooring: 'listening'; readonly address: string; readonly port: number }
  | { readonly mooring: 'readiness'; readonly ready: boolean }
  | { readonly mooring: 'mesh-debug-answer'; readonly id: number; readonly body: unknown };

/** The primary asks a worker for a mesh debug view (each worker has its own streams). */
export interface MeshDebugRequest {
  readonly mooring: 'mesh-debug';
  readonly id: number;
  readonly view: 'syncz' | 'configDump' | 'objects';
  readonly pod?: string;
}

const isMeshDebugRequest = (m: unknown): m is MeshDebugRequest =>
  typeof m === 'object' && m !== null && (m as { mooring?: unknown }).mooring === 'mesh-debug';

function isWorkerMessage(m: unknown): m is WorkerMessage {
  return typeof m === 'object' && m !== null && 'mooring' in m;
}

// --- the worker --------------------------------------------------------------------------------

const READINESS_POLL_MS = 1000;

/** A worker: the whole server without the admin port; tells the primary when it is ready. */
export async function runWorker(flags: ServeFlags): Promise<number> {
  // The IPC channel keeps a worker's event loop alive: let go of it once the worker is done
  // (or could not start), so that the process exits and its primary sees it.
  const release = (): void => {
    if (process.connected) process.disconnect();
  };
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer(flags, { env: process.env, role: 'worker' });
  } catch (err) {
    release();
    throw err;
  }
  // The primary asks for metrics over IPC: constructing an AggregatorRegistry installs the
  // worker's listener, which answers from this process's registry.
  const { AggregatorRegistry } = await import('prom-client');
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([server.registry]);

  const send = (m: WorkerMessage): void => {
    if (process.connected) process.send?.(m);
  };
  send({
    mooring: 'listening',
    address: server.webhookAddress.address,
    port: server.webhookAddress.port,
  });
  // The primary's admin port shows the mesh of every worker: answer its questions.
  const onPrimaryMessage = (m: unknown): void => {
    if (!isMeshDebugRequest(m)) return;
    const answer = (body: unknown): void => send({ mooring: 'mesh-debug-answer', id: m.id, body });
    const view =
      m.view === 'syncz'
        ? server.mesh.syncz()
        : m.view === 'objects'
          ? server.mesh.objects()
          : server.mesh.configDump(m.pod ?? '');
    view.then(answer, () => answer(null));
  };
  process.on('message', onPrimaryMessage);
  let last: boolean | null = null;
  const report = (): void => {
    const { ready } = server.readiness();
    if (ready !== last) send({ mooring: 'readiness', ready });
    last = ready;
  };
  report();
  const poll = setInterval(report, READINESS_POLL_MS);
  poll.unref();

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals > 1) {
      server.webhook.server.closeAllConnections();
      return;
    }
    void server.close(signal);
  };
  // Ctrl-C reaches the whole process group: the primary handles it and sends SIGTERM, so that a
  // worker never stops before its primary knows the server is stopping. A primary that dies
  // takes the workers with it: node:cluster ends a worker whose IPC channel closes unexpectedly.
  const ignore = (): void => undefined;
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', ignore);
  await server.closed;
  process.off('message', onPrimaryMessage);
  clearInterval(poll);
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', ignore);
  release();
  return EXIT_OK;
}

// --- the primary -------------------------------------------------------------------------------

interface WorkerState {
  readonly worker: Worker;
  ready: boolean;
  everReady: boolean;
  listening: { address: string; port: number } | null;
}

export interface PrimaryEnvironment {
  /** Where the JSON logs go (stderr by default). */
  readonly logDestination?: DestinationStream;
}

/** The primary: forks the workers, serves the admin port, supervises, stops them on SIGTERM. */
export async function runPrimary(
  flags: ServeFlags,
  config: Config,
  environment: PrimaryEnvironment = {},
): Promise<number> {
  const [{ buildAdminApp }, { createLogger }, promClient] = await Promise.all([
    import('../http'),
    import('../observability/logger'),
    import('prom-client'),
  ]);
  const count = workerCount(config);
  const logger: Logger = createLogger(config.server.logLevel, environment.logDestination).child({
    role: 'primary',
  });
  const adminListen = parseHostPort(config.server.adminListen, '--admin-listen');

  // The primary's own metrics, next to the workers' summed ones (distinct names).
  const own = new promClient.Registry();
  const workersGauge = new promClient.Gauge({
    name: 'mooring_workers',
    help: 'Worker processes of mooring serve by state (running, ready), and the configured count.',
    labelNames: ['state'],
    registers: [own],
  });
  const restarts = new promClient.Counter({
    name: 'mooring_worker_restarts_total',
    help: 'Worker processes replaced after they exited unexpectedly.',
    registers: [own],
  });
  const aggregator = new promClient.AggregatorRegistry();
  const metricsSource = {
    contentType: aggregator.contentType,
    async metrics(): Promise<string> {
      // A worker still booting does not answer the aggregator yet, which would then wait 5 s
      // and fail. Until every worker is ready, the primary's own metrics alone: the restart
      // count and the workers by state are what one wants to see during a crash loop.
      if (!readiness().checks.workersReady) return own.metrics();
      const workers = String(await aggregator.clusterMetrics());
      return `${workers.trimEnd()}\n${await own.metrics()}`;
    },
  };

  const states = new Map<number, WorkerState>();
  let closing = false;
  const readiness = () => {
    const all = [...states.values()];
    const workersReady = all.length === count && all.every((s) => s.ready);
    return { ready: workersReady && !closing, checks: { workersReady, accepting: !closing } };
  };
  workersGauge.set({ state: 'configured' }, count);
  const updateGauge = (): void => {
    workersGauge.set({ state: 'running' }, states.size);
    workersGauge.set({ state: 'ready' }, [...states.values()].filter((s) => s.ready).length);
  };

  const meshDebug = workersMeshDebug(() =>
    [...states.values()].filter((s) => s.ready).map((s) => s.worker),
  );
  const admin = buildAdminApp({
    logger: logger,
    registry: metricsSource,
    readiness,
    meshDebug: meshDebug.debug,
    graph: graphDeps(config),
  });
  try {
    await admin.listen({ host: adminListen.host, port: adminListen.port });
  } catch (err) {
    await admin.close();
    throw listenError('--admin-listen', config.server.adminListen, err);
  }
  const adminAddress = admin.server.address() as AddressInfo;

  let exitCode: number = EXIT_OK;
  let announced = false;
  let resolveStopped: () => void = () => undefined;
  const stopped = new Promise<void>((resolve) => {
    resolveStopped = resolve;
  });
  let stopping: Promise<void> | null = null;
  const failures: number[] = [];

  const fork = (): void => {
    const worker = cluster.fork({ [WORKER_ENV]: '1' });
    const state: WorkerState = { worker, ready: false, everReady: false, listening: null };
    states.set(worker.id, state);
    updateGauge();
    worker.on('message', (m: unknown) => {
      if (!isWorkerMessage(m)) return;
      if (m.mooring === 'mesh-debug-answer') {
        meshDebug.answer(worker.id, m.id, m.body);
        return;
      }
      if (m.mooring === 'listening') state.listening = { address: m.address, port: m.port };
      if (m.mooring === 'readiness') {
        state.ready = m.ready;
        state.everReady ||= m.ready;
        updateGauge();
        announceIfReady();
      }
    });
  };

  const announceIfReady = (): void => {
    if (announced || !readiness().ready) return;
    announced = true;
    const listening = [...states.values()][0]?.listening;
    logger.info(
      {
        workers: count,
        listen:
          listening === null || listening === undefined
            ? undefined
            : `${listening.address}:${listening.port}`,
        adminListen: `${adminAddress.address}:${adminAddress.port}`,
      },
      'mooring serve is ready',
    );
  };

  const stop = (reason: string, code: number): Promise<void> => {
    stopping ??= (async () => {
      closing = true;
      exitCode = code;
      logger.info({ reason }, 'shutting down: stopping the workers');
      for (const { worker } of states.values()) worker.process.kill('SIGTERM');
      // Each worker has the grace period of a single server; then they are killed.
      const hard = setTimeout(
        () => {
          for (const { worker } of states.values()) worker.process.kill('SIGKILL');
        },
        (config.server.shutdownGraceSeconds + 5) * 1000,
      );
      hard.unref();
      if (states.size > 0) {
        await new Promise<void>((resolve) => {
          const check = (): void => {
            if (states.size > 0) return;
            cluster.off('exit', check);
            resolve();
          };
          cluster.on('exit', check);
          check();
        });
      }
      clearTimeout(hard);
      await admin.close();
      logger.info('stopped');
      logger.flush();
      resolveStopped();
    })();
    return stopping;
  };

  cluster.on('exit', (worker, code, signal) => {
    const state = states.get(worker.id);
    states.delete(worker.id);
    updateGauge();
    if (closing) return;
    if (state !== undefined && !state.everReady) {
      logger.error(
        { worker: worker.id, workerPid: worker.process.pid, code, signal },
        'a worker failed before it was ready: stopping',
      );
      void stop('a worker failed to start', EXIT_FAILURE);
      return;
    }
    const now = Date.now();
    failures.push(now);
    while (failures.length > 0 && (failures[0] as number) < now - 60_000) failures.shift();
    const delayMs = restartDelayMs(failures.length);
    restarts.inc();
    logger.error(
      { worker: worker.id, workerPid: worker.process.pid, code, signal, restartInMs: delayMs },
      'a worker exited unexpectedly: starting a new one',
    );
    const timer = setTimeout(() => {
      if (!closing) fork();
    }, delayMs);
    timer.unref();
  });

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals += 1;
    if (signals > 1) {
      logger.warn({ signal }, 'second signal: the workers close every connection now');
      for (const { worker } of states.values()) worker.process.kill('SIGTERM');
      admin.server.closeAllConnections();
      return;
    }
    void stop(signal, EXIT_OK);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);

  logger.info({ workers: count }, 'starting the worker processes');
  for (let i = 0; i < count; i++) fork();
  await stopped;
  process.off('SIGTERM', onSignal);
  process.off('SIGINT', onSignal);
  return exitCode;
}

// --- the mesh's debug views over the workers -----------------------------------------------------

const MESH_DEBUG_TIMEOUT_MS = 5000;

/**
 * The primary's view of the mesh: each worker holds its own model (the same objects, read by
 * each) and its own streams (a proxy is connected to one of them). Streams are listed with their
 * worker; the configuration of a Pod and the objects are the first worker's.
 */
function workersMeshDebug(workers: () => Worker[]): {
  debug: MeshDebug;
  answer(worker: number, id: number, body: unknown): void;
} {
  let nextId = 1;
  const pending = new Map<
    number,
    { answers: Map<number, unknown>; expected: number; done: () => void }
  >();
  const ask = async (
    view: MeshDebugRequest['view'],
    pod?: string,
  ): Promise<Map<number, unknown>> => {
    const targets = workers();
    const id = nextId++;
    const answers = new Map<number, unknown>();
    if (targets.length === 0) return answers;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, MESH_DEBUG_TIMEOUT_MS);
      pending.set(id, {
        answers,
        expected: targets.length,
        done: () => {
          clearTimeout(timer);
          resolve();
        },
      });
      const request: MeshDebugRequest = {
        mooring: 'mesh-debug',
        id,
        view,
        ...(pod === undefined ? {} : { pod }),
      };
      for (const w of targets) w.send(request);
    });
    pending.delete(id);
    return answers;
  };
  const sorted = <T>(answers: Map<number, unknown>): [number, T][] =>
    [...answers].filter(([, body]) => body !== null).sort(([a], [b]) => a - b) as [number, T][];
  const debug: MeshDebug = {
    async syncz() {
      const answers = sorted<SynczView>(await ask('syncz'));
      return {
        version: Math.max(0, ...answers.map(([, v]) => v.version)),
        synced: answers.length > 0 && answers.every(([, v]) => v.synced),
        proxies: answers.flatMap(([worker, v]) => v.proxies.map((p) => ({ ...p, worker }))),
      };
    },
    async configDump(pod) {
      const answers = sorted<ConfigDumpView>(await ask('configDump', pod));
      const first = answers[0]?.[1];
      if (first === undefined) return null;
      return {
        ...first,
        streams: answers.flatMap(([worker, v]) => v.streams.map((st) => ({ ...st, worker }))),
      };
    },
    async objects() {
      const first = sorted<ObjectsView>(await ask('objects'))[0]?.[1];
      return first ?? { source: { source: 'none' }, counts: {}, problems: [] };
    },
  };
  return {
    debug,
    answer(worker, id, body) {
      const p = pending.get(id);
      if (p === undefined) return;
      p.answers.set(worker, body);
      if (p.answers.size >= p.expected) p.done();
    },
  };
}

// The composition root of `mooring agent`: builds the metrics registry and the agent's parts, and
// runs them until the agent stops. Resolves with the exit code. The parts, each a folder that
// imports none of the others (eslint.config.mjs holds the rule):
//
//   identity/     the workload certificate: key, CSR, CA call, chain check, output directory,
//                 renewal, the root file
//   health/       readiness (15021), metrics and the rewritten app probes (15020), `agent wait`
//   process/      supervision of a proxy command given after `--`, signals, drain
//   mesh-client/  the mesh configuration pushed by the server (GET /v1/mesh/watch)
//   proxy/        the sidecar proxy (15001 outbound, 15006 inbound, 15000 admin, 15090 stats);
//                 proxy/core/ is pure
//
// options.ts turns flags and environment into the options every part reads.

import { randomInt } from 'node:crypto';
import { promises as fs, readFileSync } from 'node:fs';
import type http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from 'pino';
import type { TcpKeepalive } from '../api/mesh';
import { systemClock } from '../adapters/system-clock';
import { generateKeyPair as generateKey } from '../ca/keys';
import type { Clock } from '../ca/ports';
import { createRegistry } from '../observability/metrics';
import { runProbe } from './health/probe-runner';
import {
  close,
  createAgentServer,
  createReadinessServer,
  listen,
  type Readiness,
} from './health/servers';
import { requestCertificate } from './identity/ca-client';
import { CertDirectory } from './identity/cert-dir';
import { CertificateLifecycle, systemTimers, type Timers } from './identity/lifecycle';
import { createAgentMetrics } from './identity/metrics';
import { readRootFile, RootFileWatcher } from './identity/root-watcher';
import { MeshClient } from './mesh-client';
import type { AgentOptions } from './options';
import { ChildCommand, supervise, type SignalSource } from './process/supervisor';
import {
  closeServer,
  createProxyAdminServer,
  createProxyStatsServer,
  listenOn,
} from './proxy/admin';
import {
  loadDropPages,
  loadHeapFreeBytes,
  loadMemoryTrim,
  loadOriginalDestination,
  loadTcpKeepalive,
} from './proxy/l4/original-dst';
import {
  dropColdPagesLater,
  processTrimmer,
  TRIM_INTERVAL_MS,
  type ColdPagesReport,
} from './proxy/memory-trim';
import { podMetrics } from './health/merged-metrics';
import { IstioMetrics } from './proxy/metrics';
import { SIDECAR_DEFAULTS, Sidecar } from './proxy/sidecar';
import { applyProxyBufferPool, applyProxyV8Flags } from './proxy/v8-flags';

export interface AgentRuntime {
  readonly log: Logger;
  readonly signals: SignalSource;
  readonly clock?: Clock;
  readonly timers?: Timers;
  readonly random?: () => number;
  /** Called once both servers listen (tests use port 0). */
  readonly onListening?: (addresses: { readiness: AddressInfo; agent: AddressInfo }) => void;
}

/** The built-in proxy and what serves it: the sidecar, the mesh client, the proxy's endpoints. */
interface ProxyParts {
  readonly sidecar: Sidecar;
  readonly mesh: MeshClient;
  readonly metrics: IstioMetrics;
  /** The proxy's scrape (15090, and its part of 15020): Istio's metrics and the telemetry's own. */
  readonly renderStats: () => string;
  readonly servers: http.Server[];
  /** Looks every TRIM_INTERVAL_MS whether freed C heap memory is to be given back. */
  readonly trimTimer: NodeJS.Timeout | null;
  /** Drops the pages of Node's binary only the start used, COLD_PAGES_AFTER_MS after listening. */
  readonly coldTimer: NodeJS.Timeout | null;
}

/** Time allowed for one call to the CA. */
const CA_TIMEOUT_MS = 15_000;
/** A uniform number in [0, 1) from the CSPRNG (jitter needs no more than 2^-32 resolution). */
const cryptoRandom = (): number => randomInt(0, 2 ** 32) / 2 ** 32;

export async function runAgent(options: AgentOptions, runtime: AgentRuntime): Promise<number> {
  const { log } = runtime;
  const clock = runtime.clock ?? systemClock;
  const registry = createRegistry({ processMetrics: true });
  const metrics = createAgentMetrics(registry);
  const directory = new CertDirectory(options.outDir, () => clock.now().getTime());
  const child = options.command.length > 0 ? new ChildCommand(options.command, log) : null;
  let draining = false;

  const lifecycle = new CertificateLifecycle(
    {
      clock,
      timers: runtime.timers ?? systemTimers,
      random: runtime.random ?? cryptoRandom,
      log,
      metrics,
      directory,
      readToken: () => fs.readFile(options.tokenFile, 'utf8'),
      issue: ({ csrPem, token, roots, signal }) =>
        requestCertificate({
          caUrl: options.caUrl,
          token,
          csrPem,
          roots,
          signal,
          ttlSeconds: options.ttlSeconds,
          timeoutMs: CA_TIMEOUT_MS,
        }),
      generateKey,
      onCertificate: () => {
        startChild();
        pushCredentials();
      },
    },
    {
      keyType: options.keyType,
      renewFraction: options.renewFraction,
      ttlSeconds: options.ttlSeconds,
    },
  );

  const readiness = (): Readiness => {
    const reasons: string[] = [];
    if (draining) reasons.push('shutting down');
    if (!lifecycle.hasValidCertificate()) {
      const last = lifecycle.lastError();
      reasons.push(
        lifecycle.certificate() === null ? 'no certificate yet' : 'the certificate has expired',
        ...(last === null ? [] : [`last error: ${last.reason}`]),
      );
    }
    if (child !== null && !child.isRunning()) reasons.push('the proxy command is not running');
    if (proxy !== null && !proxy.sidecar.ready()) {
      reasons.push(
        proxy.mesh.state() === null
          ? `no mesh configuration yet${meshError()}`
          : 'the proxy has no certificate yet',
      );
    }
    return { ready: reasons.length === 0, reasons };
  };
  const meshError = (): string => {
    const last = proxy?.mesh.status().lastError ?? null;
    return last === null ? '' : ` (last error: ${last})`;
  };

  // The built-in proxy: its listeners first, so that nothing redirected to them is refused once
  // the app runs; it carries traffic (and the Pod is ready) once it has a certificate and the
  // first configuration.
  let roots: readonly string[] = [];
  let proxy: ProxyParts | null = null;
  const pushCredentials = (): void => {
    const credentials = lifecycle.credentials();
    if (proxy === null || credentials === null || roots.length === 0) return;
    proxy.sidecar.setCredentials(
      {
        chainPem: credentials.chainPem,
        keyPem: credentials.keyPem,
        roots,
        spiffeId: credentials.spiffeId ?? '',
      },
      clock.now(),
    );
  };
  if (options.proxy.enabled) proxy = await startProxy(options, { log, clock, roots: () => roots });
  const proxyStats = proxy?.renderStats ?? null;

  const readinessServer = createReadinessServer({ readiness, log });
  /** Set by the supervision: what a quit request (POST /quitquitquit) does. */
  let quit: () => void = () => undefined;
  const agentServer = createAgentServer({
    registry,
    probes: options.appProbes,
    runProbe: (probe) => runProbe(probe, options.probeHost),
    log,
    // One scrape for the Pod, as Istio's agent: the app's, the proxy's and the agent's metrics.
    mergedMetrics: podMetrics({
      app: options.appMetrics,
      appHost: options.probeHost,
      proxy: proxyStats,
      registry,
      log,
    }),
    quit: () => quit(),
    readiness,
  });
  try {
    const addresses = {
      readiness: await listen(readinessServer, options.listenHost, options.readinessPort),
      agent: await listen(agentServer, options.listenHost, options.agentPort),
    };
    log.info(
      {
        readiness: addresses.readiness.port,
        agent: addresses.agent.port,
        probes: options.appProbes.size,
      },
      'agent listening',
    );
    runtime.onListening?.(addresses);
  } catch (err) {
    await Promise.all([close(readinessServer), close(agentServer)]);
    throw err;
  }

  // The proxy command starts once the first certificate is on disk, so that it can read its
  // files when it starts.
  function startChild(): void {
    if (child === null || child.hasStarted() || draining || !lifecycle.hasValidCertificate())
      return;
    child
      .start()
      .catch((err: Error) => log.error({ err: err.message }, 'the proxy command cannot start'));
  }
  let lifecycleStarted = false;
  const startLifecycle = async (roots: readonly string[]): Promise<void> => {
    lifecycleStarted = true;
    await lifecycle.start(roots);
  };

  const watcher = new RootFileWatcher(options.rootCert, {
    pollMs: options.rootPollSeconds * 1000,
    log,
    onChange: (next) => {
      // New roots reach the proxy at once (new handshakes trust them); through a rotation the
      // bundle holds the old and the new root, so no handshake between sidecars fails.
      roots = next;
      pushCredentials();
      return lifecycleStarted ? lifecycle.updateRoots(next) : startLifecycle(next);
    },
  });
  const initial = await readRootFile(options.rootCert);
  if (initial.ok) roots = initial.roots;
  watcher.start(initial.ok ? initial.roots : []);
  if (initial.ok) {
    void startLifecycle(initial.roots);
  } else {
    log.warn({ file: options.rootCert, reason: initial.reason }, 'waiting for the root file');
  }

  log.info(
    {
      // Without user info or a query string: either may hold a credential.
      caUrl: `${options.caUrl.origin}${options.caUrl.pathname}`,
      outDir: options.outDir,
      keyType: options.keyType,
      ttlSeconds: options.ttlSeconds ?? null,
      command: options.command[0] ?? null,
    },
    'agent started',
  );
  const code = await supervise({
    child,
    signals: runtime.signals,
    drainMs: options.drainSeconds * 1000,
    log,
    onDrain: () => {
      draining = true;
      proxy?.sidecar.drainInbound();
    },
    inFlight: () => proxy?.sidecar.inFlight() ?? 0,
    onQuitRequest: (q) => {
      quit = q;
    },
  });

  lifecycle.stop();
  watcher.stop();
  if (proxy !== null) await stopProxy(proxy);
  await Promise.all([close(readinessServer), close(agentServer)]);
  log.info({ code }, 'agent stopped');
  return code;
}

/**
 * Starts the built-in proxy: the original-destination reader (a missing addon stops the agent
 * with the file it looked for), the listeners, its endpoints and the mesh client.
 */
async function startProxy(
  options: AgentOptions,
  deps: { log: Logger; clock: Clock; roots: () => readonly string[] },
): Promise<ProxyParts> {
  const { log, clock } = deps;
  const p = options.proxy;
  applyProxyV8Flags();
  applyProxyBufferPool();
  const originalDestination = loadOriginalDestination();
  const dropPages = loadDropPages();
  const keepalive = loadTcpKeepalive();
  let coldPages: ColdPagesReport | null = null;
  const heapFreeBytes = loadHeapFreeBytes();
  const trimmer = processTrimmer(loadMemoryTrim(), heapFreeBytes);
  const istio = new IstioMetrics();
  const sidecar = new Sidecar(
    {
      log,
      originalDestination,
      random: Math.random,
      // Read per request: the system clock's milliseconds without a Date object each time.
      nowMs: clock === systemClock ? Date.now : () => clock.now().getTime(),
      metrics: istio,
      ...(keepalive === null
        ? {}
        : {
            tcpKeepalive: (socket: Socket, k: TcpKeepalive) => {
              const rc = keepalive.set(socket, k);
              if (rc < 0) log.debug({ errno: -rc }, 'cannot set TCP keepalive on a connection');
            },
          }),
    },
    {
      outboundPort: p.outboundPort,
      inboundPort: p.inboundPort,
      listenHost: null,
      connectTimeoutMs: SIDECAR_DEFAULTS.connectTimeoutMs,
      handshakeTimeoutMs: SIDECAR_DEFAULTS.handshakeTimeoutMs,
      ownPorts: [
        p.outboundPort,
        p.inboundPort,
        p.adminPort,
        p.statsPort,
        options.readinessPort,
        options.agentPort,
      ],
    },
  );
  const mesh = new MeshClient({
    url: options.meshUrl,
    pod: {
      name: options.pod.name ?? '',
      namespace: options.pod.namespace ?? '',
      ip: options.pod.ip,
    },
    readToken: () => fs.readFile(options.tokenFile, 'utf8'),
    roots: deps.roots,
    log,
  });
  const servers: http.Server[] = [];
  const renderStats = (): string => istio.render() + sidecar.telemetry.render();
  try {
    const listening = await sidecar.start();
    const admin = createProxyAdminServer({
      configDump: () => ({ ...sidecar.configDump(), meshClient: mesh.status() }),
      ready: () => sidecar.ready(),
      memory: () => ({
        trim: trimmer?.stats() ?? null,
        cHeapFreeBytes: heapFreeBytes?.() ?? null,
        coldPages,
      }),
      logger: log,
    });
    servers.push(admin);
    await listenOn(admin, '127.0.0.1', p.adminPort);
    const stats = createProxyStatsServer(renderStats);
    servers.push(stats);
    await listenOn(stats, options.listenHost, p.statsPort);
    log.info(
      {
        outbound: listening.outbound.port,
        inbound: listening.inbound.port,
        admin: p.adminPort,
        stats: p.statsPort,
      },
      'proxy listening',
    );
  } catch (err) {
    await sidecar.close();
    await Promise.all(servers.map(closeServer));
    throw err;
  }
  mesh.onChange(({ state }) => sidecar.setMesh(state));
  mesh.start();
  const trimTimer = trimmer === null ? null : setInterval(() => trimmer.check(), TRIM_INTERVAL_MS);
  trimTimer?.unref();
  const coldTimer =
    dropPages === null
      ? null
      : dropColdPagesLater(
          dropPages,
          () => readFileSync('/proc/self/smaps', 'utf8'),
          (report, err) => {
            coldPages = report;
            if (report === null) {
              log.debug({ err }, 'cannot read /proc/self/smaps: no page dropped');
              return;
            }
            const droppedMiB = Math.round(report.droppedBytes / 1048576);
            log.info(
              { ...report, droppedMiB },
              'dropped the pages of the binary only the start used',
            );
          },
        );
  return { sidecar, mesh, metrics: istio, renderStats, servers, trimTimer, coldTimer };
}

async function stopProxy(proxy: ProxyParts): Promise<void> {
  if (proxy.trimTimer !== null) clearInterval(proxy.trimTimer);
  if (proxy.coldTimer !== null) clearTimeout(proxy.coldTimer);
  await proxy.mesh.stop();
  await proxy.sidecar.close();
  await Promise.all(proxy.servers.map(closeServer));
}

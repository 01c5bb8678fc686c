// The composition root of `mooring agent`: builds the metrics registry and the agent's parts, and
// runs them until the agent stops. Resolves with the exit code. The parts, each a folder that
// imports none of the others (eslint.config.mjs holds the rule):
//
//   identity/     the workload certificate: key, CSR, CA call, chain check, output directory,
//                 renewal, the root file
//   health/       readiness (15021), metrics and the rewritten app probes (15020), `agent wait`
//   process/      supervision of a proxy command given after `--`, signals, drain
//   mesh-client/  (to come) the mesh configuration pushed by the server
//   proxy/        (to come) the sidecar proxy; proxy/core/ is pure
//
// options.ts turns flags and environment into the options every part reads.

import { randomInt } from 'node:crypto';
import { promises as fs } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
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
import type { AgentOptions } from './options';
import { ChildCommand, supervise, type SignalSource } from './process/supervisor';

export interface AgentRuntime {
  readonly log: Logger;
  readonly signals: SignalSource;
  readonly clock?: Clock;
  readonly timers?: Timers;
  readonly random?: () => number;
  /** Called once both servers listen (tests use port 0). */
  readonly onListening?: (addresses: { readiness: AddressInfo; agent: AddressInfo }) => void;
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
      onCertificate: () => startChild(),
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
    return { ready: reasons.length === 0, reasons };
  };

  const readinessServer = createReadinessServer({ readiness, log });
  const agentServer = createAgentServer({
    registry,
    probes: options.appProbes,
    runProbe: (probe) => runProbe(probe, options.probeHost),
    log,
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
    onChange: (roots) => (lifecycleStarted ? lifecycle.updateRoots(roots) : startLifecycle(roots)),
  });
  const initial = await readRootFile(options.rootCert);
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
    },
  });

  lifecycle.stop();
  watcher.stop();
  await Promise.all([close(readinessServer), close(agentServer)]);
  log.info({ code }, 'agent stopped');
  return code;
}

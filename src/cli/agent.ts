// `mooring agent [flags] [-- proxy command...]`: the entrypoint of the injected mooring-proxy
// container (certificate lifecycle, readiness, metrics, app probes, supervision), and
// `mooring agent wait`: the classic-mode postStart hook that waits for the agent's readiness.

import type { Command } from 'commander';
import { AGENT_ENV, PORT } from '../constants';
import { isMooringError } from '../errors';
import type { AgentFlags } from '../agent/options';
import { EXIT, UsageError, type CliIO, type RegisterCommand } from './io';

const env = (name: string): string => ` (env ${name})`;

interface WaitFlags {
  readonly timeout: string;
  readonly interval: string;
  readonly host: string;
  readonly readinessPort?: string;
}

function registerWait(agent: Command, io: CliIO, setExit: (code: number) => void): void {
  agent
    .command('wait')
    .description(
      'wait until the agent is ready (GET /healthz/ready answers 200); for a postStart hook',
    )
    .option('--timeout <duration>', 'give up after this long (exit 1)', '120s')
    .option('--interval <duration>', 'time between attempts', '500ms')
    .option('--host <host>', 'host of the readiness endpoint', '127.0.0.1')
    // --readiness-port is also an option of `agent`, which commander gives to the parent:
    // optsWithGlobals() finds it wherever it was written.
    .option('--readiness-port <port>', 'port of the readiness endpoint (default 15021)')
    .action(async (_flags: unknown, command: Command) => {
      const flags = command.optsWithGlobals<WaitFlags>();
      const { parseDuration } = await import('../agent/options');
      const { waitForReady } = await import('../agent/health/wait');
      const timeout = parseDuration(flags.timeout);
      const interval = parseDuration(flags.interval);
      const portText = flags.readinessPort ?? String(PORT.readiness);
      const port = Number(portText);
      if (timeout === null) throw new UsageError(`--timeout: "${flags.timeout}" is not a duration`);
      if (interval === null)
        throw new UsageError(`--interval: "${flags.interval}" is not a duration`);
      if (!Number.isInteger(port) || port < 1 || port > 65535) {
        throw new UsageError(`--readiness-port: "${portText}" is not a port`);
      }
      const ready = await waitForReady({
        host: flags.host,
        port,
        timeoutMs: timeout * 1000,
        intervalMs: Math.max(10, interval * 1000),
      });
      if (ready) {
        io.stdout.write('ready\n');
        setExit(EXIT.ok);
      } else {
        io.stderr.write(`mooring: the agent was not ready within ${flags.timeout}\n`);
        setExit(EXIT.failure);
      }
    });
}

export const registerAgent: RegisterCommand = (program, io, setExit) => {
  const agent = program
    .command('agent')
    .usage('[options] [-- proxy command and arguments...]')
    .description(
      'the workload side: certificate lifecycle, readiness (15021), metrics and app probes (15020), ' +
        'and supervision of the proxy command given after --',
    )
    .argument('[command...]', 'proxy command and its arguments, after --')
    .option('--ca-url <url>', `HTTPS URL of the CA${env(AGENT_ENV.caUrl)}`)
    .option(
      '--mesh-url <url>',
      `HTTPS URL of the server that pushes the mesh (default: --ca-url)${env(AGENT_ENV.meshUrl)}`,
    )
    .option('--pod-name <name>', `name of the Pod the agent serves${env(AGENT_ENV.podName)}`)
    .option(
      '--pod-namespace <namespace>',
      `namespace of the Pod the agent serves${env(AGENT_ENV.podNamespace)}`,
    )
    .option('--pod-ip <ip>', `IP address of the Pod the agent serves${env(AGENT_ENV.podIp)}`)
    .option(
      '--token-file <file>',
      `service-account token, re-read at every call${env(AGENT_ENV.tokenFile)}`,
    )
    .option(
      '--root-cert <file>',
      `PEM roots that the CA and every chain must lead to${env(AGENT_ENV.rootCert)}`,
    )
    .option(
      '--out-dir <dir>',
      `where cert-chain.pem, key.pem, root-cert.pem go${env(AGENT_ENV.outDir)}`,
    )
    .option(
      '--ttl <duration>',
      `requested certificate lifetime, e.g. 24h (CA default when absent)${env(AGENT_ENV.ttl)}`,
    )
    .option(
      '--key-type <type>',
      `ecdsa-p256 (default), ecdsa-p384, rsa-2048, rsa-3072, rsa-4096, ed25519${env(AGENT_ENV.keyType)}`,
    )
    .option(
      '--renew-fraction <n>',
      `renew after this fraction of the lifetime (default 0.5)${env(AGENT_ENV.renewFraction)}`,
    )
    .option(
      '--drain <duration>',
      `time between SIGTERM and stopping the command (default 5s)${env(AGENT_ENV.drain)}`,
    )
    .option(
      '--log-level <level>',
      `trace, debug, info, warn, error, off (default info)${env(AGENT_ENV.logLevel)}`,
    )
    .option('--app-probes <json>', `the app containers' original probes${env(AGENT_ENV.appProbes)}`)
    .option('--listen-host <host>', 'address of the readiness and agent servers (default 0.0.0.0)')
    .option('--readiness-port <port>', 'readiness port, 0 for any (default 15021)')
    .option('--agent-port <port>', 'metrics and app-probe port, 0 for any (default 15020)')
    .option('--root-poll-interval <duration>', 'how often the root file is re-read (default 10s)')
    .option(
      '--no-proxy',
      'no built-in proxy: certificate lifecycle only (a command after -- may be the proxy)',
    )
    .option('--outbound-port <port>', "the proxy's outbound capture port (default 15001)")
    .option('--inbound-port <port>', "the proxy's inbound capture port (default 15006)")
    .option(
      '--proxy-admin-port <port>',
      "the proxy's admin port on 127.0.0.1, /config_dump (default 15000)",
    )
    .option('--stats-port <port>', "the proxy's metrics port, /stats/prometheus (default 15090)")
    .action(async (command: string[], flags: AgentFlags) => {
      const { keepInspectorClosed } = await import('../agent/process/supervisor');
      keepInspectorClosed(process);
      const { resolveAgentOptions } = await import('../agent/options');
      let options;
      try {
        options = resolveAgentOptions(flags, process.env, command);
      } catch (err) {
        if (isMooringError(err) && err.code === 'CFG_ERR_INVALID')
          throw new UsageError(err.message);
        throw err;
      }
      const { createLogger, LOG_LEVEL_NAMES } = await import('../observability/logger');
      const { runAgent } = await import('../agent/agent');
      const log = createLogger(LOG_LEVEL_NAMES[options.logLevel] ?? 'info');
      setExit(await runAgent(options, { log, signals: process }));
    });
  registerWait(agent, io, setExit);
};

import { Command, CommanderError } from 'commander';
import { isMooringError } from '../errors';
import { registerAgent } from './agent';
import { registerInject } from './inject';
import { registerCA } from './ca';
import { EXIT, processIO, UsageError, type CliIO } from './io';
import { registerIptables } from './iptables';
import { registerProxyConfig } from './proxy-config';
import { registerServe } from './serve';
import { registerWebhookConfig } from './webhook-config';

/**
 * A command module registers its subcommand on the program. Its action resolves to an exit code
 * (or undefined for 0); a long-running command (serve, agent) resolves when it stops.
 */
export type RegisterCommand = (
  program: Command,
  io: CliIO,
  setExit: (code: number) => void,
) => void;

// Each subcommand lives in its own module; they are listed here.
const COMMANDS: RegisterCommand[] = [
  registerWebhookConfig,
  registerIptables,
  registerAgent,
  registerCA,
  registerServe,
  registerInject,
  registerProxyConfig,
];

export function buildProgram(io: CliIO, setExit: (code: number) => void): Command {
  const program = new Command('mooring')
    .description('Sidecar injector and workload certificate authority for Kubernetes')
    .version(process.env.npm_package_version ?? '0.1.0')
    .exitOverride()
    .showHelpAfterError()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    });
  for (const register of COMMANDS) register(program, io, setExit);
  return program;
}

/** Runs the CLI and resolves to the process exit code. */
export async function main(argv: readonly string[], io: CliIO = processIO()): Promise<number> {
  let code: number = EXIT.ok;
  const program = buildProgram(io, (c) => {
    code = c;
  });
  try {
    await program.parseAsync([...argv]);
    return code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version exit 0; everything commander rejects is a usage error.
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (err instanceof UsageError) {
      io.stderr.write(`mooring: ${err.message}\n`);
      return EXIT.usage;
    }
    const message = isMooringError(err) ? `${err.code}: ${err.message}` : (err as Error).message;
    io.stderr.write(`mooring: ${message}\n`);
    return EXIT.failure;
  }
}

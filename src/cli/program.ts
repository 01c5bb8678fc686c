// The `mooring` program: commander with our usage errors and exit codes, for a list of commands.

import { Command, CommanderError } from 'commander';
import { MOORING_VERSION } from '../constants';
import { isMooringError } from '../errors';
import { EXIT, UsageError, type CliIO, type RegisterCommand } from './io';

/** `mooring ca status`: the command's full name. */
function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c !== null; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/** The one line after a usage error: where the whole usage is. */
export const usageHint = (command: Command): string =>
  `mooring: run '${commandPath(command)} --help' for the usage`;

/** Every command and subcommand of `command`, itself first. */
const allCommands = (command: Command): Command[] => [
  command,
  ...command.commands.flatMap((c) => allCommands(c)),
];

export function buildProgram(
  commands: readonly RegisterCommand[],
  io: CliIO,
  setExit: (code: number) => void,
): Command {
  const program = new Command('mooring')
    .description(
      'A service mesh for Kubernetes: sidecar injector, workload CA, mesh push and sidecar proxy',
    )
    .version(MOORING_VERSION)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
      // A usage error is its message and one line of hint, not the whole help.
      outputError: (s, write) => write(`mooring: ${s.replace(/^error: /, '')}`),
    });
  for (const register of commands) register(program, io, setExit);
  for (const command of allCommands(program)) command.showHelpAfterError(usageHint(command));
  return program;
}

/** Runs a CLI of these commands and resolves to the process exit code. */
export async function runProgram(
  commands: readonly RegisterCommand[],
  argv: readonly string[],
  io: CliIO,
): Promise<number> {
  let code: number = EXIT.ok;
  const program = buildProgram(commands, io, (c) => {
    code = c;
  });
  // The command whose action runs: a usage error it finds gets that command's hint.
  let running: Command = program;
  program.hook('preAction', (_program, action) => {
    running = action;
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
      io.stderr.write(`mooring: ${err.message}\n${usageHint(running)}\n`);
      return EXIT.usage;
    }
    const message = isMooringError(err) ? `${err.code}: ${err.message}` : (err as Error).message;
    io.stderr.write(`mooring: ${message}\n`);
    return EXIT.failure;
  }
}

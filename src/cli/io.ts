import type { Readable, Writable } from 'node:stream';
import type { Command } from 'commander';

/** Where a command reads and writes: the process's streams, or buffers in tests. */
export interface CliIO {
  readonly stdin: Readable;
  readonly stdout: Writable;
  readonly stderr: Writable;
}

export const processIO = (): CliIO => ({
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
});

/** Exit codes of every command: 0 success, 1 failure, 2 usage error. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

/** Thrown by a command for a usage error that commander cannot see (exit 2). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/**
 * A command module registers its subcommand on the program. Its action resolves to an exit code
 * (or undefined for 0); a long-running command (serve, agent) resolves when it stops.
 */
export type RegisterCommand = (
  program: Command,
  io: CliIO,
  setExit: (code: number) => void,
) => void;

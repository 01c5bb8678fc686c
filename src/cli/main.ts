// The `mooring` command: every subcommand (bin/mooring.js runs `mooring agent` through
// agent-main.ts, which loads the agent's alone).

import { registerAgent } from './agent';
import { registerInject } from './inject';
import { registerCA } from './ca';
import { processIO, type CliIO, type RegisterCommand } from './io';
import { registerIptables } from './iptables';
import { runProgram } from './program';
import { registerProxyConfig } from './proxy-config';
import { registerServe } from './serve';
import { registerWebhookConfig } from './webhook-config';

// Each subcommand lives in its own module; they are listed here.
export const COMMANDS: readonly RegisterCommand[] = [
  registerWebhookConfig,
  registerIptables,
  registerAgent,
  registerCA,
  registerServe,
  registerInject,
  registerProxyConfig,
];

/** Runs the CLI and resolves to the process exit code. */
export const main = (argv: readonly string[], io: CliIO = processIO()): Promise<number> =>
  runProgram(COMMANDS, argv, io);

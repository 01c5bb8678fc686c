// Runs `mooring webhook-config` in this process, through the CLI's entry point.
import { runCli, type CliResult } from '../fixtures/cli';

export type { CliResult };

export const runWebhookConfigCli = (args: readonly string[]): Promise<CliResult> =>
  runCli(['webhook-config', ...args]);

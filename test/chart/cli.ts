// Runs `mooring webhook-config` in this process, through the CLI's entry point.
import { PassThrough } from 'node:stream';
import { main } from '../../src/cli/main';

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function collect(stream: PassThrough): () => string {
  const chunks: Buffer[] = [];
  stream.on('data', (b: Buffer) => chunks.push(b));
  return () => Buffer.concat(chunks).toString('utf8');
}

export async function runWebhookConfigCli(args: readonly string[]): Promise<CliResult> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out = collect(stdout);
  const err = collect(stderr);
  const code = await main(['node', 'mooring', 'webhook-config', ...args], {
    stdin: new PassThrough(),
    stdout,
    stderr,
  });
  return { code, stdout: out(), stderr: err() };
}

// `mooring inject -f FILE|- [-o FILE] [--config FILE]`: manual injection of a manifest, with the
// same inject() as the webhook. YAML (multi-document) or JSON in, YAML out on stdout (or -o, replaced
// atomically). What happened to each Pod or workload, and every warning, goes to stderr.

import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { writeFileAtomic } from '../adapters/atomic-file';
import { readConfigFile } from '../adapters/config-file';
import { MOORING_VERSION } from '../constants';
import { MooringError } from '../errors';
import { describeReport, injectManifests } from '../injector/manifests';
import { EXIT, type CliIO, type RegisterCommand } from './io';

export interface InjectFlags {
  readonly filename: string;
  readonly output?: string;
  readonly config?: string;
}

const EXAMPLES = `
Examples:
  mooring inject -f deployment.yaml | kubectl apply -f -
  kubectl get deploy web -o yaml | mooring inject -f - -o web-injected.yaml
  mooring inject -f app.yaml --config mooring.yaml

Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, ReplicationController and List
are injected (the keys are read from the Pod template); other kinds pass through unchanged.
Skipped objects pass through unchanged, with the reason on stderr. An invalid annotation exits 1.
`;

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) {
    chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readInput(filename: string, io: CliIO): Promise<string> {
  if (filename === '-') return readAll(io.stdin);
  try {
    return await readFile(filename, 'utf8');
  } catch (err) {
    throw new MooringError('INJ_ERR_INPUT', `cannot read ${filename}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** Runs the command; resolves to the exit code. MooringErrors propagate to main (exit 1). */
export async function runInject(flags: InjectFlags, io: CliIO): Promise<number> {
  const config = readConfigFile(flags.config);
  const text = await readInput(flags.filename, io);
  const result = injectManifests(text, { config, version: MOORING_VERSION });
  if (flags.output === undefined) {
    io.stdout.write(result.output);
  } else {
    try {
      await writeFileAtomic(flags.output, result.output, { mode: 0o644 });
    } catch (err) {
      // The atomic write's message names its temporary file: name the file the user asked for.
      throw new MooringError(
        'INJ_ERR_INPUT',
        `cannot write ${flags.output}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
        { cause: err },
      );
    }
  }
  // What was done, once it is done.
  for (const report of result.reports) {
    for (const line of describeReport(report)) io.stderr.write(`mooring: ${line}\n`);
  }
  return EXIT.ok;
}

export const registerInject: RegisterCommand = (program, io, setExit) => {
  program
    .command('inject')
    .description('add the Mooring sidecar to the Pods and Pod templates of a manifest')
    .requiredOption('-f, --filename <file>', 'manifest to read (YAML or JSON), - for stdin')
    .option('-o, --output <file>', 'write the result to this file instead of stdout')
    .option('--config <file>', 'Mooring configuration (YAML or JSON); the defaults otherwise')
    .addHelpText('after', EXAMPLES)
    .action(async (flags: InjectFlags) => {
      setExit(await runInject(flags, io));
    });
};

// The child process of ca-store-crash.test.ts. Not a test: the parent transpiles it and runs it.
//
//   phase mode:  one rotation phase (init | rotate | activate | remove) at a given time; with
//                crashAt=N it SIGKILLs itself right after the N-th write step it observes
//                (the FileCAStore `observe` hook, which production code never sets).
//   loop mode:   rotation steps forever, the clock advancing 6 h per iteration, printing a line
//                per completed step, until the parent kills it at a random moment.

import { openLocalCA } from '../../src/adapters/local-ca';
import type { AtomicStep } from '../../src/adapters/atomic-file';
import type { Clock } from '../../src/ca/ports';
import { validateConfig } from '../../src/config/validate';
import { MooringError } from '../../src/errors';

export interface ChildArgs {
  readonly dataDir: string;
  readonly mode: 'phase' | 'loop';
  readonly phase?: 'init' | 'rotate' | 'activate' | 'remove';
  /** ISO time of the phase, or of the loop's first iteration. */
  readonly now: string;
  readonly crashAt?: number;
  /** Raw configuration, validated here as `mooring` would. */
  readonly config: unknown;
}

async function main(args: ChildArgs): Promise<void> {
  const config = validateConfig(args.config);
  let now = new Date(args.now);
  const clock: Clock = { now: () => new Date(now) };
  let observed = 0;
  const observe = (step: AtomicStep, path: string): void => {
    observed++;
    process.stdout.write(`step ${observed} ${step} ${path}\n`);
    if (args.crashAt === observed) process.kill(process.pid, 'SIGKILL');
  };
  const { authority } = await openLocalCA({
    config,
    dataDir: args.dataDir,
    create: args.mode === 'loop' || args.phase === 'init',
    clock,
    storeOptions: { observe },
  });
  if (args.mode === 'phase') {
    if (args.phase === 'rotate') await authority.rotate();
    if (args.phase === 'activate' || args.phase === 'remove') await authority.tick();
    process.stdout.write(`done ${observed}\n`);
    return;
  }
  for (let i = 0; ; i++) {
    now = new Date(now.getTime() + 6 * 3600 * 1000);
    try {
      await authority.rotate();
    } catch (err) {
      if (!(err instanceof MooringError && err.code === 'CA_ERR_ROTATION')) throw err;
    }
    await authority.tick();
    process.stdout.write(`iteration ${i} ${now.toISOString()}\n`);
  }
}

main(JSON.parse(process.argv[process.argv.length - 1] as string) as ChildArgs).catch(
  (err: unknown) => {
    process.stderr.write(`${String((err as Error).stack ?? err)}\n`);
    process.exit(1);
  },
);

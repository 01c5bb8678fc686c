// An experiment for bench/ca.ts, not a product feature: `mooring serve` (from dist/) in N
// node:cluster workers sharing its ports, to measure what the CA API would reach on both cores.
// The first worker to start creates the CA; the others load it (the store's create is exclusive).
//
//   node .cache/bench/bench/ca-serve-cluster.js N serve --data-dir DIR --listen ... --admin-listen ...

import cluster from 'node:cluster';
import { join } from 'node:path';

const [workers, ...args] = process.argv.slice(2);

if (cluster.isPrimary) {
  const n = Number(workers);
  for (let i = 0; i < n; i++) cluster.fork();
  const stop = (): void => {
    for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGTERM');
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  cluster.on('exit', () => {
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
  });
} else {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const cli = require(join(process.cwd(), 'dist', 'cli', 'main.js')) as {
    main: (argv: string[]) => Promise<number>;
  };
  void cli.main(['node', 'mooring', ...args]).then((code) => process.exit(code));
}

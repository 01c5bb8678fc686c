// A process that starts a node cluster, runs a Pod on it, prints the slot, then dies without
// stopping anything: `throw` (its exit handler must tear the node down) or `kill` (SIGKILL: no
// handler runs, and the next claim of a slot must tear the stale one down). For
// test/e2e-node/node-harness.test.ts; compiled with the harness (make harness).
//
//   node .cache/harness/test/e2e/harness/node-crash.js throw|kill
import { kubectl } from './kube';
import { startNodeCluster } from './node';

async function main(how: string): Promise<void> {
  const cluster = await startNodeCluster();
  const images = cluster.images;
  await kubectl(cluster.controlPlane, [
    ...['run', 'left-behind', '-n', 'default', `--image=${images.echo}`],
    '--image-pull-policy=Never',
  ]);
  await kubectl(cluster.controlPlane, [
    ...['wait', '--for=condition=Ready', 'pod/left-behind', '-n', 'default', '--timeout=120s'],
  ]);
  process.stdout.write(`${cluster.slot}\n`);
  if (how === 'kill') process.kill(process.pid, 'SIGKILL');
  throw new Error('the test process dies with its node running');
}

void main(process.argv[2] ?? 'throw');

// `make cluster-up` / `make cluster-down` / `make cluster-status`: the node cluster of the
// end-to-end tests (./node.ts) with Mooring installed (./node-mooring.ts), started by hand and
// left running. Compiled into .cache/harness by the Makefile; the state is .cache/cluster/.
//
//   node .cache/harness/test/e2e/harness/cluster.js up|down|status
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT } from './control-plane';
import { startNodeCluster, stopNodeSlot, slotLayout } from './node';
import { installMooring, MOORING_NAMESPACE } from './node-mooring';

const STATE_DIR = path.join(REPO_ROOT, '.cache', 'cluster');
const STATE_FILE = path.join(STATE_DIR, 'state.json');
const KUBECONFIG = path.join(STATE_DIR, 'kubeconfig');

interface State {
  readonly slot: number;
  readonly kubeconfig: string;
  readonly server: string;
  readonly mooring: { readonly url: string; readonly adminUrl: string; readonly log: string };
  readonly images: Record<string, string>;
  readonly hostIP: string;
  readonly podCIDR: string;
  readonly dir: string;
}

function readState(): State | undefined {
  try {
    return JSON.parse(fs.readFileSync(STATE_FILE, 'utf8')) as State;
  } catch {
    return undefined;
  }
}

const out = (text: string): boolean => process.stdout.write(`${text}\n`);

function describe(state: State): string {
  const kc = path.relative(process.cwd(), state.kubeconfig) || state.kubeconfig;
  return [
    `node cluster up (slot ${state.slot}): apiserver ${state.server}, Pods in ${state.podCIDR}`,
    `Mooring ${state.mooring.url} (webhook and CA), admin ${state.mooring.adminUrl}`,
    `  log: ${state.mooring.log}`,
    `  node logs: ${state.dir}/{kubelet,containerd,kube-scheduler,kube-controller-manager}.log`,
    '',
    `  export KUBECONFIG=${kc}`,
    `  kubectl get nodes -o wide`,
    '',
    'A demo: an injected echo server (README, Development):',
    `  kubectl create namespace demo && kubectl label namespace demo mooring.dev/inject=enabled`,
    `  kubectl -n demo create deployment echo --image=${state.images.echo ?? '?'}`,
    `  kubectl -n demo rollout status deployment/echo`,
    `  kubectl -n demo get pods -o wide`,
    '',
    'Stop it with: make cluster-down',
  ].join('\n');
}

async function up(): Promise<number> {
  const existing = readState();
  if (existing !== undefined && fs.existsSync(slotLayout(existing.slot).dir)) {
    out(describe(existing));
    return 0;
  }
  const t0 = Date.now();
  const cluster = await startNodeCluster({
    persistent: true,
    log: (line) => process.stderr.write(`[cluster] ${line}\n`),
  });
  try {
    const mooring = await installMooring(cluster, { persistent: true });
    fs.mkdirSync(STATE_DIR, { recursive: true });
    fs.copyFileSync(cluster.kubeconfigPath, KUBECONFIG);
    fs.chmodSync(KUBECONFIG, 0o600);
    const state: State = {
      slot: cluster.slot,
      kubeconfig: KUBECONFIG,
      server: cluster.controlPlane.server,
      mooring: { url: mooring.url, adminUrl: mooring.adminUrl, log: mooring.logPath },
      images: { ...cluster.images },
      hostIP: cluster.hostIP,
      podCIDR: cluster.podCIDR,
      dir: cluster.dir,
    };
    fs.writeFileSync(STATE_FILE, `${JSON.stringify(state, null, 2)}\n`);
    out(describe(state));
    out(
      `(up in ${((Date.now() - t0) / 1000).toFixed(1)} s; Mooring in namespace ${MOORING_NAMESPACE})`,
    );
    return 0;
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}

async function down(): Promise<number> {
  const state = readState();
  if (state === undefined) {
    out('no node cluster is up (.cache/cluster/state.json is absent)');
    return 0;
  }
  await stopNodeSlot(state.slot);
  fs.rmSync(STATE_DIR, { recursive: true, force: true });
  out(
    `node cluster of slot ${state.slot} stopped: processes, containers, mounts, network, cgroups`,
  );
  return 0;
}

function status(): number {
  const state = readState();
  if (state === undefined || !fs.existsSync(slotLayout(state.slot).dir)) {
    out('no node cluster is up');
    return 1;
  }
  out(describe(state));
  return 0;
}

const commands: Record<string, () => Promise<number> | number> = { up, down, status };
const command = commands[process.argv[2] ?? ''];
if (command === undefined) {
  process.stderr.write('usage: cluster.js up|down|status\n');
  process.exitCode = 2;
} else {
  Promise.resolve(command()).then(
    (code) => (process.exitCode = code),
    (err: unknown) => {
      process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}

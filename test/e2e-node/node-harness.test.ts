// The node harness itself (test/e2e/harness/node.ts, node-host.sh): Pods run and talk over the
// node's bridge, no kube-proxy routes a ClusterIP, nothing a Pod sends can leave the machine, and
// the host is left as it was: after stop(), after the test process dies of an error (its exit
// handler), and after it is SIGKILLed (the next claim of a slot tears the stale one down).
import { execFile, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO_ROOT } from '../e2e/harness/control-plane';
import { kubectlJson } from '../e2e/harness/kube';
import { startNodeCluster, slotLayout, type NodeCluster } from '../e2e/harness/node';
import {
  apply,
  echoContainer,
  echoed,
  httpFrom,
  plainNamespace,
  repeatFrom,
  waitForPod,
  isReady,
  type ClusterEnv,
  type Pod,
} from './support/mesh';

const HOST_SCRIPT = path.join(REPO_ROOT, 'test', 'e2e', 'harness', 'node-host.sh');
const CRASH = path.join(REPO_ROOT, '.cache', 'harness', 'test', 'e2e', 'harness', 'node-crash.js');
const SYSCTLS = [
  'vm.overcommit_memory',
  'vm.panic_on_oom',
  'kernel.panic',
  'kernel.panic_on_oops',
  'kernel.keys.root_maxkeys',
  'kernel.keys.root_maxbytes',
];

function sh(bin: string, args: readonly string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(bin, args, { maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${bin} ${args.join(' ')}: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}
const lines = (text: string): string[] => text.split('\n').filter((l) => l !== '');
const exists = (p: string): boolean => fs.existsSync(p);

/** Whatever of this machine a node could leave behind (the ones of other users excluded). */
async function hostState(): Promise<Record<string, unknown>> {
  const cgroups = fs
    .readdirSync('/sys/fs/cgroup')
    .flatMap((c) =>
      exists(`/sys/fs/cgroup/${c}`) && fs.statSync(`/sys/fs/cgroup/${c}`).isDirectory()
        ? fs.readdirSync(`/sys/fs/cgroup/${c}`).filter((e) => e.startsWith('mooring-node-'))
        : [],
    );
  const processes = fs
    .readdirSync('/proc')
    .filter((p) => /^[0-9]+$/.test(p))
    .filter((p) => {
      try {
        return fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').includes('/tmp/mooring-node-');
      } catch {
        return false;
      }
    });
  const sysctls: Record<string, string> = {};
  for (const key of SYSCTLS) sysctls[key] = (await sh('sysctl', ['-n', key])).trim();
  const ours = /KUBE-|CNI-|10\.217\.|mooring/;
  return {
    links: lines(await sh('ip', ['-o', 'link'])).filter((l) => l.includes('mooring')),
    routes: lines(await sh('ip', ['route'])).filter((l) => l.includes('10.217.')),
    netns: lines(await sh('ip', ['netns', 'list']))
      .map((l) => l.split(' ')[0] ?? '')
      .filter((l) => l.startsWith('mooring-node-')),
    mounts: lines(fs.readFileSync('/proc/self/mountinfo', 'utf8')).filter((l) =>
      /mooring-node|\/run\/containerd|\/var\/lib\/kubelet/.test(l),
    ),
    cgroups,
    processes,
    iptables: lines(await sh('iptables-save', [])).filter((l) => ours.test(l)),
    files: [
      '/run/containerd',
      '/var/lib/cni',
      '/var/log/containers',
      '/var/log/pods',
      '/var/lib/kubelet',
      '/run/mooring-node.saved',
    ].filter(exists),
    tmp: fs.readdirSync('/tmp').filter((e) => e.startsWith('mooring-node-')),
    sysctls,
  };
}

/** Pods of the echo image, outside any mesh, Ready. */
async function plainPods(env: ClusterEnv, ...names: string[]): Promise<Pod[]> {
  const ns = await plainNamespace(env);
  await apply(
    env,
    ns,
    ...names.map((name) => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, labels: { app: name } },
      spec: { containers: [echoContainer(env, 'echo', { ECHO_VERSION: 'v2' })] },
    })),
  );
  return Promise.all(names.map((n) => waitForPod(env, ns, n, 'Ready', isReady)));
}

function crash(
  how: 'throw' | 'kill',
): Promise<{ slot: number; code: number | null; signal: string | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CRASH, how], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const slot = Number(out.trim());
      if (out.trim() === '' || Number.isNaN(slot))
        reject(new Error(`node-crash.js ${how} printed no slot (${code ?? signal}): ${err}`));
      else resolve({ slot, code, signal });
    });
  });
}

/** Pods on the node: over the bridge yes, through a ClusterIP no, beyond the machine never. */
async function exercise(cluster: NodeCluster): Promise<void> {
  const env = { cluster };
  const during = await hostState();
  expect(during.netns).toContain(cluster.netns);
  expect(during.processes).not.toEqual([]);

  const [a, b] = await plainPods(env, 'a', 'b');
  const direct = echoed(await httpFrom(a!, `http://${b!.status.podIP}:8080/direct`));
  expect(direct).toMatchObject({ pod: 'b', path: '/direct' });
  expect(direct.peer.address).toBe(a!.status.podIP);
  // Many in a row, each on a new connection: the counts are what a rollout or split test reads.
  const many = await repeatFrom(a!, `http://${b!.status.podIP}:8080/again`, { count: 25 });
  expect(many).toMatchObject({ sent: 25, ok: 25, failures: [], byPod: { b: 25 } });
  expect(many.byVersion).toEqual({ v2: 25 });

  await apply(env, b!.metadata.namespace, {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: { name: 'b' },
    spec: { selector: { app: 'b' }, ports: [{ port: 8080 }] },
  });
  const svc = (await kubectlJson(cluster.controlPlane, [
    ...['get', 'service', 'b', '-n', b!.metadata.namespace],
  ])) as { spec: { clusterIP: string } };
  const viaService = await httpFrom(a!, `http://${svc.spec.clusterIP}:8080/`, {});
  expect(viaService.error).toBeDefined();

  // The node's namespace routes nothing but the link to the host and the Pods' subnet.
  const layout = slotLayout(cluster.slot);
  await expect(sh('ip', ['-n', layout.netns, 'route', 'get', '203.0.113.1'])).rejects.toThrow(
    /unreachable/i,
  );
  const routes = lines(await sh('ip', ['-n', layout.netns, 'route']));
  expect(routes.some((r) => r.startsWith('default'))).toBe(false);
}

let before: Record<string, unknown>;
beforeAll(async () => {
  if (!exists(CRASH)) throw new Error(`${CRASH} is missing: make harness`);
  before = await hostState();
});

describe('a node of the harness', () => {
  it('runs Pods that reach each other over its bridge, never a ClusterIP (no kube-proxy), nothing beyond the machine', async () => {
    const cluster = await startNodeCluster();
    try {
      await exercise(cluster);
    } finally {
      await cluster.stop();
    }
    expect(await hostState()).toEqual(before);
  }, 300_000);

  it('leaves nothing behind when its test process dies of an error (the exit handler)', async () => {
    const { code } = await crash('throw');
    expect(code).not.toBe(0);
    expect(await hostState()).toEqual(before);
  }, 300_000);

  it('leaves a stale slot when SIGKILLed, which the next claim tears down', async () => {
    const { slot, signal } = await crash('kill');
    expect(signal).toBe('SIGKILL');
    const stale = await hostState();
    expect(stale.netns).toContain(slotLayout(slot).netns);
    expect(stale.processes).not.toEqual([]);

    const claimed = Number((await sh(HOST_SCRIPT, ['claim', String(process.pid)])).trim());
    await sh(HOST_SCRIPT, ['down', String(claimed)]);
    expect(await hostState()).toEqual(before);
  }, 300_000);
});

// The sidecar in real Pods (the node harness of test/e2e-node): memory as Kubernetes accounts a
// container, and the latency and CPU of a fixed request rate through two sidecars, beside the
// same requests sent directly between the same two Pods.
//
// A client Pod and a server Pod of the echo app, injected; vegeta runs in the client Pod's
// network namespace (nsenter):
//   - mooring: as root, to the Service's ClusterIP: captured by the client's sidecar, mTLS to
//     the server's sidecar, then the app;
//   - direct: as UID 1337 (not captured) to the server Pod's port 8081 (excluded from the
//     inbound capture): the same app, the same bridge, no sidecar;
//   - peers: as UID 1337 to pairs of proxies run in the two Pods' network namespaces (A on the
//     client's loopback, mutual TLS to B on a server Pod's port also excluded, then the app's
//     8081): nginx, the peer of bench/proxy.ts, and node-pipe, Node.js's own floor
//     (bench/node-pipe.ts), on the same network path and the same cores.
// Then, per mooring-proxy container: its memory cgroup's usage and working set (usage minus
// inactive files: what the kubelet, cAdvisor, `kubectl top` and Istio's published figures use),
// its anonymous and page-cache parts, and the process's VmRSS, RssAnon and Pss.
//
//   make bench-pods        (root; make build harness images first, as the node tests need)
//   node .cache/bench/bench/pods.js [--rate 1000] [--duration 10] [--rounds 2] [--max-connections N]

import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { PoolCounters } from '../src/agent/proxy/l7/pool';
import { PROXY_CONTAINER_NAME } from '../src/constants';
import { createNamespace, kubectl, kubectlJson } from '../test/e2e/harness/kube';
import { startNodeCluster, type NodeCluster } from '../test/e2e/harness/node';
import { installMooring } from '../test/e2e/harness/node-mooring';
import { makeBenchPki, nginxInboundConfig, nginxOutboundConfig, writeMtlsFiles } from './nginx';
import { VEGETA, attack } from './vegeta';
import type { MooringServer } from '../test/e2e/support/mooring';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string): string => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? fallback : (args[i + 1] ?? fallback);
};
const RATE = Number(flag('rate', '1000'));
const DURATION = Number(flag('duration', '10'));
const ROUNDS = Number(flag('rounds', '2'));
/** vegeta's -max-connections: 0 = as many as a burst needs (vegeta's default); 16 = a fixed set, as fortio -c 16 in Istio's benchmark. */
const MAX_CONNECTIONS = Number(flag('max-connections', '0'));
const NS = 'bench-pods';
const HTTP_PORT = 8080;
const DIRECT_PORT = 8081;
/**
 * The peer pairs run beside the sidecars: B's TLS port in the server Pod (excluded from the
 * inbound capture, as DIRECT_PORT is), A's plain port on the client Pod's loopback (traffic to `lo`
 * is never captured).
 */
const PEERS = [
  { name: 'nginx', tlsPort: 8443, frontPort: 18080 },
  { name: 'node-pipe', tlsPort: 8444, frontPort: 18081 },
] as const;
const PROXY_UID = 1337;
const MIB = 1024 * 1024;

interface PodJson {
  metadata: { name: string };
  status: {
    podIP?: string;
    conditions?: { type: string; status: string }[];
    containerStatuses?: { name: string; containerID?: string }[];
    initContainerStatuses?: { name: string; containerID?: string }[];
  };
}

function echoPod(name: string, cluster: NodeCluster): object {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      labels: { app: name },
      annotations: {
        'traffic.mooring.dev/exclude-inbound-ports': [
          DIRECT_PORT,
          ...PEERS.map((p) => p.tlsPort),
        ].join(','),
      },
    },
    spec: {
      containers: [
        {
          name: 'echo',
          image: cluster.images.echo,
          imagePullPolicy: 'Never',
          env: [{ name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } }],
          ports: [{ name: 'http', containerPort: HTTP_PORT }],
          readinessProbe: { httpGet: { path: '/healthz', port: HTTP_PORT }, periodSeconds: 1 },
        },
      ],
    },
  };
}

async function readyPod(cluster: NodeCluster, name: string): Promise<PodJson> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    const pod = (await kubectlJson(cluster.controlPlane, [
      'get',
      'pod',
      name,
      '-n',
      NS,
    ])) as PodJson;
    if (pod.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) return pod;
    if (Date.now() > deadline)
      throw new Error(`pod ${name} not Ready: ${JSON.stringify(pod.status)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** The host PID of a container's first process, from containerd's task list. */
function containerPid(cluster: NodeCluster, containerID: string | undefined): number {
  const id = containerID?.replace(/^containerd:\/\//, '');
  if (id === undefined) throw new Error('a container without an ID');
  const out = execFileSync('ctr', ['-a', cluster.containerdSocket, '-n', 'k8s.io', 'task', 'ls'], {
    encoding: 'utf8',
  });
  for (const line of out.split('\n')) {
    const [task, pid] = line.trim().split(/\s+/);
    if (task === id) return Number(pid);
  }
  throw new Error(`no running task for container ${id}`);
}

const sidecarOf = (pod: PodJson) =>
  [...(pod.status.initContainerStatuses ?? []), ...(pod.status.containerStatuses ?? [])].find(
    (c) => c.name === PROXY_CONTAINER_NAME,
  );
const appOf = (pod: PodJson) => pod.status.containerStatuses?.find((c) => c.name === 'echo');

interface Memory {
  /** memory.usage_in_bytes of the container's cgroup. */
  usage: number;
  /** usage − total_inactive_file: the kubelet's and cAdvisor's working set. */
  workingSet: number;
  /** total_rss (anonymous) and total_cache (page cache charged to this cgroup). */
  anon: number;
  cache: number;
  /** Of the container's processes, summed: VmRSS, RssAnon and Pss. */
  vmRss: number;
  rssAnon: number;
  pss: number;
}

function kib(text: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return Number(m?.[1] ?? 0) * 1024;
}

function memoryOf(pid: number): Memory {
  const line = readFileSync(`/proc/${pid}/cgroup`, 'utf8')
    .split('\n')
    .find((l) => /:memory:/.test(l));
  if (line === undefined) throw new Error(`pid ${pid} has no memory cgroup (cgroup v1 needed)`);
  const dir = path.join('/sys/fs/cgroup/memory', line.slice(line.indexOf(':memory:') + 8));
  const stat = new Map(
    readFileSync(path.join(dir, 'memory.stat'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split(' ') as [string, string])
      .map(([k, v]) => [k, Number(v)]),
  );
  const usage = Number(readFileSync(path.join(dir, 'memory.usage_in_bytes'), 'utf8'));
  const procs = readFileSync(path.join(dir, 'cgroup.procs'), 'utf8')
    .trim()
    .split('\n')
    .filter((p) => p !== '')
    .map(Number);
  let vmRss = 0;
  let rssAnon = 0;
  let pss = 0;
  for (const p of procs) {
    const status = readFileSync(`/proc/${p}/status`, 'utf8');
    vmRss += kib(status, 'VmRSS');
    rssAnon += kib(status, 'RssAnon');
    pss += kib(readFileSync(`/proc/${p}/smaps_rollup`, 'utf8'), 'Pss');
  }
  return {
    usage,
    workingSet: usage - (stat.get('total_inactive_file') ?? 0),
    anon: stat.get('total_rss') ?? 0,
    cache: stat.get('total_cache') ?? 0,
    vmRss,
    rssAnon,
    pss,
  };
}

/** user + system CPU seconds of a process (its threads included). */
function cpuSeconds(pid: number): number {
  const { user, system } = cpuSplit(pid);
  return user + system;
}

/** user and system CPU seconds of a process: system is where the kernel's network path is paid. */
function cpuSplit(pid: number): { user: number; system: number } {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return { user: Number(fields[11]) / 100, system: Number(fields[12]) / 100 };
}

/** CPU µs per request of a process since `before` (a cpuSplit), as "total (user + system)". */
function cpuPerRequest(
  pid: number,
  before: { user: number; system: number },
  requests: number,
): string {
  const now = cpuSplit(pid);
  const us = (s: number): number => Math.round((s / requests) * 1e6);
  const user = us(now.user - before.user);
  const system = us(now.system - before.system);
  return `${user + system} (${user} + ${system})`;
}

type Connections = Record<'outboundPool' | 'inboundPool', PoolCounters>;

/** The connection counters of a sidecar's /config_dump (its pools: opened, reused, closed by reason). */
function connectionsOf(pid: number): Connections {
  const dump = execFileSync('nsenter', [
    ...['-t', String(pid), '-n', 'curl', '-s'],
    'http://127.0.0.1:15000/config_dump',
  ]).toString();
  return (JSON.parse(dump) as { connections: Connections }).connections;
}

function poolDelta(before: Connections, after: Connections, pool: keyof Connections): string {
  const b = before[pool];
  const a = after[pool];
  const closed = (Object.keys(a.closed) as (keyof PoolCounters['closed'])[])
    .map((reason) => [reason, a.closed[reason] - (b.closed[reason] ?? 0)] as const)
    .filter(([, n]) => n > 0)
    .map(([reason, n]) => `${reason} ${n}`);
  return `opened ${a.opened - b.opened}, reused ${a.reused - b.reused}, closed: ${closed.join(', ') || 'none'}`;
}

const poolsLine = (before: Connections, after: Connections): string =>
  `outbound ${poolDelta(before, after, 'outboundPool')}; inbound ${poolDelta(before, after, 'inboundPool')}`;

/** vegeta at RATE/s for `seconds` from inside a Pod's network namespace, as `uid`. */
async function attackFrom(netnsPid: number, uid: number, url: string, seconds: number) {
  const targets = `/tmp/mooring-bench-pods-${process.pid}.txt`;
  writeFileSync(targets, `GET ${url}\n`);
  return attack(
    ['nsenter', '-t', String(netnsPid), '-n', '-S', String(uid), '-G', String(uid), '--'],
    [
      ...[`-targets=${targets}`, `-rate=${RATE}/s`, `-duration=${seconds}s`],
      ...['-keepalive=true', '-connections=16'],
      ...(MAX_CONNECTIONS > 0 ? [`-max-connections=${MAX_CONNECTIONS}`] : []),
    ],
  );
}

const mib = (n: number): string => (n / MIB).toFixed(1);

interface PeerPair {
  readonly name: (typeof PEERS)[number]['name'];
  readonly url: string;
  /** Host PIDs of A (in the client Pod's network namespace) and B (in the server's). */
  readonly pids: Record<'client' | 'server', number>;
}

/**
 * The peers of the sidecars, each a pair A → mutual TLS 1.3 → B → the app, in the two Pods'
 * network namespaces: the same network path as the sidecars (veth, bridge, conntrack) and the
 * same cores, unpinned. Their processes are the bench's (no container, no cgroup of a Pod): their
 * CPU is read from /proc as the sidecars' is. They run as the proxy's UID, so that A's connections
 * to B are not captured by the client's sidecar; B proxies to the app's DIRECT_PORT on loopback.
 *   - nginx: bench/proxy.ts's pair, the stand-in for a proxy written in C;
 *   - node-pipe: bench/node-pipe.ts, what Node.js itself costs to carry the same bytes with the
 *     same TLS, with none of a proxy's work (no HTTP, one upstream connection per connection).
 */
async function startPeers(
  clientNs: number,
  serverNs: number,
  serverIp: string,
): Promise<{ pairs: PeerPair[]; stop(): void }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'mooring-bench-pods-peers-'));
  const children: ChildProcess[] = [];
  const stop = (): void => {
    for (const child of children) child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    chownSync(dir, PROXY_UID, PROXY_UID);
    const file = (name: string, text: string): string => {
      const p = path.join(dir, name);
      writeFileSync(p, text, { mode: 0o600 });
      chownSync(p, PROXY_UID, PROXY_UID);
      return p;
    };
    const files = writeMtlsFiles(dir, makeBenchPki(), PROXY_UID);

    /** A process in a Pod's network namespace, as the proxy's UID; its host PID. */
    const run = (netnsPid: number, argv: string[]): number => {
      const uid = String(PROXY_UID);
      const child = spawn(
        'nsenter',
        [...['-t', String(netnsPid), '-n', '-S', uid, '-G', uid, '--'], ...argv],
        { stdio: 'inherit' },
      );
      children.push(child);
      if (child.pid === undefined) throw new Error(`${argv[0]} did not start`);
      return child.pid;
    };
    const nginx = (name: string, netnsPid: number, config: string): number => {
      const prefix = path.join(dir, name);
      mkdirSync(prefix);
      chownSync(prefix, PROXY_UID, PROXY_UID);
      const conf = file(`${name}.conf`, config.replace(/PREFIX/g, prefix));
      return run(netnsPid, [
        'nginx',
        '-p',
        prefix,
        '-c',
        conf,
        '-e',
        path.join(prefix, 'error.log'),
      ]);
    };
    const nodePipe = (netnsPid: number, setup: object): number =>
      run(netnsPid, [
        process.execPath,
        `--max-semi-space-size=1`,
        path.join(__dirname, 'node-pipe.js'),
        JSON.stringify({ ...setup, files }),
      ]);
    const pairs: PeerPair[] = PEERS.map((peer) => {
      const front = `127.0.0.1:${peer.frontPort}`;
      const back = `${serverIp}:${peer.tlsPort}`;
      const app = `127.0.0.1:${DIRECT_PORT}`;
      const pids =
        peer.name === 'nginx'
          ? {
              server: nginx('nginx-b', serverNs, nginxInboundConfig(back, app, files)),
              client: nginx('nginx-a', clientNs, nginxOutboundConfig(front, back, files)),
            }
          : {
              server: nodePipe(serverNs, { role: 'b', listen: back, target: app }),
              client: nodePipe(clientNs, { role: 'a', listen: front, target: back }),
            };
      return { name: peer.name, url: `http://${front}/`, pids };
    });
    for (const pair of pairs) {
      for (let i = 0; ; i++) {
        const code = await promisify(execFile)('nsenter', [
          ...['-t', String(clientNs), '-n', 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}'],
          pair.url,
        ]).then(
          (r) => r.stdout,
          () => '',
        );
        if (code === '200') break;
        if (i === 100)
          throw new Error(`the ${pair.name} pair does not answer 200 (last: "${code}")`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    return { pairs, stop };
  } catch (err) {
    stop();
    throw err;
  }
}

/** MOORING_BENCH_DIAG=1: what a sidecar process is made of (flags, threads, where its anonymous memory lies). */
function diagnose(label: string, pid: number): string {
  const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const regions = new Map<string, { count: number; rss: number }>();
  let current = '';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head !== null) {
      const size = (parseInt(head[2] as string, 16) - parseInt(head[1] as string, 16)) / 1024;
      const name =
        head[4] === ''
          ? `anon ${size >= 65536 ? '>=64MiB' : size >= 1024 ? '1-64MiB' : size >= 256 ? '256K-1MiB' : '<256K'}`
          : (head[4] as string);
      current = name.includes('/') ? path.basename(name) : name;
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss !== null) {
      const r = regions.get(current) ?? { count: 0, rss: 0 };
      r.count++;
      r.rss += Number(rss[1]) * 1024;
      regions.set(current, r);
    }
  }
  const top = [...regions.entries()]
    .sort((a, b) => b[1].rss - a[1].rss)
    .slice(0, 8)
    .map(([k, v]) => `${k} x${v.count}: ${mib(v.rss)}`)
    .join('; ');
  return `${label} pid ${pid}: ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ')}| ${environ.filter((e) => e.startsWith('NODE_OPTIONS') || e.startsWith('MALLOC')).join(' ')} | threads ${/Threads:\s+(\d+)/.exec(status)?.[1]} | ${top}`;
}

async function main(): Promise<void> {
  execFileSync(VEGETA, ['-version'], { stdio: 'ignore' });
  const cluster = await startNodeCluster();
  let mooring: MooringServer | null = null;
  let peers: { pairs: PeerPair[]; stop(): void } | null = null;
  try {
    mooring = await installMooring(cluster);
    await createNamespace(cluster.controlPlane, NS, { 'mooring.dev/inject': 'enabled' });
    const service = {
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'server' },
      spec: {
        selector: { app: 'server' },
        ports: [{ name: 'http', port: HTTP_PORT, appProtocol: 'http' }],
      },
    };
    const list = {
      apiVersion: 'v1',
      kind: 'List',
      items: [service, ...['server', 'client'].map((n) => echoPod(n, cluster))],
    };
    await kubectl(cluster.controlPlane, ['apply', '-n', NS, '-f', '-'], JSON.stringify(list));
    const [server, client] = await Promise.all([
      readyPod(cluster, 'server'),
      readyPod(cluster, 'client'),
    ]);
    const svc = (await kubectlJson(cluster.controlPlane, [
      'get',
      'service',
      'server',
      '-n',
      NS,
    ])) as {
      spec: { clusterIP: string };
    };
    const clientApp = containerPid(cluster, appOf(client)?.containerID);
    const serverApp = containerPid(cluster, appOf(server)?.containerID);
    peers = await startPeers(clientApp, serverApp, server.status.podIP ?? '');
    const sidecars = {
      client: containerPid(cluster, sidecarOf(client)?.containerID),
      server: containerPid(cluster, sidecarOf(server)?.containerID),
    };
    /** What `read` gives for each sidecar. */
    const both = <T>(read: (pid: number) => T): Record<'client' | 'server', T> => ({
      client: read(sidecars.client),
      server: read(sidecars.server),
    });
    const mooringUrl = `http://${svc.spec.clusterIP}:${HTTP_PORT}/`;
    const directUrl = `http://${server.status.podIP}:${DIRECT_PORT}/`;
    const idle = both(memoryOf);
    // CPU at rest: what a sidecar spends with no request (timers, probes, the mesh stream).
    const restStart = both(cpuSeconds);
    await new Promise((r) => setTimeout(r, 10_000));
    const rest = (who: 'client' | 'server'): string =>
      ((cpuSeconds(sidecars[who]) - restStart[who]) * 100).toFixed(1);
    const restLine = `CPU just after start, over 10 s, ms per second: client sidecar ${rest('client')}, server sidecar ${rest('server')}.`;
    // At rest once warm: during each direct round no request passes a sidecar.
    const warmRest: string[] = [];
    // Warm-up: the JIT compiles the request path in the first seconds.
    const diag = process.env.MOORING_BENCH_DIAG !== undefined;
    const coldPools = diag ? both(connectionsOf) : null;
    await attackFrom(clientApp, 0, mooringUrl, 5);
    for (const pair of peers.pairs) await attackFrom(clientApp, PROXY_UID, pair.url, 5);
    if (coldPools !== null) {
      for (const who of ['client', 'server'] as const) {
        process.stderr.write(
          `${who} pools in the warm-up: ${poolsLine(coldPools[who], connectionsOf(sidecars[who]))}\n`,
        );
      }
    }

    const rows: string[] = [];
    const peerRows: string[] = [];
    const memRows: string[] = [];
    const memRow = (label: string, m: Memory): string =>
      `| ${label} | ${mib(m.workingSet)} | ${mib(m.usage)} | ${mib(m.anon)} | ${mib(m.cache)} | ${mib(m.vmRss)} | ${mib(m.rssAnon)} | ${mib(m.pss)} |`;
    memRows.push(
      memRow('client sidecar, idle', idle.client),
      memRow('server sidecar, idle', idle.server),
    );
    for (let round = 1; round <= ROUNDS; round++) {
      const restFrom = both(cpuSeconds);
      const direct = await attackFrom(clientApp, PROXY_UID, directUrl, DURATION);
      const restMs = (who: 'client' | 'server'): string =>
        (((cpuSeconds(sidecars[who]) - restFrom[who]) * 1000) / DURATION).toFixed(1);
      warmRest.push(`round ${round}: ${restMs('client')}, ${restMs('server')}`);
      const poolsBefore = diag ? both(connectionsOf) : null;
      const before = both(cpuSplit);
      const meshed = await attackFrom(clientApp, 0, mooringUrl, DURATION);
      const sent = meshed.rate * DURATION;
      const cpu = (who: 'client' | 'server'): string =>
        cpuPerRequest(sidecars[who], before[who], sent);
      const loaded = both(memoryOf);
      for (const pair of peers.pairs) {
        const pids = pair.pids;
        const peerBefore = { client: cpuSplit(pids.client), server: cpuSplit(pids.server) };
        const via = await attackFrom(clientApp, PROXY_UID, pair.url, DURATION);
        const peerCpu = (who: 'client' | 'server'): string =>
          cpuPerRequest(pids[who], peerBefore[who], via.rate * DURATION);
        peerRows.push(
          `| ${round} | ${pair.name} | ${via.rate} | ${via.p50ms} / ${via.p99ms} / ${via.maxMs} | ${via.errors} | ${(via.p50ms - direct.p50ms).toFixed(2)} / ${(via.p99ms - direct.p99ms).toFixed(2)} | ${peerCpu('client')}, ${peerCpu('server')} |`,
        );
      }
      rows.push(
        `| ${round} | ${direct.rate} | ${direct.p50ms} / ${direct.p99ms} / ${direct.maxMs} | ${direct.errors} | ${meshed.rate} | ${meshed.p50ms} / ${meshed.p99ms} / ${meshed.maxMs} | ${meshed.errors} | ${(meshed.p50ms - direct.p50ms).toFixed(2)} / ${(meshed.p99ms - direct.p99ms).toFixed(2)} | ${cpu('client')}, ${cpu('server')} |`,
      );
      if (poolsBefore !== null) {
        for (const who of ['client', 'server'] as const) {
          const connections = connectionsOf(sidecars[who]);
          // What the measured round alone did to the pools (the warm-up and earlier rounds out).
          process.stderr.write(
            `${who} pools in this round: ${poolsLine(poolsBefore[who], connections)}\n`,
          );
          const memory = execFileSync('nsenter', [
            ...['-t', String(sidecars[who]), '-n', 'curl', '-s'],
            'http://127.0.0.1:15000/memory',
          ]).toString();
          process.stderr.write(`${who} memory ${JSON.stringify(JSON.parse(memory))}\n`);
          process.stderr.write(
            `${diagnose(who, sidecars[who])}\n${who} connections ${JSON.stringify(connections)}\n`,
          );
          // Is the C heap in use, or freed memory the allocator keeps? glibc's malloc_trim(0)
          // gives free pages back; what it takes away was not in use.
          if (process.env.MOORING_BENCH_TRIM !== undefined) {
            const before = memoryOf(sidecars[who]).rssAnon;
            execFileSync(
              'gdb',
              [...['-p', String(sidecars[who]), '-batch', '-ex', 'call (int) malloc_trim(0)']],
              { stdio: 'ignore' },
            );
            const after = memoryOf(sidecars[who]).rssAnon;
            process.stderr.write(
              `${who} malloc_trim(0): RssAnon ${mib(before)} -> ${mib(after)} MiB\n`,
            );
          }
        }
      }
      memRows.push(
        memRow(`client sidecar, after round ${round}`, loaded.client),
        memRow(`server sidecar, after round ${round}`, loaded.server),
      );
    }
    process.stdout.write(
      [
        `Two injected Pods on the harness's node; vegeta at ${RATE}/s for ${DURATION}s, keep-alive, 16 idle connections${MAX_CONNECTIONS > 0 ? `, at most ${MAX_CONNECTIONS}` : ''}, from the client Pod's network namespace.`,
        '',
        restLine,
        `CPU at rest once warm (during the direct round), ms per second, client and server sidecar: ${warmRest.join('; ')}.`,
        '',
        '| round | direct req/s | direct p50 / p99 / max ms | errors | mooring req/s | mooring p50 / p99 / max ms | errors | added p50 / p99 ms | CPU µs/request (user + system), client, server sidecar |',
        '| ----- | -----------: | ------------------------- | -----: | ------------: | -------------------------- | -----: | ------------------ | --------------------------------------- |',
        ...rows,
        '',
        `Peer pairs in the same two Pods' network namespaces, unpinned (A in the client Pod, B in the server Pod, mutual TLS 1.3 between them), each after the Mooring run of each round: nginx, and node-pipe (Node.js carrying the same bytes with no proxy's work: its floor); added latency against the same round's direct run:`,
        '',
        '| round | pair | req/s | p50 / p99 / max ms | errors | added p50 / p99 ms | CPU µs/request (user + system), A, B |',
        '| ----- | ---- | ----: | ------------------ | -----: | ------------------ | ------------------------------------ |',
        ...peerRows,
        '',
        'Memory of each mooring-proxy container, MiB: its cgroup (working set = usage − inactive files, as the kubelet and `kubectl top` report it; anonymous; page cache charged to it) and its processes (VmRSS, RssAnon, Pss):',
        '',
        '| container | working set | usage | anon | cache | VmRSS | RssAnon | Pss |',
        '| --------- | ----------: | ----: | ---: | ----: | ----: | ------: | --: |',
        ...memRows,
        '',
      ].join('\n'),
    );
  } finally {
    peers?.stop();
    await mooring?.stop();
    await cluster.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});

// Benchmark of the mesh push: `mooring serve --mesh-dir` (spawned from dist/) holding a mesh of
// 1,000 Services with 10 endpoints each (10,000 meshed Pods), and 1,000 proxies simulated in this
// process (one HTTPS stream each, the trust bundle pinned, reading NDJSON as an agent does but
// without keeping the state). Then one EndpointSlice changes, several times: how long until
// every proxy has the delta (p50, p99, max), the server's CPU per change, the bytes per proxy
// (snapshot and delta), the server's RSS.
//
//   make build && npx tsc -p bench/tsconfig.json && node .cache/bench/bench/mesh-push.js
//   options: --services 1000 --endpoints 10 --proxies 1000 --changes 10 --workers 1 --json

import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = process.cwd();
const BIN = join(ROOT, 'bin', 'mooring.js');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

const SERVICES = arg('--services', 1000);
const ENDPOINTS = arg('--endpoints', 10);
const PROXIES = arg('--proxies', 1000);
const CHANGES = arg('--changes', 10);
const WORKERS = arg('--workers', 1);
const NAMESPACES = 10;
const JSON_OUT = process.argv.includes('--json');

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** The process and its children (workers): RSS in MiB and CPU seconds, from /proc. */
function processTree(pid: number): number[] {
  const children = (() => {
    try {
      return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8')
        .trim()
        .split(/\s+/)
        .filter(Boolean)
        .map(Number);
    } catch {
      return [];
    }
  })();
  return [pid, ...children.flatMap(processTree)];
}
function rssMiB(pid: number): number {
  let kb = 0;
  for (const p of processTree(pid)) {
    kb += Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0);
  }
  return Math.round((kb / 1024) * 10) / 10;
}
function cpuSeconds(pid: number): number {
  let ticks = 0;
  for (const p of processTree(pid)) {
    const fields = readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / 100;
}

// --- the mesh ------------------------------------------------------------------------------

const nsOf = (i: number): string => `bench-${i % NAMESPACES}`;
const podIp = (i: number, j: number): string => `10.${1 + Math.floor(i / 250)}.${i % 250}.${j + 1}`;

function serviceFile(i: number): string {
  const ns = nsOf(i);
  const docs = [
    `apiVersion: v1
kind: Service
metadata: {name: svc-${i}, namespace: ${ns}}
spec:
  clusterIP: 10.96.${Math.floor(i / 250)}.${i % 250}
  selector: {app: svc-${i}}
  ports: [{name: http, port: 80, targetPort: 8080}, {name: grpc-api, port: 9090, targetPort: 9090}]
`,
  ];
  for (let j = 0; j < ENDPOINTS; j++) {
    docs.push(`apiVersion: v1
kind: Pod
metadata:
  name: svc-${i}-${j}
  namespace: ${ns}
  generateName: svc-${i}-6f7c9-
  labels: {app: svc-${i}, version: v1, pod-template-hash: 6f7c9}
  annotations: {mooring.dev/status: '{"containers":["mooring-proxy"]}'}
  ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: svc-${i}-6f7c9, uid: u, controller: true}]
spec:
  serviceAccountName: svc-${i}
  containers: [{name: app, image: app, ports: [{containerPort: 8080}, {containerPort: 9090}]}]
status: {podIP: ${podIp(i, j)}}
`);
  }
  return docs.join('---\n');
}

function sliceFile(i: number, firstAddress: string): string {
  const endpoints = Array.from({ length: ENDPOINTS }, (_, j) => {
    const address = j === 0 ? firstAddress : podIp(i, j);
    return `  - {addresses: [${address}], conditions: {ready: true}, targetRef: {kind: Pod, name: svc-${i}-${j}}}`;
  });
  return `apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: svc-${i}-abcde, namespace: ${nsOf(i)}, labels: {kubernetes.io/service-name: svc-${i}}}
addressType: IPv4
endpoints:
${endpoints.join('\n')}
ports: [{name: http, port: 8080}, {name: grpc-api, port: 9090}]
`;
}

// --- the proxies ---------------------------------------------------------------------------

interface Proxy {
  readonly index: number;
  snapshotBytes: number;
  snapshotAt: number;
  /** Bytes of the line being read, and its text while it is small. */
  lineBytes: number;
  line: string[] | null;
  lines: number;
  lastDeltaBytes: number;
  /** The marker each proxy waits for, and when it saw it. */
  waitingFor: string | null;
  sawAt: number;
}

function connect(
  p: Proxy,
  port: number,
  ca: string,
  connected: () => void,
  failed: (e: Error) => void,
): void {
  const s = p.index % SERVICES;
  const podName = `svc-${s}-${Math.floor(p.index / SERVICES) % ENDPOINTS}`;
  const req = https.request(
    {
      host: '127.0.0.1',
      port,
      path: `/v1/mesh/watch?pod=${podName}&namespace=${nsOf(s)}`,
      ca,
      agent: false,
      headers: { authorization: `Bearer tok-${p.index}` },
    },
    (res) => {
      if (res.statusCode !== 200) {
        failed(new Error(`proxy ${p.index}: HTTP ${res.statusCode ?? 0}`));
        return;
      }
      res.on('data', (chunk: Buffer) => {
        let start = 0;
        for (let nl = chunk.indexOf(0x0a); ; nl = chunk.indexOf(0x0a, start)) {
          const end = nl === -1 ? chunk.length : nl;
          p.lineBytes += end - start;
          // Only small lines (not the snapshot) are kept as text, to look for the marker.
          if (p.lines > 0 && p.line !== null) {
            if (p.lineBytes < 1_000_000) p.line.push(chunk.toString('latin1', start, end));
            else p.line = null;
          }
          if (nl === -1) break;
          if (p.lines === 0) {
            p.snapshotBytes = p.lineBytes + 1;
            p.snapshotAt = performance.now();
            connected();
          } else if (p.line !== null) {
            const text = p.line.join('');
            if (text.includes('"type":"delta"')) p.lastDeltaBytes = p.lineBytes + 1;
            if (p.waitingFor !== null && text.includes(p.waitingFor)) {
              p.sawAt = performance.now();
              p.waitingFor = null;
            }
          }
          p.lines += 1;
          p.lineBytes = 0;
          p.line = [];
          start = nl + 1;
        }
      });
      res.on('error', () => undefined);
    },
  );
  req.on('error', failed);
  req.end();
}

const percentile = (values: number[], q: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((q / 100) * sorted.length) - 1)] ?? NaN;
};
const round = (n: number, d = 1): number => Math.round(n * 10 ** d) / 10 ** d;

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'mooring-bench-mesh-'));
  const data = join(dir, 'data');
  const mesh = join(dir, 'mesh');
  mkdirSync(data, { mode: 0o700 });
  chmodSync(data, 0o700);
  mkdirSync(mesh);
  const tokens: Record<string, { namespace: string; serviceAccount: string }> = {};
  for (let k = 0; k < PROXIES; k++)
    tokens[`tok-${k}`] = { namespace: nsOf(k % SERVICES), serviceAccount: `svc-${k % SERVICES}` };
  writeFileSync(join(data, 'tokens.json'), JSON.stringify(tokens), { mode: 0o600 });
  for (let i = 0; i < SERVICES; i++) {
    writeFileSync(join(mesh, `svc-${i}.yaml`), serviceFile(i));
    writeFileSync(join(mesh, `svc-${i}-slice.yaml`), sliceFile(i, podIp(i, 0)));
  }
  const [port, adminPort] = [await freePort(), await freePort()];
  const started = performance.now();
  const server: ChildProcess = spawn(
    process.execPath,
    [
      BIN,
      'serve',
      '--data-dir',
      data,
      '--mesh-dir',
      mesh,
      '--listen',
      `127.0.0.1:${port}`,
      '--admin-listen',
      `127.0.0.1:${adminPort}`,
      '--workers',
      String(WORKERS),
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  server.stderr?.on('data', (c: Buffer) => {
    stderr = (stderr + c.toString()).slice(-20_000);
  });
  const pid = server.pid ?? 0;
  try {
    for (;;) {
      if (stderr.includes('"mooring serve is ready"')) break;
      if (server.exitCode !== null) throw new Error(`mooring serve exited: ${stderr}`);
      if (performance.now() - started > 120_000)
        throw new Error('mooring serve was not ready in 120 s');
      await sleep(50);
    }
    const readyMs = performance.now() - started;
    const rssLoaded = rssMiB(pid);
    const ca = readFileSync(join(data, 'root-cert.pem'), 'utf8');

    // Connect every proxy, 50 at a time.
    const proxies: Proxy[] = Array.from({ length: PROXIES }, (_, index) => ({
      index,
      snapshotBytes: 0,
      snapshotAt: 0,
      lineBytes: 0,
      line: [],
      lines: 0,
      lastDeltaBytes: 0,
      waitingFor: null,
      sawAt: 0,
    }));
    const cpuBeforeConnect = cpuSeconds(pid);
    const connectStart = performance.now();
    let next = 0;
    await new Promise<void>((resolve, reject) => {
      let done = 0;
      const launch = (): void => {
        const p = proxies[next++];
        if (p === undefined) return;
        connect(
          p,
          port,
          ca,
          () => {
            done += 1;
            if (done === PROXIES) resolve();
            else launch();
          },
          reject,
        );
      };
      for (let i = 0; i < 50; i++) launch();
    });
    const connectMs = performance.now() - connectStart;
    const connectCpu = cpuSeconds(pid) - cpuBeforeConnect;
    const rssConnected = rssMiB(pid);

    // Idle: heartbeats only.
    await sleep(2000);
    const idleCpu0 = cpuSeconds(pid);
    const idleT0 = performance.now();
    await sleep(5000);
    const idleRate = (cpuSeconds(pid) - idleCpu0) / ((performance.now() - idleT0) / 1000);

    // Changes: one EndpointSlice each time, a new address as the marker.
    const rounds: {
      p50: number;
      p99: number;
      max: number;
      cpuMs: number;
      deltaBytes: number;
      serverMs: number;
    }[] = [];
    const pushLatency = async (): Promise<{ sum: number; count: number }> => {
      const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
      const value = (name: string): number =>
        Number(new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(text)?.[1] ?? NaN);
      return {
        sum: value('mooring_mesh_push_latency_seconds_sum'),
        count: value('mooring_mesh_push_latency_seconds_count'),
      };
    };
    for (let r = 1; r <= CHANGES; r++) {
      const i = (r * 7) % SERVICES;
      const marker = `10.250.${r % 250}.${1 + Math.floor(r / 250)}`;
      for (const p of proxies) {
        p.waitingFor = `"${marker}"`;
        p.sawAt = 0;
      }
      const before = await pushLatency();
      const cpu0 = cpuSeconds(pid);
      const t0 = performance.now();
      writeFileSync(join(mesh, `svc-${i}-slice.yaml`), sliceFile(i, marker));
      for (;;) {
        if (proxies.every((p) => p.waitingFor === null)) break;
        if (performance.now() - t0 > 30_000)
          throw new Error(`change ${r}: not every proxy had it after 30 s`);
        await sleep(5);
      }
      const t1 = performance.now();
      const cpuMs = (cpuSeconds(pid) - cpu0 - idleRate * ((t1 - t0) / 1000)) * 1000;
      const latencies = proxies.map((p) => p.sawAt - t0);
      const after = await pushLatency();
      rounds.push({
        p50: percentile(latencies, 50),
        p99: percentile(latencies, 99),
        max: Math.max(...latencies),
        cpuMs,
        deltaBytes: proxies[0]?.lastDeltaBytes ?? 0,
        // The server's own view: from the change it saw to the delta written, mean over proxies.
        serverMs: ((after.sum - before.sum) / (after.count - before.count)) * 1000,
      });
      await sleep(1500);
    }
    const rssAfter = rssMiB(pid);
    const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
    const metric = (name: string): number =>
      Number(new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(metrics)?.[1] ?? NaN);
    const all = rounds.flatMap((r) => [r.p99]);
    const result = {
      date: new Date().toISOString(),
      node: process.version,
      loadavg: loadavg().map((l) => round(l, 2)),
      mesh: {
        services: SERVICES,
        endpointsPerService: ENDPOINTS,
        pods: SERVICES * ENDPOINTS,
        proxies: PROXIES,
        workers: WORKERS,
      },
      server: {
        readyMs: Math.round(readyMs),
        rssLoadedMiB: rssLoaded,
        rssConnectedMiB: rssConnected,
        rssAfterChangesMiB: rssAfter,
        idleCpuPercent: round(idleRate * 100),
      },
      connect: { allSnapshotsMs: Math.round(connectMs), serverCpuSeconds: round(connectCpu, 2) },
      bytesPerProxy: {
        snapshot: proxies[0]?.snapshotBytes ?? 0,
        delta: Math.round(rounds.reduce((s, r) => s + r.deltaBytes, 0) / rounds.length),
      },
      changes: rounds.map((r) => ({
        p50Ms: round(r.p50),
        p99Ms: round(r.p99),
        maxMs: round(r.max),
        serverCpuMs: round(r.cpuMs),
        serverPushMs: round(r.serverMs),
      })),
      summary: {
        p50Ms: round(
          percentile(
            rounds.map((r) => r.p50),
            50,
          ),
        ),
        p99MsMedianOfChanges: round(percentile(all, 50)),
        p99MsWorstChange: round(Math.max(...all)),
        serverCpuMsPerChangeMedian: round(
          percentile(
            rounds.map((r) => r.cpuMs),
            50,
          ),
        ),
        serverPushLatencyMeanMs: round(
          (metric('mooring_mesh_push_latency_seconds_sum') /
            metric('mooring_mesh_push_latency_seconds_count')) *
            1000,
        ),
      },
    };
    if (JSON_OUT) {
      console.log(JSON.stringify(result, null, 2));
    } else {
      console.log(
        `mesh: ${SERVICES} Services x ${ENDPOINTS} endpoints (${SERVICES * ENDPOINTS} Pods), ${PROXIES} proxies, ${WORKERS} worker(s); load ${result.loadavg.join(' ')}`,
      );
      console.log(
        `server ready in ${result.server.readyMs} ms; RSS ${rssLoaded} MiB loaded, ${rssConnected} MiB with the proxies, ${rssAfter} MiB after the changes; idle CPU ${result.server.idleCpuPercent}%`,
      );
      console.log(
        `every snapshot received in ${result.connect.allSnapshotsMs} ms (server CPU ${result.connect.serverCpuSeconds} s); bytes per proxy: snapshot ${result.bytesPerProxy.snapshot}, delta ${result.bytesPerProxy.delta}`,
      );
      for (const [n, c] of result.changes.entries()) {
        console.log(
          `change ${n + 1}: p50 ${c.p50Ms} ms, p99 ${c.p99Ms} ms, max ${c.maxMs} ms, server CPU ${c.serverCpuMs} ms, server's push latency ${c.serverPushMs} ms`,
        );
      }
      console.log(`summary: ${JSON.stringify(result.summary)}`);
    }
  } finally {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

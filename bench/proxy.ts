// The sidecar pair against direct and against a pair of nginx proxies doing the same mutual TLS,
// side by side in one run (issue: "Benchmarks", bench/RESULTS.md).
//
//   wrk -> [A: outbound] --mTLS 1.3--> [B: inbound] -> backend (nginx, 1 KB answers)
//
// Mooring: two `Sidecar`s, each in its own process (bench/sidecar-process.ts), the original
// destination fixed (as one iptables redirect gives) so that everything runs on loopback.
// nginx: the same topology with proxy_pass / proxy_ssl_certificate and the same certificates.
// The load generator (and this process) runs on CPU 0, proxies and backend on CPU 1. CPU per
// request is read from /proc (user + system time of each proxy's processes) over the measured
// interval.
//
//   node .cache/bench/bench/proxy.js [--duration 10] [--connections 50] [--rate 1000] [--rounds 1]
//                                     [--tcp-mib 1024] [--only direct,mooring,nginx]
//                                     (also node-pipe: Node.js's own floor, bench/node-pipe.ts)
//                                     [--rate-warmup 0] (seconds at the rate before the measured)
//
// With --telemetry off,trace1,trace100,log the run compares the Mooring pair with itself instead:
// everything off, tracing at 1% and at 100% (spans exported over OTLP/HTTP to a collector in this
// process that answers 200), and the access log on (JSON lines on each proxy's stdout, a pipe
// this process drains), each pair in its own processes, measured round after round in turn.
//
//   --only mooring,mooring-rules: the pair without rules against the same pair with a weighted
//   route, retries, a timeout and outlier detection (bench/RESULTS.md, traffic management)

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  MESH_API_VERSION,
  type MeshMessage,
  type MeshService,
  type MeshSettings,
  type ProxyScope,
} from '../src/api/mesh';
import { PROXY_NODE_OPTIONS } from '../src/constants';
import { roundRobinSubsetsPolicy } from '../test/fixtures/mesh';
import { VEGETA, attack, type Latency } from './vegeta';
import {
  NGINX_HEAD,
  makeBenchPki,
  nginxInboundConfig,
  nginxOutboundConfig,
  writeMtlsFiles,
} from './nginx';
import { runWrk, type WrkResult } from './wrk';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string): string => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? fallback : (args[i + 1] ?? fallback);
};
const DURATION = Number(flag('duration', '10'));
const CONNECTIONS = Number(flag('connections', '50'));
const RATE = Number(flag('rate', '1000'));
const ROUNDS = Number(flag('rounds', '1'));
// Seconds of the same fixed-rate load, not measured, before the measured one (0: none).
const RATE_WARMUP = Number(flag('rate-warmup', '0'));
const TCP_MIB = Number(flag('tcp-mib', '1024'));
const ONLY = new Set(flag('only', 'direct,mooring,nginx').split(','));
const TELEMETRY = flag('telemetry', '')
  .split(',')
  .filter((m) => m !== '');
const CLK_TCK = 100;

// This process reads /proc and vegeta's results between runs: on CPU 0 with the load generators,
// away from the proxies' CPU (its threads too, and what it spawns unpinned).
execFileSync('taskset', ['-a', '-p', '-c', '0', String(process.pid)], { stdio: 'ignore' });

const dir = mkdtempSync(path.join(tmpdir(), 'mooring-bench-proxy-'));
const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

// --- certificates: one root, a client and a server leaf (URI SAN for Mooring, DNS for nginx) --

const pki = makeBenchPki();
const { client, server } = pki;
const file = (name: string, text: string): string => {
  const p = path.join(dir, name);
  writeFileSync(p, text, { mode: 0o600 });
  return p;
};
const PKI = writeMtlsFiles(dir, pki);

// --- processes -----------------------------------------------------------------------------

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return p;
}

async function waitPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port}`);
}

function nginx(name: string, config: string): ChildProcess {
  const prefix = path.join(dir, name);
  execFileSync('mkdir', ['-p', prefix]);
  const conf = file(`${name}.conf`, config.replace(/PREFIX/g, prefix));
  const child = spawn(
    'taskset',
    ['-c', '1', 'nginx', '-p', prefix, '-c', conf, '-e', path.join(prefix, 'error.log')],
    {
      stdio: 'inherit',
    },
  );
  children.push(child);
  return child;
}

const BODY = 'x'.repeat(1024);

async function startBackend(): Promise<{ port: number; proc: ChildProcess }> {
  const port = await freePort();
  const proc = nginx(
    'backend',
    `${NGINX_HEAD} http { access_log off; keepalive_requests 1000000;
      server { listen 127.0.0.1:${port}; location / { return 200 "${BODY}"; } } }`,
  );
  await waitPort(port);
  return { port, proc };
}

async function startNginxPair(backend: number): Promise<{ port: number; procs: ChildProcess[] }> {
  const [front, back] = [await freePort(), await freePort()];
  const b = nginx('nginx-b', nginxInboundConfig(`127.0.0.1:${back}`, `127.0.0.1:${backend}`, PKI));
  const a = nginx('nginx-a', nginxOutboundConfig(`127.0.0.1:${front}`, `127.0.0.1:${back}`, PKI));
  await waitPort(front);
  await waitPort(back);
  return { port: front, procs: [a, b] };
}

async function startNginxTcpPair(sink: number): Promise<{ port: number; procs: ChildProcess[] }> {
  const [front, back] = [await freePort(), await freePort()];
  const load = 'load_module /usr/lib/nginx/modules/ngx_stream_module.so;';
  const b = nginx(
    'nginx-tcp-b',
    `${load} ${NGINX_HEAD} stream { server { listen 127.0.0.1:${back} ssl; ssl_protocols TLSv1.3;
      ssl_certificate ${PKI.serverCert}; ssl_certificate_key ${PKI.serverKey};
      ssl_verify_client on; ssl_client_certificate ${PKI.root}; proxy_pass 127.0.0.1:${sink}; } }`,
  );
  const a = nginx(
    'nginx-tcp-a',
    `${load} ${NGINX_HEAD} stream { server { listen 127.0.0.1:${front}; proxy_pass 127.0.0.1:${back};
      proxy_ssl on; proxy_ssl_protocols TLSv1.3; proxy_ssl_certificate ${PKI.clientCert};
      proxy_ssl_certificate_key ${PKI.clientKey}; proxy_ssl_trusted_certificate ${PKI.root};
      proxy_ssl_verify on; proxy_ssl_name server.mesh; } }`,
  );
  await waitPort(front);
  await waitPort(back);
  return { port: front, procs: [a, b] };
}

function scope(sa: string): ProxyScope {
  return {
    pod: { name: `${sa}-0`, namespace: 'default', ip: '127.0.0.1' },
    identity: `spiffe://cluster.local/ns/default/sa/${sa}`,
    workload: { name: sa, namespace: 'default', app: sa, version: 'v1' },
    inbound: { mtlsMode: 'PERMISSIVE' },
  };
}

/** The telemetry part of the pushed settings. */
type Telemetry = Pick<MeshSettings, 'tracing' | 'accessLog'>;
const TELEMETRY_OFF: Telemetry = {
  tracing: { otlpEndpoint: null, samplingPercent: 1 },
  accessLog: false,
};

function meshFile(
  name: string,
  sa: string,
  services: MeshService[],
  telemetry: Telemetry = TELEMETRY_OFF,
): string {
  const message: MeshMessage = {
    type: 'snapshot',
    apiVersion: MESH_API_VERSION,
    version: 1,
    proxy: scope(sa),
    settings: {
      trustDomain: 'cluster.local',
      protocolDetectionTimeoutMs: 100,
      ...telemetry,
    },
    services,
  };
  return file(name, JSON.stringify(message));
}

/** Lines each sidecar printed after its ports (the access log), by pid. */
const stdoutLines = new Map<number, number>();
const stdoutDir = process.env.MOORING_BENCH_STDOUT;

/** Node's flags for a sidecar (and node-pipe): the injector's, unless MOORING_BENCH_NODE_FLAGS. */
function sidecarNodeFlags(): string[] {
  return (process.env.MOORING_BENCH_NODE_FLAGS ?? PROXY_NODE_OPTIONS).split(' ').filter(Boolean);
}

async function sidecar(
  setup: object,
): Promise<{ proc: ChildProcess; outbound: number; inbound: number }> {
  const script = path.join(__dirname, 'sidecar-process.js');
  const prof =
    process.env.MOORING_BENCH_PROF === undefined
      ? []
      : ['--cpu-prof', `--cpu-prof-dir=${process.env.MOORING_BENCH_PROF}`];
  const proc = spawn(
    'taskset',
    // MOORING_BENCH_NODE_FLAGS: Node/V8 flags of the sidecars (e.g. --max-semi-space-size=2).
    ['-c', '1', process.execPath, ...prof, ...sidecarNodeFlags(), script, JSON.stringify(setup)],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  children.push(proc);
  const line = await new Promise<string>((resolve, reject) => {
    let out: string | null = '';
    let lines = -1;
    proc.stdout?.on('data', (d: Buffer) => {
      // One write holds the ports (the first, but for what V8's tracing flags print, whose
      // buffered output may end in the middle of a line before it); the rest (the access log)
      // is counted, not kept, unless MOORING_BENCH_STDOUT names a directory to append it to
      // (<pid>.out: e.g. V8's --trace-gc-nvp).
      if (stdoutDir !== undefined) appendFileSync(path.join(stdoutDir, `${proc.pid}.out`), d);
      for (let i = d.indexOf(10); i !== -1; i = d.indexOf(10, i + 1)) lines++;
      stdoutLines.set(proc.pid as number, lines);
      if (out === null) return;
      out += d.toString();
      const ports = /\{"outbound":\d+,"inbound":\d+\}/.exec(out);
      if (ports !== null) {
        resolve(ports[0]);
        out = null;
      }
    });
    proc.once('exit', (code) => reject(new Error(`sidecar exited with ${code}`)));
  });
  const ports = JSON.parse(line) as { outbound: number; inbound: number };
  return { proc, ...ports };
}

/**
 * The traffic rules of `--only mooring-rules` (issue 15): a weighted route between two subsets,
 * retries and a timeout, a DestinationRule with round robin and outlier detection.
 */
function withRules(svc: MeshService): MeshService {
  return {
    ...svc,
    endpoints: svc.endpoints.map((e) => ({ ...e, subsets: ['v1', 'v2'] })),
    routes: {
      source: { kind: 'VirtualService', namespace: 'default', name: 'server' },
      rules: [
        {
          matches: [{ headers: [{ name: 'x-canary', value: { exact: 'always' } }] }],
          destinations: [{ service: svc.key, subset: 'v2', weight: 1 }],
        },
        {
          matches: [],
          destinations: [
            { service: svc.key, subset: 'v1', weight: 90 },
            { service: svc.key, subset: 'v2', weight: 10 },
          ],
          timeoutMs: 10_000,
          retries: { attempts: 2, perTryTimeoutMs: 5000, retryOn: ['5xx', 'connect-failure'] },
        },
      ],
    },
    policy: roundRobinSubsetsPolicy('server'),
  };
}

async function startMooringPair(
  backend: number,
  protocol: 'http' | 'tcp',
  telemetry: Telemetry = TELEMETRY_OFF,
  tag = '',
  rules = false,
): Promise<{ port: number; procs: ChildProcess[] }> {
  const b = await sidecar({
    originalDestination: { address: '127.0.0.1', port: backend },
    meshFile: meshFile(
      `mesh-b-${protocol}${tag}${rules ? '-rules' : ''}.json`,
      'server',
      [],
      telemetry,
    ),
    credentials: {
      chainPem: server.cert,
      keyPem: server.key,
      roots: [pki.rootPem],
      spiffeId: server.spiffe,
    },
  });
  const svc: MeshService = {
    key: 'default/server',
    name: 'server',
    namespace: 'default',
    hostname: 'server.default.svc.cluster.local',
    addresses: ['10.96.0.10'],
    ports: [{ port: 80, name: protocol, protocol }],
    endpoints: [
      {
        address: '127.0.0.1',
        ports: { '80': b.inbound },
        ready: true,
        identity: server.spiffe,
        workload: { name: 'server', namespace: 'default', app: 'server', version: 'v1' },
        pod: 'server-0',
      },
    ],
  };
  const a = await sidecar({
    originalDestination: { address: '10.96.0.10', port: 80 },
    meshFile: meshFile(
      `mesh-a-${protocol}${tag}${rules ? '-rules' : ''}.json`,
      'client',
      [rules ? withRules(svc) : svc],
      telemetry,
    ),
    credentials: {
      chainPem: client.cert,
      keyPem: client.key,
      roots: [pki.rootPem],
      spiffeId: client.spiffe,
    },
  });
  return { port: a.outbound, procs: [a.proc, b.proc] };
}

// --- measuring -----------------------------------------------------------------------------

/** user+system CPU seconds of a process and its children (threads included). */
function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  // utime, stime, cutime, cstime are fields 14-17 (1-based): here indices 11-14.
  const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(fields[i] ?? 0), 0);
  return ticks / CLK_TCK;
}

/** A field of /proc/<pid>/status in MiB, to one decimal. */
function statusMiB(pid: number, name: string): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = new RegExp(`${name}:\\s+(\\d+) kB`).exec(status);
  return Math.round((Number(m?.[1] ?? 0) / 1024) * 10) / 10;
}

/** Makes VmHWM, the process's peak resident size, its resident size now (Linux 4.0 and later). */
function resetPeakRss(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

/** Resident memory: the whole (VmRSS), then in parentheses the process's own (RssAnon: not the
 * pages of the executable and libraries, which every process of the same binary shares). */
function rssMiB(pid: number): string {
  return `${statusMiB(pid, 'VmRSS')} (${statusMiB(pid, 'RssAnon')})`;
}

/** The process doing the work: taskset execs it, so the child's pid is the process itself. */
const pidOf = (c: ChildProcess): number => c.pid as number;

interface Measured extends WrkResult {
  /** Requests sent (about: requests/s times seconds), the warm-up's included. */
  requests: number;
  /** µs of CPU per request, per proxy process. */
  cpuUsPerRequest: number[];
  rssMiB: string[];
}

/**
 * Node.js's own floor on the same path (`--only node-pipe`): bench/node-pipe.ts, two processes on
 * CPU 1 carrying the bytes with the same mutual TLS and none of a proxy's work (no parsing,
 * routing, pool or metrics), a TLS connection per client connection.
 */
async function startNodePipe(backend: number): Promise<{ port: number; procs: ChildProcess[] }> {
  const [front, back] = [await freePort(), await freePort()];
  const pipeProcess = (setup: object): ChildProcess => {
    const child = spawn(
      'taskset',
      [
        '-c',
        '1',
        process.execPath,
        ...sidecarNodeFlags(),
        path.join(__dirname, 'node-pipe.js'),
        JSON.stringify({ ...setup, files: PKI }),
      ],
      { stdio: 'inherit' },
    );
    children.push(child);
    return child;
  };
  const b = pipeProcess({ role: 'b', listen: `127.0.0.1:${back}`, target: `127.0.0.1:${backend}` });
  const a = pipeProcess({ role: 'a', listen: `127.0.0.1:${front}`, target: `127.0.0.1:${back}` });
  await waitPort(front);
  await waitPort(back);
  return { port: front, procs: [a, b] };
}

/** wrk against `url`, the CPU of `procs` read around it (this process' event loop stays free). */
async function measure(url: string, procs: ChildProcess[]): Promise<Measured> {
  const warm = await runWrk(url, { connections: CONNECTIONS, duration: 3 }); // warm-up
  const before = procs.map((p) => cpuSeconds(pidOf(p)));
  const wrk = await runWrk(url, { connections: CONNECTIONS, duration: DURATION, pinned: '0' });
  const after = procs.map((p) => cpuSeconds(pidOf(p)));
  if (process.env.MOORING_BENCH_MEMORY !== undefined) for (const p of procs) p.kill('SIGUSR2');
  const requests = wrk.rps * DURATION;
  return {
    ...wrk,
    requests: Math.round(requests + warm.rps * 3),
    cpuUsPerRequest: after.map((a, i) =>
      Math.round(((a - (before[i] as number)) / requests) * 1e6),
    ),
    rssMiB: procs.map((p) => rssMiB(pidOf(p))),
  };
}

async function fixedRate(url: string, seconds = DURATION): Promise<Latency | null> {
  try {
    execFileSync(VEGETA, ['-version'], { stdio: 'ignore' });
  } catch {
    return null;
  }
  const target = file('targets.txt', `GET ${url}\n`);
  return attack(
    ['taskset', '-c', '0'],
    [
      `-targets=${target}`,
      `-rate=${RATE}/s`,
      `-duration=${seconds}s`,
      '-keepalive=true',
      '-connections=16',
    ],
  );
}

/** Sends `mib` MiB through `port` and waits for the sink to have them all. */
async function transfer(port: number, mib: number, sinkCount: () => number): Promise<number> {
  const start = process.hrtime.bigint();
  const chunk = Buffer.alloc(64 * 1024, 7);
  const total = mib * 1024 * 1024;
  await new Promise<void>((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    let sent = 0;
    const pump = (): void => {
      while (sent < total) {
        sent += chunk.length;
        if (!s.write(chunk)) {
          s.once('drain', pump);
          return;
        }
      }
      s.end();
    };
    s.on('connect', pump);
    s.on('error', reject);
    s.on('close', () => resolve());
    s.resume();
  });
  while (sinkCount() < total) await new Promise((r) => setTimeout(r, 20));
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** SIGTERM, and wait for the exit (a profiled sidecar writes its profile then). */
async function stopAll(procs: ChildProcess[]): Promise<void> {
  await Promise.all(
    procs.map(
      (p) =>
        new Promise<void>((resolve) => {
          if (p.exitCode !== null) return resolve();
          const timer = setTimeout(() => {
            p.kill('SIGKILL');
            resolve();
          }, 10_000);
          p.once('exit', () => {
            clearTimeout(timer);
            resolve();
          });
          p.kill('SIGTERM');
        }),
    ),
  );
}

// --- main ----------------------------------------------------------------------------------

// --- telemetry: the pair against itself with tracing and the access log -----------------------

/**
 * A collector that takes OTLP/HTTP exports (answers 200) and counts the spans in them by the
 * first segment of the path (each mode's base URL is `<collector>/<mode>`).
 */
async function startCollector(): Promise<{
  url: string;
  spans: (mode: string) => number;
  close(): void;
}> {
  const spans = new Map<string, number>();
  const collector = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const mode = (req.url ?? '').split('/')[1] ?? '';
      const n = Buffer.concat(chunks).toString().split('"spanId"').length - 1;
      spans.set(mode, (spans.get(mode) ?? 0) + n);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((r) => collector.listen(0, '127.0.0.1', r));
  const { port } = collector.address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    spans: (mode) => spans.get(mode) ?? 0,
    close: () => collector.close(),
  };
}

const TELEMETRY_MODES: Record<string, (collector: string) => Telemetry> = {
  off: () => TELEMETRY_OFF,
  trace1: (url) => ({ tracing: { otlpEndpoint: url, samplingPercent: 1 }, accessLog: false }),
  trace100: (url) => ({ tracing: { otlpEndpoint: url, samplingPercent: 100 }, accessLog: false }),
  log: () => ({ ...TELEMETRY_OFF, accessLog: true }),
};

const median = (xs: readonly number[]): number => {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)] as number;
};

async function telemetryMain(): Promise<void> {
  for (const m of TELEMETRY) {
    if (TELEMETRY_MODES[m] === undefined)
      throw new Error(
        `--telemetry: unknown mode ${m} (${Object.keys(TELEMETRY_MODES).join(', ')})`,
      );
  }
  const backend = await startBackend();
  const collector = await startCollector();
  const pairs = new Map<string, { port: number; procs: ChildProcess[] }>();
  for (const m of TELEMETRY) {
    const settings = (TELEMETRY_MODES[m] as (url: string) => Telemetry)(`${collector.url}/${m}`);
    pairs.set(m, await startMooringPair(backend.port, 'http', settings, `-${m}`));
  }
  interface Round {
    readonly wrk: Measured;
    /** vegeta at RATE/s; null without vegeta. */
    readonly fixed: Latency | null;
    /** CPU µs per request of the pair during the fixed-rate run. */
    readonly fixedCpuUs: number;
  }
  const rounds = new Map<string, Round[]>(TELEMETRY.map((m) => [m, []]));
  // Round after round, each mode in turn: the machine's other load falls on all of them alike.
  for (let round = 0; round < ROUNDS; round++) {
    for (const [m, pair] of pairs) {
      const url = `http://127.0.0.1:${pair.port}/`;
      const wrk = await measure(url, pair.procs);
      const cpu = (): number => pair.procs.reduce((t, p) => t + cpuSeconds(pidOf(p)), 0);
      const before = cpu();
      const fixed = await fixedRate(url);
      const fixedCpuUs =
        fixed === null ? NaN : Math.round(((cpu() - before) / (RATE * DURATION)) * 1e6);
      rounds.get(m)?.push({ wrk, fixed, fixedCpuUs });
    }
  }
  // The last batch of spans (a second at most) and the access log's tail, then the exit.
  await new Promise((r) => setTimeout(r, 1500));
  await stopAll([...pairs.values()].flatMap((p) => p.procs));
  /** `median (min–max)` of a list. */
  const spread = (xs: readonly number[]): string =>
    `${median(xs)} (${Math.min(...xs)}–${Math.max(...xs)})`;
  const vsOff = (m: string, pick: (r: Round) => number): string => {
    const off = rounds.get('off');
    if (off === undefined || m === 'off') return '-';
    const base = median(off.map(pick));
    return `${(((median((rounds.get(m) ?? []).map(pick)) - base) / base) * 100).toFixed(1)}%`;
  };
  const saturated = (r: Round): number => r.wrk.cpuUsPerRequest.reduce((a, b) => a + b, 0);
  const atRate = (r: Round): number => r.fixedCpuUs;
  const rows = [
    `### Telemetry: the pair with tracing and the access log against all off`,
    '',
    `HTTP/1.1, 1 KB answers; each of ${ROUNDS} rounds runs every mode in turn: wrk -t1 -c${CONNECTIONS} -d${DURATION}s (saturated), then vegeta at ${RATE}/s for ${DURATION}s (keep-alive). Medians, (min–max) over the rounds; CPU is the pair's (A + B) user + system time per request.`,
    '',
    `| mode | requests/s (wrk) | CPU µs/request, saturated | vs off | CPU µs/request at ${RATE}/s | vs off | p99 ms at ${RATE}/s | errors | requests sent | spans exported / log lines |`,
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const [m, list] of rounds) {
    const procs = pairs.get(m)?.procs ?? [];
    const lines = procs.reduce((n, p) => n + (stdoutLines.get(pidOf(p)) ?? 0), 0);
    const out = m.startsWith('trace')
      ? `${collector.spans(m)} spans`
      : m === 'log'
        ? `${lines} lines`
        : '-';
    const fixed = list.flatMap((r) => (r.fixed === null ? [] : [r.fixed]));
    const sent = list.reduce((n, r) => n + r.wrk.requests + (r.fixed?.rate ?? 0) * DURATION, 0);
    const errors = list.reduce((n, r) => n + r.wrk.errors + (r.fixed?.errors ?? 0), 0);
    rows.push(
      `| ${m} | ${spread(list.map((r) => r.wrk.rps))} | ${spread(list.map(saturated))} | ${vsOff(m, saturated)} | ${fixed.length === 0 ? 'vegeta missing' : spread(list.map(atRate))} | ${fixed.length === 0 ? '-' : vsOff(m, atRate)} | ${fixed.length === 0 ? '-' : spread(fixed.map((f) => f.p99ms))} | ${errors} | ${Math.round(sent)} | ${out} |`,
    );
  }
  collector.close();
  process.stdout.write(`${rows.join('\n')}\n`);
  process.exit(0);
}

async function main(): Promise<void> {
  if (TELEMETRY.length > 0) return telemetryMain();
  const backend = await startBackend();
  const url = (port: number): string => `http://127.0.0.1:${port}/`;
  const rows: string[] = [];
  const results: Record<string, Measured[]> = {
    direct: [],
    mooring: [],
    'mooring-rules': [],
    nginx: [],
    'node-pipe': [],
  };
  const latency: Record<string, Latency | null> = {};
  const mooring = ONLY.has('mooring') ? await startMooringPair(backend.port, 'http') : null;
  const mooringRules = ONLY.has('mooring-rules')
    ? await startMooringPair(backend.port, 'http', TELEMETRY_OFF, '', true)
    : null;
  const nginxPair = ONLY.has('nginx') ? await startNginxPair(backend.port) : null;
  const nodePipe = ONLY.has('node-pipe') ? await startNodePipe(backend.port) : null;
  for (let round = 0; round < ROUNDS; round++) {
    if (ONLY.has('direct')) results.direct?.push(await measure(url(backend.port), [backend.proc]));
    if (mooring !== null) results.mooring?.push(await measure(url(mooring.port), mooring.procs));
    if (mooringRules !== null) {
      results['mooring-rules']?.push(await measure(url(mooringRules.port), mooringRules.procs));
    }
    if (nginxPair !== null)
      results.nginx?.push(await measure(url(nginxPair.port), nginxPair.procs));
    if (nodePipe !== null)
      results['node-pipe']?.push(await measure(url(nodePipe.port), nodePipe.procs));
  }
  /** Per proxy at RATE/s: CPU µs per request, the memory after the run and its peaks (MiB). */
  const atRate: Record<string, { cpu: number[]; rss: string[]; peak: number[]; hwm: number[] }> =
    {};
  const warm = async (port: number): Promise<void> => {
    if (RATE_WARMUP > 0) await fixedRate(url(port), RATE_WARMUP);
  };
  const fixedOn = async (name: string, port: number, procs: ChildProcess[]): Promise<void> => {
    await warm(port);
    const before = procs.map((p) => cpuSeconds(pidOf(p)));
    // The resident size each second of the run: its peak, beside the one at the end; and the
    // kernel's own peak (VmHWM) from the run's start, which a second's sample can miss: a
    // compile of V8's at the load's start (bench/RESULTS.md, 2026-12-07, midday). VmHWM agreed
    // with a sample every 20 ms within 0.1 MiB in eight sidecars.
    for (const p of procs) resetPeakRss(pidOf(p));
    const peak = procs.map(() => 0);
    const sample = setInterval(() => {
      procs.forEach((p, i) => (peak[i] = Math.max(peak[i] ?? 0, statusMiB(pidOf(p), 'VmRSS'))));
    }, 1000);
    latency[name] = await fixedRate(url(port));
    clearInterval(sample);
    atRate[name] = {
      cpu: procs.map((p, i) =>
        Math.round(((cpuSeconds(pidOf(p)) - (before[i] as number)) / (RATE * DURATION)) * 1e6),
      ),
      rss: procs.map((p) => rssMiB(pidOf(p))),
      peak,
      hwm: procs.map((p) => statusMiB(pidOf(p), 'VmHWM')),
    };
  };
  if (ONLY.has('direct')) {
    await warm(backend.port);
    latency.direct = await fixedRate(url(backend.port));
  }
  if (mooring !== null) await fixedOn('mooring', mooring.port, mooring.procs);
  if (mooringRules !== null) await fixedOn('mooring-rules', mooringRules.port, mooringRules.procs);
  if (nginxPair !== null) await fixedOn('nginx', nginxPair.port, nginxPair.procs);
  if (nodePipe !== null) await fixedOn('node-pipe', nodePipe.port, nodePipe.procs);

  rows.push(
    `### HTTP/1.1, 1 KB answers, keep-alive, wrk -t1 -c${CONNECTIONS} -d${DURATION}s (${ROUNDS} round(s))`,
    '',
  );
  rows.push(
    '| setup | requests/s | p50 ms | p99 ms | errors | CPU µs/request per proxy (A, B) | RSS MiB (own) (A, B) |',
  );
  rows.push('|---|---|---|---|---|---|---|');
  for (const [name, list] of Object.entries(results)) {
    for (const m of list) {
      rows.push(
        `| ${name} | ${m.rps} | ${m.p50ms} | ${m.p99ms} | ${m.errors} | ${name === 'direct' ? '-' : m.cpuUsPerRequest.join(', ')} | ${name === 'direct' ? '-' : m.rssMiB.join(', ')} |`,
      );
    }
  }
  const best = (name: string): number => Math.max(...(results[name] ?? []).map((m) => m.rps));
  if (results.mooring?.length && results['mooring-rules']?.length) {
    rows.push(
      '',
      `Mooring pair with traffic rules / without, max throughput: ${(best('mooring-rules') / best('mooring')).toFixed(2)}`,
    );
  }
  if (results.mooring?.length && results.nginx?.length) {
    rows.push(
      '',
      `Mooring pair / nginx pair, max throughput: ${(best('mooring') / best('nginx')).toFixed(2)}`,
    );
  }
  if (results.mooring?.length && results.direct?.length) {
    rows.push(`Mooring pair / direct: ${(best('mooring') / best('direct')).toFixed(2)}`);
  }
  rows.push(
    '',
    `### Latency at a fixed ${RATE} requests/s (vegeta, keep-alive, ${DURATION}s${RATE_WARMUP > 0 ? ` after ${RATE_WARMUP}s of the same, not measured` : ''})`,
    '',
  );
  rows.push(
    '| setup | rate | p50 ms | p99 ms | errors | added p50 ms | added p99 ms | CPU µs/request per proxy (A, B) | RSS MiB (own) after (A, B) | RSS MiB peak, each second (A, B) | RSS MiB peak, VmHWM (A, B) |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
  );
  const d = latency.direct;
  for (const [name, l] of Object.entries(latency)) {
    if (l === null) {
      rows.push(`| ${name} | (vegeta missing: make bench-tools) | | | | | | | | | |`);
      continue;
    }
    const added = (x: number, y: number | undefined): string =>
      y === undefined || name === 'direct' ? '-' : (x - y).toFixed(2);
    rows.push(
      `| ${name} | ${l.rate} | ${l.p50ms} | ${l.p99ms} | ${l.errors} | ${added(l.p50ms, d?.p50ms)} | ${added(l.p99ms, d?.p99ms)} | ${atRate[name]?.cpu.join(', ') ?? '-'} | ${atRate[name]?.rss.join(', ') ?? '-'} | ${atRate[name]?.peak.join(', ') ?? '-'} | ${atRate[name]?.hwm.join(', ') ?? '-'} |`,
    );
  }
  await stopAll([
    ...(mooring?.procs ?? []),
    ...(mooringRules?.procs ?? []),
    ...(nginxPair?.procs ?? []),
    ...(nodePipe?.procs ?? []),
  ]);

  if (TCP_MIB > 0) {
    let received = 0;
    const sink = net.createServer({ allowHalfOpen: true }, (s) => {
      s.on('data', (d: Buffer) => (received += d.length));
      s.on('end', () => s.end());
    });
    await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
    const sinkPort = (sink.address() as net.AddressInfo).port;
    rows.push(
      '',
      `### ${TCP_MIB} MiB of opaque TCP through the pair (mTLS between the proxies)`,
      '',
    );
    rows.push('| setup | seconds | CPU s (A, B) | CPU s total |', '|---|---|---|---|');
    for (const name of ['mooring', 'nginx']) {
      if (!ONLY.has(name)) continue;
      const pair =
        name === 'mooring'
          ? await startMooringPair(sinkPort, 'tcp')
          : await startNginxTcpPair(sinkPort);
      received = 0;
      const before = pair.procs.map((p) => cpuSeconds(pidOf(p)));
      const seconds = await transfer(pair.port, TCP_MIB, () => received);
      const cpu = pair.procs.map((p, i) => cpuSeconds(pidOf(p)) - (before[i] as number));
      rows.push(
        `| ${name} | ${seconds.toFixed(2)} | ${cpu.map((c) => c.toFixed(2)).join(', ')} | ${cpu.reduce((a, b) => a + b, 0).toFixed(2)} |`,
      );
      await stopAll(pair.procs);
    }
    sink.close();
  }
  process.stdout.write(`${rows.join('\n')}\n`);
  process.exit(0);
}

void main().catch((err: Error) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  process.exit(1);
});

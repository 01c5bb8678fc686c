// One sidecar in a process of its own, for bench/proxy.ts: the real Sidecar of `mooring agent`,
// with its original destination fixed by the bench (the same for every connection, as an
// iptables redirect to one port gives) instead of read from iptables, so that it can run next
// to nginx on loopback without root. Reads its setup as JSON from argv[2]; prints its ports.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Session } from 'node:inspector';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';
import {
  MESH_API_VERSION,
  applyMeshMessage,
  type MeshMessage,
  type MeshState,
} from '../src/api/mesh';
import {
  loadDropPages,
  loadHeapFreeBytes,
  loadMemoryTrim,
} from '../src/agent/proxy/l4/original-dst';
import {
  dropColdPagesLater,
  processTrimmer,
  TRIM_INTERVAL_MS,
} from '../src/agent/proxy/memory-trim';
import { IstioMetrics } from '../src/agent/proxy/metrics';
import { Sidecar } from '../src/agent/proxy/sidecar';
import { applyProxyBufferPool, applyProxyV8Flags } from '../src/agent/proxy/v8-flags';

interface Setup {
  /** Where every redirected connection "was sent". */
  originalDestination: { address: string; port: number };
  /** A MeshMessage snapshot, as JSON. */
  meshFile: string;
  credentials: { chainPem: string; keyPem: string; roots: string[]; spiffeId: string };
  outboundPort?: number;
  inboundPort?: number;
}

// As `mooring agent` does; MOORING_BENCH_V8_FLAGS (space-separated, may be empty) replaces them.
const v8Flags = process.env.MOORING_BENCH_V8_FLAGS;
applyProxyV8Flags(v8Flags === undefined ? undefined : v8Flags.split(' ').filter(Boolean));
// As `mooring agent` does; MOORING_BENCH_BUFFER_POOL (bytes) replaces its size, to compare.
const pool = process.env.MOORING_BENCH_BUFFER_POOL;
if (pool !== undefined && !(Number(pool) > 0)) {
  throw new Error(`MOORING_BENCH_BUFFER_POOL=${pool}: a number of bytes above 0`);
}
applyProxyBufferPool(pool === undefined ? undefined : Number(pool));
const setup = JSON.parse(process.argv[2] ?? '{}') as Setup;
const snapshot = JSON.parse(readFileSync(setup.meshFile, 'utf8')) as MeshMessage;
if (snapshot.apiVersion !== MESH_API_VERSION) throw new Error('not a mesh snapshot');
const state = applyMeshMessage(null, snapshot) as MeshState;
const dst = { ...setup.originalDestination, family: 4 as const };
const metrics = new IstioMetrics();
const quiet = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: (o: object, m: string) => process.stderr.write(`${m} ${JSON.stringify(o)}\n`),
};
const sidecar = new Sidecar(
  { log: quiet, originalDestination: () => dst, random: Math.random, nowMs: Date.now, metrics },
  {
    outboundPort: setup.outboundPort ?? 0,
    inboundPort: setup.inboundPort ?? 0,
    listenHost: '127.0.0.1',
    connectTimeoutMs: 10_000,
    handshakeTimeoutMs: 10_000,
    ownPorts: [],
  },
);
sidecar.setCredentials(setup.credentials, new Date());
sidecar.setMesh(state);
// As `mooring agent` does: the pages of the binary only the start used are dropped 10 s after
// (MOORING_BENCH_NO_DROP=1: not, to compare). (Compiled into .cache/bench/bench: the addon is
// the repository's.)
const addon = join(
  __dirname,
  '..',
  '..',
  '..',
  'native/original-dst/build/Release/original_dst.node',
);
const dropPages = loadDropPages(addon);
if (dropPages !== null && process.env.MOORING_BENCH_NO_DROP === undefined) {
  dropColdPagesLater(
    dropPages,
    () => readFileSync('/proc/self/smaps', 'utf8'),
    (r) => process.stderr.write(`pid ${process.pid} cold pages: ${JSON.stringify(r)}\n`),
  );
}
// As `mooring agent` does: freed C heap pages given back when the resident size or the free C
// heap grew (MOORING_BENCH_NO_TRIM=1: not, to compare; MOORING_BENCH_TRIM_RSS_ONLY=1: on growth
// of the resident size alone, as before 2026-12-07); its counts printed at exit.
const trimmer =
  process.env.MOORING_BENCH_NO_TRIM === undefined
    ? processTrimmer(
        loadMemoryTrim(addon),
        process.env.MOORING_BENCH_TRIM_RSS_ONLY === undefined ? loadHeapFreeBytes(addon) : null,
      )
    : null;
if (trimmer !== null) setInterval(() => trimmer.check(), TRIM_INTERVAL_MS).unref();
void sidecar.start().then((ports) => {
  process.stdout.write(
    `${JSON.stringify({ outbound: ports.outbound.port, inbound: ports.inbound.port })}\n`,
  );
});
// MOORING_BENCH_PAUSES=1: what holds the event loop (GC pauses by kind, the loop's delay),
// printed on stderr at exit, to tell where the tail latency comes from.
const pauses = process.env.MOORING_BENCH_PAUSES === undefined ? null : startPauseWatch();
// MOORING_BENCH_ALLOC=dir: a sampling profile of every allocation (kept or collected), written
// there at exit as <pid>.heapprofile (open it in Chrome's DevTools, or sum it by function).
const allocations = process.env.MOORING_BENCH_ALLOC === undefined ? null : startAllocationProfile();
process.on('SIGTERM', () => {
  pauses?.();
  if (trimmer !== null) {
    process.stderr.write(`pid ${process.pid} C heap trims: ${JSON.stringify(trimmer.stats())}\n`);
  }
  void (async () => {
    await (
      await allocations
    )?.();
    await sidecar.close();
    process.exit(0);
  })();
});

async function startAllocationProfile(): Promise<() => Promise<void>> {
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object): Promise<unknown> =>
    new Promise((resolve, reject) =>
      session.post(method, params, (err, res) => (err ? reject(err) : resolve(res))),
    );
  await post('HeapProfiler.enable');
  await post('HeapProfiler.startSampling', {
    samplingInterval: 4096,
    includeObjectsCollectedByMajorGC: true,
    includeObjectsCollectedByMinorGC: true,
  });
  return async () => {
    const { profile } = (await post('HeapProfiler.stopSampling')) as { profile: unknown };
    const file = `${process.env.MOORING_BENCH_ALLOC}/${process.pid}.heapprofile`;
    writeFileSync(file, JSON.stringify(profile));
    // The requests it carried, to divide by: the sum of its istio_requests_total series.
    let requests = 0;
    for (const line of metrics.render().split('\n')) {
      if (line.startsWith('istio_requests_total{')) requests += Number(line.split(' ').pop());
    }
    writeFileSync(`${file}.requests`, `${requests}\n`);
  };
}

function startPauseWatch(): () => void {
  const gc = new Map<number, { n: number; total: number; max: number; over1ms: number }>();
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as unknown as { detail?: { kind?: number } }).detail?.kind ?? 0;
      const s = gc.get(kind) ?? { n: 0, total: 0, max: 0, over1ms: 0 };
      s.n++;
      s.total += e.duration;
      s.max = Math.max(s.max, e.duration);
      if (e.duration > 1) s.over1ms++;
      gc.set(kind, s);
    }
  });
  observer.observe({ entryTypes: ['gc'] });
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  return () => {
    const ms = (ns: number): string => (ns / 1e6).toFixed(2);
    const kinds: Record<number, string> = {
      1: 'scavenge',
      2: 'mark-compact',
      4: 'incremental',
      8: 'weak-cb',
      16: 'minor-mc',
    };
    for (const [kind, s] of gc) {
      process.stderr.write(
        `pid ${process.pid} gc ${kinds[kind] ?? kind}: ${s.n} pauses, total ${s.total.toFixed(1)} ms, max ${s.max.toFixed(2)} ms, ${s.over1ms} over 1 ms\n`,
      );
    }
    process.stderr.write(
      `pid ${process.pid} loop delay: p50 ${ms(loop.percentile(50))} p99 ${ms(loop.percentile(99))} p99.9 ${ms(loop.percentile(99.9))} max ${ms(loop.max)} ms\n`,
    );
  };
}
// The bench reads the metrics once at the end (their rendering is part of the real cost).
process.on('SIGUSR2', () => {
  const m = process.memoryUsage();
  const mib = (n: number): string => (n / 1048576).toFixed(1);
  process.stderr.write(
    `memory rss=${mib(m.rss)} heapTotal=${mib(m.heapTotal)} heapUsed=${mib(m.heapUsed)} external=${mib(m.external)} arrayBuffers=${mib(m.arrayBuffers)} metrics-bytes=${metrics.render().length}\n`,
  );
});

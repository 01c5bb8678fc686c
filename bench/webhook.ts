// Benchmark of a running `mooring serve` (spawned from dist/): admission reviews of an 8 KB Pod
// over HTTPS with keep-alive, the CA API, idle memory and time to ready.
//
//   make build && npx tsc -p bench/tsconfig.json && node .cache/bench/bench/webhook.js
//   options: --duration SECONDS (default 10)  --connections N (default 32)  --json
//            --workers N|auto (serve's --workers, default auto)  --inject-threads N|auto
//            (serve's --inject-threads, default auto)  --warmup SECONDS (unmeasured load before
//            the measured runs, default 3)  --mooring-dir DIR (a build of Mooring to run instead of
//            this checkout, e.g. an older commit's worktree)  --node PATH (the node binary that
//            runs it; default this one), e.g. --mooring-dir /tmp/n20 --node /usr/bin/node
//
// Max throughput is measured with wrk (C, light on the shared 2 cores) and autocannon; fixed
// rates with an evenly paced open-loop Node client (runPaced) and with autocannon's overallRate
// (which sends each second's requests in one burst). All keep connections alive. The last column
// is the server's own decision time, from mooring_injection_duration_seconds.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { createHistogram } from 'node:perf_hooks';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { processTree } from './proc';
import { luaPost, runWrkOnce } from './wrk';

const ROOT = process.cwd();
const FIXTURE = join(ROOT, 'test', 'fixtures', 'admission', 'pod-create-8k.json');

interface Options {
  duration: number;
  connections: number;
  json: boolean;
  workers: string;
  injectThreads: string;
  warmup: number;
  /** The checkout whose bin/mooring.js (and dist/) is run. */
  mooringDir: string;
  /** The node binary that runs it. */
  node: string;
}

function parseArgs(argv: string[]): Options {
  const options: Options = {
    duration: 10,
    connections: 32,
    json: false,
    workers: 'auto',
    injectThreads: 'auto',
    warmup: 3,
    mooringDir: ROOT,
    node: process.execPath,
  };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--duration') options.duration = Number(argv[++i]);
    else if (arg === '--connections') options.connections = Number(argv[++i]);
    else if (arg === '--json') options.json = true;
    else if (arg === '--workers') options.workers = argv[++i] ?? 'auto';
    else if (arg === '--inject-threads') options.injectThreads = argv[++i] ?? 'auto';
    else if (arg === '--warmup') options.warmup = Number(argv[++i]);
    else if (arg === '--mooring-dir') options.mooringDir = resolve(argv[++i] ?? ROOT);
    else if (arg === '--node') options.node = argv[++i] ?? process.execPath;
  }
  return options;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// --- the server under test ------------------------------------------------------------------

interface Server {
  readonly child: ChildProcess;
  readonly webhookPort: number;
  readonly adminPort: number;
}

/** A port nobody listens on right now. */
function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolvePort(port));
    });
  });
}

async function spawnServe(dataDir: string, logFile: string, options: Options): Promise<Server> {
  const webhookPort = await freePort();
  const adminPort = await freePort();
  const log = openSync(logFile, 'a');
  const child = spawn(
    options.node,
    [
      join(options.mooringDir, 'bin', 'mooring.js'),
      'serve',
      '--workers',
      options.workers,
      '--inject-threads',
      options.injectThreads,
      '--data-dir',
      dataDir,
      '--listen',
      `127.0.0.1:${webhookPort}`,
      '--admin-listen',
      `127.0.0.1:${adminPort}`,
    ],
    { stdio: ['ignore', 'ignore', log], cwd: options.mooringDir },
  );
  return { child, webhookPort, adminPort };
}

function getStatus(port: number, path: string): Promise<number> {
  return new Promise((resolvePromise) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, timeout: 500 }, (res) => {
      res.resume();
      resolvePromise(res.statusCode ?? 0);
    });
    req.on('error', () => resolvePromise(0));
    req.on('timeout', () => {
      req.destroy();
      resolvePromise(0);
    });
    req.end();
  });
}

/** Milliseconds from `since` until /readyz answers 200. */
async function waitReady(server: Server, since: bigint, timeoutMs = 30_000): Promise<number> {
  for (;;) {
    if ((await getStatus(server.adminPort, '/readyz')) === 200)
      return Number(process.hrtime.bigint() - since) / 1e6;
    if (Number(process.hrtime.bigint() - since) / 1e6 > timeoutMs)
      throw new Error('mooring serve did not get ready');
    await sleep(5);
  }
}

async function stop(server: Server): Promise<number | null> {
  const exited = new Promise<number | null>((r) => server.child.once('exit', (code) => r(code)));
  server.child.kill('SIGTERM');
  return exited;
}

/**
 * Memory of the process tree in MiB: RSS summed (pages shared between the processes, such as
 * Node's own code, counted in each) and PSS summed (shared pages divided among their users).
 */
function memoryMiB(pid: number): { rss: number; pss: number; processes: number } {
  let rss = 0;
  let pss = 0;
  const pids = processTree(pid);
  for (const p of pids) {
    const status = readFileSync(`/proc/${p}/status`, 'utf8');
    rss += Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? NaN);
    const rollup = readFileSync(`/proc/${p}/smaps_rollup`, 'utf8');
    pss += Number(/^Pss:\s+(\d+) kB/m.exec(rollup)?.[1] ?? NaN);
  }
  const mib = (kb: number): number => Math.round((kb / 1024) * 10) / 10;
  return { rss: mib(rss), pss: mib(pss), processes: pids.length };
}

function getText(port: number, path: string): Promise<string> {
  return new Promise((resolveText, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolveText(Buffer.concat(chunks).toString('utf8')));
    });
    req.on('error', reject);
    req.end();
  });
}

/** Cumulative bucket counts of mooring_injection_duration_seconds, by upper bound. */
async function injectionBuckets(adminPort: number): Promise<Map<number, number>> {
  const text = await getText(adminPort, '/metrics');
  const buckets = new Map<number, number>();
  for (const m of text.matchAll(
    /^mooring_injection_duration_seconds_bucket\{le="([^"]+)"\} (\d+)$/gm,
  )) {
    buckets.set(m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2]));
  }
  return buckets;
}

/** Server-side p50/p99 (bucket upper bounds, ms) of the reviews between two scrapes. */
function serverQuantiles(
  before: Map<number, number>,
  after: Map<number, number>,
): { p50: number; p99: number } {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0);
  const at = (q: number): number => {
    for (const le of bounds) {
      if ((after.get(le) ?? 0) - (before.get(le) ?? 0) >= q * total) return le * 1000;
    }
    return NaN;
  };
  return { p50: at(0.5), p99: at(0.99) };
}

// --- load generators ------------------------------------------------------------------------

interface LoadResult {
  readonly name: string;
  readonly rps: number;
  readonly p50ms: number;
  readonly p99ms: number;
  readonly errors: number;
  /** The server's own decision time (mooring_injection_duration_seconds), bucket bounds. */
  server?: { p50: number; p99: number };
}

/** wrk at full speed; latency percentiles from --latency. */
function runWrk(name: string, url: string, luaScript: string, options: Options): LoadResult {
  return { name, ...runWrkOnce(url, { ...options, script: luaScript }) };
}

const VEGETA = join(ROOT, '.cache', 'bin', 'vegeta');

/**
 * vegeta (Go, `make bench-tools`) at a constant rate, open loop: requests leave on schedule
 * whether or not earlier ones have been answered, so a slow answer cannot hide the ones queued
 * behind it. Light on the shared CPU, unlike a Node client; exact percentiles.
 */
function runVegeta(
  name: string,
  url: string,
  bodyFile: string,
  rate: number,
  caFile: string,
  options: Options,
  dir: string,
): LoadResult {
  const targets = join(dir, 'vegeta-targets.txt');
  writeFileSync(targets, `POST ${url}\nContent-Type: application/json\n@${bodyFile}\n`);
  const results = join(dir, 'vegeta.bin');
  execFileSync(
    VEGETA,
    [
      'attack',
      `-rate=${rate}/s`,
      `-duration=${options.duration}s`,
      `-targets=${targets}`,
      `-root-certs=${caFile}`,
      '-max-connections=64',
      '-workers=16',
      `-output=${results}`,
    ],
    { stdio: 'ignore' },
  );
  const report = JSON.parse(
    execFileSync(VEGETA, ['report', '-type=json', results], { encoding: 'utf8' }),
  ) as {
    throughput: number;
    latencies: { '50th': number; '99th': number };
    success: number;
    requests: number;
  };
  return {
    name,
    rps: Math.round(report.throughput),
    p50ms: Math.round(report.latencies['50th'] / 1e4) / 100,
    p99ms: Math.round(report.latencies['99th'] / 1e4) / 100,
    errors: Math.round(report.requests * (1 - report.success)),
  };
}

interface AutocannonResult {
  requests: { average: number };
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}
type Autocannon = (opts: Record<string, unknown>) => Promise<AutocannonResult>;

async function runAutocannon(
  name: string,
  url: string,
  body: string,
  rate: number | null,
  ca: string,
  options: Options,
): Promise<LoadResult> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const autocannon = require('autocannon') as Autocannon;
  const result = await autocannon({
    url,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    connections: rate === null ? options.connections : Math.min(options.connections, 16),
    duration: options.duration,
    ...(rate === null ? {} : { overallRate: rate }),
    tlsOptions: { ca },
  });
  return {
    name,
    rps: Math.round(result.requests.average),
    p50ms: result.latency.p50,
    p99ms: result.latency.p99,
    errors: result.non2xx + result.errors + result.timeouts,
  };
}

/**
 * An open-loop, evenly paced load at `rate` requests/s over `connections` kept-alive TLS
 * connections (autocannon's overallRate sends each second's requests in a burst at the start of
 * the second, which measures queueing behind the burst, not the latency at that rate). Latency
 * is measured from the moment each request was due, so a stall is not hidden (no coordinated
 * omission).
 */
async function runPaced(
  name: string,
  url: string,
  body: string,
  rate: number,
  ca: string,
  options: Options,
): Promise<LoadResult> {
  const target = new URL(url);
  const agent = new HttpsAgent({ keepAlive: true, maxSockets: 16, ca });
  const histogram = createHistogram();
  const total = rate * options.duration;
  let sent = 0;
  let done = 0;
  let errors = 0;
  const start = performance.now();
  await new Promise<void>((resolveRun) => {
    const fire = (dueAt: number): void => {
      const req = httpsRequest(
        {
          host: target.hostname,
          port: target.port,
          path: target.pathname,
          method: 'POST',
          agent,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(body),
          },
        },
        (res) => {
          if (res.statusCode !== 200) errors += 1;
          res.resume();
          res.on('end', () => {
            histogram.record(Math.max(1, Math.round((performance.now() - dueAt) * 1e6)));
            done += 1;
            if (done === total) resolveRun();
          });
        },
      );
      req.on('error', () => {
        errors += 1;
        done += 1;
        if (done === total) resolveRun();
      });
      req.end(body);
    };
    const timer = setInterval(() => {
      const elapsed = performance.now() - start;
      const due = Math.min(total, Math.floor((elapsed / 1000) * rate));
      for (; sent < due; sent += 1) fire(start + (sent * 1000) / rate);
      if (sent === total) clearInterval(timer);
    }, 1);
  });
  const seconds = (performance.now() - start) / 1000;
  agent.destroy();
  return {
    name,
    rps: Math.round(total / seconds),
    p50ms: histogram.percentile(50) / 1e6,
    p99ms: histogram.percentile(99) / 1e6,
    errors,
  };
}

function csrFor(kind: 'ec' | 'rsa', dir: string): string {
  const keyFile = join(dir, `${kind}.key`);
  const { privateKey } =
    kind === 'ec'
      ? generateKeyPairSync('ec', { namedCurve: 'prime256v1' })
      : generateKeyPairSync('rsa', { modulusLength: 2048 });
  writeFileSync(keyFile, privateKey.export({ format: 'pem', type: 'pkcs8' }));
  return execFileSync('openssl', ['req', '-new', '-key', keyFile, '-subj', '/', '-batch'], {
    encoding: 'utf8',
  });
}

// --- main -------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const options = parseArgs(process.argv.slice(2));
  if (!existsSync(join(options.mooringDir, 'dist', 'cli', 'main.js')))
    throw new Error(`run \`make build\` in ${options.mooringDir} first (dist/ is missing)`);
  const work = mkdtempSync(join(tmpdir(), 'mooring-bench-'));
  const dataDir = join(work, 'store');
  const logFile = join(work, 'serve.log');
  const results: Record<string, unknown> = { options };

  try {
    // 1. A store to start from.
    const first = await spawnServe(dataDir, logFile, options);
    const firstStart = process.hrtime.bigint();
    results.firstStartMs = Math.round(await waitReady(first, firstStart));
    await stop(first);

    // 2. Time to ready with an existing store (median of 5).
    const readyTimes: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      const started = process.hrtime.bigint();
      const s = await spawnServe(dataDir, logFile, options);
      readyTimes.push(await waitReady(s, started));
      await stop(s);
    }
    readyTimes.sort((a, b) => a - b);
    results.readyMs = { median: Math.round(readyTimes[2] ?? NaN), all: readyTimes.map(Math.round) };

    // 3. The server under load.
    const server = await spawnServe(dataDir, logFile, options);
    await waitReady(server, process.hrtime.bigint());
    const pid = server.child.pid ?? 0;
    await sleep(3000);
    results.idleMemory = memoryMiB(pid);

    const ca = readFileSync(join(dataDir, 'root-cert.pem'), 'utf8');
    const body = JSON.stringify(JSON.parse(readFileSync(FIXTURE, 'utf8')));
    const bodyFile = join(work, 'review.json');
    writeFileSync(bodyFile, body);
    const injectUrl = `https://127.0.0.1:${server.webhookPort}/inject`;
    const injectLua = luaPost(join(work, 'inject.lua'), bodyFile, {
      'Content-Type': 'application/json',
    });

    const load: LoadResult[] = [];
    // Unmeasured load first: a long-running server is measured, not its first seconds.
    if (options.warmup > 0)
      runWrk('warm-up', injectUrl, injectLua, { ...options, duration: options.warmup });
    const measured = async (run: () => Promise<LoadResult> | LoadResult): Promise<void> => {
      const before = await injectionBuckets(server.adminPort);
      const result = await run();
      result.server = serverQuantiles(before, await injectionBuckets(server.adminPort));
      load.push(result);
    };
    await measured(() => runWrk('inject max (wrk)', injectUrl, injectLua, options));
    await measured(() =>
      runAutocannon('inject max (autocannon)', injectUrl, body, null, ca, options),
    );
    if (existsSync(VEGETA)) {
      const caFile = join(dataDir, 'root-cert.pem');
      for (const rate of [500, 1000, 2000]) {
        await measured(() =>
          runVegeta(
            `inject at ${rate}/s (vegeta)`,
            injectUrl,
            bodyFile,
            rate,
            caFile,
            options,
            work,
          ),
        );
      }
    } else {
      process.stderr.write('no .cache/bin/vegeta (make bench-tools): fixed rates without it\n');
    }
    for (const rate of [500, 1000, 2000]) {
      await measured(() =>
        runPaced(`inject at ${rate}/s (paced, node client)`, injectUrl, body, rate, ca, options),
      );
    }
    for (const rate of [500, 1000, 2000]) {
      await measured(() =>
        runAutocannon(
          `inject at ${rate}/s (autocannon, bursts)`,
          injectUrl,
          body,
          rate,
          ca,
          options,
        ),
      );
    }
    results.reviewBytes = body.length;
    results.memoryAfterLoad = memoryMiB(pid);

    // 4. The CA API (admin route), one CSR per key type, same CSR each time.
    const adminToken = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
    const adminUrl = `https://127.0.0.1:${server.webhookPort}/v1/admin/certificates`;
    for (const [label, kind] of [
      ['ECDSA P-256', 'ec'],
      ['RSA 2048', 'rsa'],
    ] as const) {
      const csrBody = join(work, `${kind}.json`);
      writeFileSync(
        csrBody,
        JSON.stringify({
          csr: csrFor(kind, work),
          spiffeId: 'spiffe://cluster.local/ns/bench/sa/bench',
        }),
      );
      const lua = luaPost(join(work, `${kind}.lua`), csrBody, {
        'Content-Type': 'application/json',
        Authorization: `Bearer ${adminToken}`,
      });
      load.push(
        runWrk(
          `CA issue ${label} (wrk, ${Math.min(options.connections, 10)} conns)`,
          adminUrl,
          lua,
          { ...options, connections: Math.min(options.connections, 10) },
        ),
      );
    }
    results.load = load;
    results.memoryAfterCa = memoryMiB(pid);
    results.exitCode = await stop(server);
  } catch (err) {
    process.stderr.write(
      `server log (last lines):\n${readFileSync(logFile, 'utf8').split('\n').slice(-10).join('\n')}\n`,
    );
    throw err;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }

  if (options.json) {
    process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    return;
  }
  const load = results.load as LoadResult[];
  const lines = [
    `review body: ${String(results.reviewBytes)} bytes; ${options.duration}s per run; ${options.connections} connections (max), 16 (fixed rates)`,
    `time to /readyz 200, existing store: median ${(results.readyMs as { median: number }).median} ms (runs: ${(results.readyMs as { all: number[] }).all.join(', ')}); first start (new CA): ${String(results.firstStartMs)} ms`,
    `server: ${options.mooringDir} on node ${execFileSync(options.node, ['--version'], { encoding: 'utf8' }).trim()}`,
    `workers: ${options.workers}; inject threads: ${options.injectThreads}; memory of the ${(results.idleMemory as { processes: number }).processes} process(es), RSS summed / PSS summed: ${[
      ['idle', results.idleMemory],
      ['after the review load', results.memoryAfterLoad],
      ['after the CA load', results.memoryAfterCa],
    ]
      .map(([what, m]) => {
        const { rss, pss } = m as { rss: number; pss: number };
        return `${String(what)} ${rss} / ${pss} MiB`;
      })
      .join('; ')}`,
    `exit code after SIGTERM: ${String(results.exitCode)}`,
    '',
    '| run | requests/s | p50 ms | p99 ms | errors | server p50 / p99 ms (decision time, bucket bound) |',
    '|---|---:|---:|---:|---:|---|',
    ...load.map((r) => {
      const server = r.server === undefined ? '' : `${r.server.p50} / ${r.server.p99}`;
      return `| ${r.name} | ${r.rps} | ${r.p50ms.toFixed(2)} | ${r.p99ms.toFixed(2)} | ${r.errors} | ${server} |`;
    }),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});

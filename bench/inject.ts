// Benchmark of the injector core, in process, on one core (Node runs it on one thread): inject()
// for a typical Deployment Pod and for the 1,500-variable Pod, and mooring inject's manifest path
// for a Deployment. No HTTP, no logging: see bench/webhook.ts for the server.
//
//   npx tsc -p bench/tsconfig.json; taskset -c 0 node .cache/bench/bench/inject.js
//   options: --seconds N (per case, default 3)  --json
//
// Calls per second are given per second of wall time and per second of the process's own CPU
// time: on a shared machine the second is the cost on one core; the percentiles are wall time.
//
// Goals (issue 2): at least 10,000 typical Pods per second; under 2 ms for the large one.

import { cpus, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { stringify } from 'yaml';
import { validateConfig } from '../src/config/validate';
import { inject, injectManifests, type InjectionContext, type Pod } from '../src/injector';
import { deployment, largeEnvPod, typicalPod } from '../test/fixtures/pods';

interface Options {
  seconds: number;
  json: boolean;
}

function parseArgs(argv: string[]): Options {
  const options: Options = { seconds: 3, json: false };
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--seconds') options.seconds = Number(argv[++i]);
    else if (argv[i] === '--json') options.json = true;
  }
  return options;
}

interface Result {
  readonly name: string;
  readonly inputBytes: number;
  readonly patchBytes: number;
  /** Calls per second of wall time. */
  readonly opsPerSecond: number;
  /** Calls per second of this process's CPU time (user + system): the cost on one core, whatever
   * else the machine runs. */
  readonly opsPerCpuSecond: number;
  readonly meanMs: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

const percentile = (sorted: number[], p: number): number =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;

/** Runs `fn` for `seconds` after a warm-up; every call is timed. */
function measure(
  name: string,
  seconds: number,
  inputBytes: number,
  patchBytes: number,
  fn: () => void,
): Result {
  const warmUntil = performance.now() + 500;
  while (performance.now() < warmUntil) fn();
  const samples: number[] = [];
  const cpuStart = process.cpuUsage();
  const start = performance.now();
  const end = start + seconds * 1000;
  let now = start;
  while (now < end) {
    fn();
    const after = performance.now();
    samples.push(after - now);
    now = after;
  }
  const elapsed = now - start;
  const cpu = process.cpuUsage(cpuStart);
  const cpuMs = (cpu.user + cpu.system) / 1000;
  samples.sort((a, b) => a - b);
  return {
    name,
    inputBytes,
    patchBytes,
    opsPerSecond: Math.round((samples.length / elapsed) * 1000),
    opsPerCpuSecond: Math.round((samples.length / cpuMs) * 1000),
    meanMs: cpuMs / samples.length,
    p50Ms: percentile(samples, 50),
    p99Ms: percentile(samples, 99),
    maxMs: samples[samples.length - 1] ?? 0,
  };
}

function patchBytes(pod: Pod, ctx: InjectionContext): number {
  const outcome = inject(pod, ctx);
  if (outcome.action !== 'injected') throw new Error(`not injected: ${outcome.reason}`);
  return JSON.stringify(outcome.patch).length;
}

function main(): void {
  const options = parseArgs(process.argv.slice(2));
  const ctx: InjectionContext = { config: validateConfig({}), namespace: 'shop', version: 'bench' };
  const typical = typicalPod();
  const large = largeEnvPod();
  const manifest = stringify(deployment('web', typical));

  const results = [
    measure(
      'inject(): typical Deployment Pod',
      options.seconds,
      JSON.stringify(typical).length,
      patchBytes(typical, ctx),
      () => {
        inject(typical, ctx);
      },
    ),
    measure(
      'inject(): 1,500-variable Pod',
      options.seconds,
      JSON.stringify(large).length,
      patchBytes(large, ctx),
      () => {
        inject(large, ctx);
      },
    ),
    measure(
      'injectManifests(): Deployment YAML (mooring inject)',
      options.seconds,
      manifest.length,
      0,
      () => {
        injectManifests(manifest, { config: ctx.config, version: 'bench' });
      },
    ),
  ];

  if (options.json) {
    process.stdout.write(`${JSON.stringify({ node: process.version, results }, null, 2)}\n`);
    return;
  }
  process.stdout.write(
    `node ${process.version}, one thread, ${options.seconds}s per case, load average ` +
      `${loadavg()[0]?.toFixed(2) ?? '?'} on ${cpus().length} cores\n\n`,
  );
  process.stdout.write(
    '| case | input bytes | patch bytes | calls/s (wall) | calls/CPU-s | CPU ms/call | ' +
      'p50 ms | p99 ms | max ms |\n',
  );
  process.stdout.write('|---|---|---|---|---|---|---|---|---|\n');
  for (const r of results) {
    process.stdout.write(
      `| ${r.name} | ${r.inputBytes} | ${r.patchBytes || '-'} | ${r.opsPerSecond} | ` +
        `${r.opsPerCpuSecond} | ${r.meanMs.toFixed(3)} | ${r.p50Ms.toFixed(3)} | ` +
        `${r.p99Ms.toFixed(3)} | ${r.maxMs.toFixed(3)} |\n`,
    );
  }
  const [typicalResult, largeResult] = results;
  const met = (ok: boolean): string => (ok ? 'met' : 'NOT met');
  process.stdout.write(
    `\ngoal typical >= 10,000/s: ${met((typicalResult?.opsPerCpuSecond ?? 0) >= 10_000)} per ` +
      `CPU-second, ${met((typicalResult?.opsPerSecond ?? 0) >= 10_000)} in wall time; ` +
      `goal large < 2 ms: ${met((largeResult?.meanMs ?? Infinity) < 2)} (CPU mean), ` +
      `${met((largeResult?.p99Ms ?? Infinity) < 2)} (wall p99)\n`,
  );
}

main();

// Benchmark of `mooring agent` next to a `mooring serve` in local mode (both spawned from dist/):
// time to the first certificate, resident memory idle and after many renewals, renewal cost,
// and app-probe / readiness throughput. The agent runs in every Pod, so memory matters most.
//
//   make build && npx tsc -p bench/tsconfig.json && node .cache/bench/bench/agent.js
//   options: --renew-seconds N (default 30, with --ttl 2s)  --duration SECONDS (default 5)  --json

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = process.cwd();
const BIN = join(ROOT, 'bin', 'mooring.js');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function status(url: string): Promise<number> {
  try {
    return (await fetch(url)).status;
  } catch {
    return 0;
  }
}

async function until(url: string, timeoutMs: number): Promise<number> {
  const started = process.hrtime.bigint();
  for (;;) {
    if ((await status(url)) === 200) return Number(process.hrtime.bigint() - started) / 1e6;
    if (Number(process.hrtime.bigint() - started) / 1e6 > timeoutMs)
      throw new Error(`${url} never 200`);
    await sleep(5);
  }
}

function rssMiB(pid: number): number {
  const kb = Number(
    /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN,
  );
  return Math.round((kb / 1024) * 10) / 10;
}

function cpuSeconds(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks
}

async function metric(url: string, name: string): Promise<number> {
  const text = await (await fetch(url)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1] ?? NaN);
}

interface Autocannon {
  (opts: Record<string, unknown>): Promise<{
    requests: { average: number };
    latency: { p50: number; p99: number };
    errors: number;
    non2xx: number;
  }>;
}

async function load(
  url: string,
  duration: number,
): Promise<{ rps: number; p50ms: number; p99ms: number; errors: number }> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const autocannon = require('autocannon') as Autocannon;
  const r = await autocannon({ url, connections: 8, duration });
  return {
    rps: Math.round(r.requests.average),
    p50ms: r.latency.p50,
    p99ms: r.latency.p99,
    errors: r.errors + r.non2xx,
  };
}

async function main(): Promise<void> {
  const renewSeconds = arg('--renew-seconds', 30);
  const duration = arg('--duration', 5);
  const dir = mkdtempSync(join(tmpdir(), 'mooring-bench-agent-'));
  writeFileSync(
    join(dir, 'tokens.json'),
    JSON.stringify({ t: { namespace: 'bench', serviceAccount: 'agent' } }),
    { mode: 0o600 },
  );
  writeFileSync(join(dir, 'token'), 't');
  const [caPort, adminPort, readyPort, agentPort] = await Promise.all([
    freePort(),
    freePort(),
    freePort(),
    freePort(),
  ]);
  const children: ChildProcess[] = [];
  const appPort = await new Promise<number>((resolve) => {
    const s = createServer((c) => c.end());
    s.listen(0, '127.0.0.1', () => resolve((s.address() as AddressInfo).port));
    s.unref();
  });
  try {
    const serve = spawn(
      process.execPath,
      [
        BIN,
        'serve',
        '--data-dir',
        dir,
        '--listen',
        `127.0.0.1:${caPort}`,
        '--admin-listen',
        `127.0.0.1:${adminPort}`,
      ],
      { stdio: 'ignore' },
    );
    children.push(serve);
    await until(`http://127.0.0.1:${adminPort}/readyz`, 30_000);

    const agent = spawn(
      process.execPath,
      [
        BIN,
        'agent',
        '--ca-url',
        `https://127.0.0.1:${caPort}`,
        '--token-file',
        join(dir, 'token'),
        '--root-cert',
        join(dir, 'root-cert.pem'),
        '--out-dir',
        join(dir, 'out'),
        '--ttl',
        '2s',
        '--listen-host',
        '127.0.0.1',
        '--readiness-port',
        String(readyPort),
        '--agent-port',
        String(agentPort),
        '--log-level',
        'warn',
        '--app-probes',
        JSON.stringify({ 'app/livez': { tcpSocket: { port: appPort } } }),
      ],
      { stdio: 'ignore' },
    );
    children.push(agent);
    const pid = agent.pid as number;
    const readyMs = await until(`http://127.0.0.1:${readyPort}/healthz/ready`, 30_000);
    const metricsUrl = `http://127.0.0.1:${agentPort}/metrics`;
    await sleep(1000);
    const rssFirst = rssMiB(pid);
    const cpu0 = cpuSeconds(pid);
    const renewals0 = await metric(metricsUrl, 'mooring_agent_renewals_total');
    await sleep(renewSeconds * 1000);
    const renewals = (await metric(metricsUrl, 'mooring_agent_renewals_total')) - renewals0;
    const cpuPerRenewalMs =
      renewals > 0 ? Math.round(((cpuSeconds(pid) - cpu0) / renewals) * 1000 * 10) / 10 : NaN;
    const rssAfterRenewals = rssMiB(pid);
    const failures = await metric(metricsUrl, 'mooring_agent_renewal_failures_total');
    const probe = await load(`http://127.0.0.1:${agentPort}/app-health/app/livez`, duration);
    const readiness = await load(`http://127.0.0.1:${readyPort}/healthz/ready`, duration);
    const rssAfterLoad = rssMiB(pid);

    const results = {
      startToReadyMs: Math.round(readyMs),
      rssAfterFirstCertMiB: rssFirst,
      renewals,
      renewalFailures: Number.isNaN(failures) ? 0 : failures,
      cpuPerRenewalMs,
      rssAfterRenewalsMiB: rssAfterRenewals,
      appProbeTcp: probe,
      readiness,
      rssAfterLoadMiB: rssAfterLoad,
    };
    if (process.argv.includes('--json')) {
      process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
    } else {
      process.stdout.write(
        [
          `agent start to ready (first certificate, P-256): ${results.startToReadyMs} ms`,
          `RSS after the first certificate: ${rssFirst} MiB; after ${renewals} renewals (--ttl 2s, ${renewSeconds} s): ${rssAfterRenewals} MiB; after the HTTP load: ${rssAfterLoad} MiB`,
          `CPU per renewal (key, CSR, TLS handshake, verify, write): ${cpuPerRenewalMs} ms; failures: ${results.renewalFailures}`,
          `app probe (TCP) via /app-health, 8 connections: ${probe.rps} req/s, p50 ${probe.p50ms} ms, p99 ${probe.p99ms} ms, errors ${probe.errors}`,
          `readiness /healthz/ready, 8 connections: ${readiness.rps} req/s, p50 ${readiness.p50ms} ms, p99 ${readiness.p99ms} ms, errors ${readiness.errors}`,
        ].join('\n') + '\n',
      );
    }
  } finally {
    for (const c of children.reverse()) c.kill('SIGTERM');
  }
}

main().catch((err: Error) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  process.exitCode = 1;
});

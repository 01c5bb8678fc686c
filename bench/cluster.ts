// Scale at rest of cluster mode: one `mooring serve --kubeconfig` (spawned from dist/) against the
// e2e control plane (real kube-apiserver + etcd, test/e2e/harness), with N namespaces (default
// 200): time until every namespace has its mooring-ca-root-cert ConfigMap, memory (RSS) and CPU
// at rest; then a burst of R certificate requests (default 500) from S service accounts (default
// 50, one bound token each) and the apiserver requests it caused, counted twice: by Mooring
// (mooring_kube_api_requests_total) and by the apiserver (apiserver_request_total). The burst is
// run with the TokenReview cache on (the default, 60 s) and off (tokenReviewCacheSeconds: 0).
//
//   make build control-plane && npx tsc -p bench/tsconfig.json && node .cache/bench/bench/cluster.js
//   options: --namespaces N  --requests R  --accounts S  --concurrency C (default 50)
//            --rest SECONDS (CPU window at rest, default 30)  --json

import { generateKeyPairSync } from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import { buildCsr } from '../src/ca/csr-writer';
import { startControlPlane, type ControlPlane } from '../test/e2e/harness/control-plane';
import { createNamespace, kubectl } from '../test/e2e/harness/kube';
import {
  bundleText,
  createIdlePod,
  delay,
  startMooring,
  tokenFor,
  type MooringServer,
} from '../test/e2e/support/mooring';

interface Options {
  namespaces: number;
  requests: number;
  accounts: number;
  concurrency: number;
  restSeconds: number;
  json: boolean;
}

function parseArgs(argv: readonly string[]): Options {
  const o: Options = {
    namespaces: 200,
    requests: 500,
    accounts: 50,
    concurrency: 50,
    restSeconds: 30,
    json: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = (): number => Number(argv[++i]);
    if (arg === '--namespaces') o.namespaces = next();
    else if (arg === '--requests') o.requests = next();
    else if (arg === '--accounts') o.accounts = next();
    else if (arg === '--concurrency') o.concurrency = next();
    else if (arg === '--rest') o.restSeconds = next();
    else if (arg === '--json') o.json = true;
    else throw new Error(`unknown option ${String(arg)}`);
  }
  return o;
}

// --- process measurements (Linux /proc) -----------------------------------------------------------

const CLOCK_TICKS = 100;

function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS; // utime + stime
}

function rssMiB(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 'NaN');
  return kb / 1024;
}

// --- apiserver metrics -------------------------------------------------------------------------------

function apiserverMetrics(cp: ControlPlane): Promise<string> {
  return new Promise((resolve, reject) => {
    https
      .get(
        `${cp.server}/metrics`,
        { ca: cp.caCertPem, headers: { authorization: `Bearer ${cp.adminToken}` } },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (body += c));
          res.on('end', () => resolve(body));
        },
      )
      .on('error', reject);
  });
}

/** Sum of apiserver_request_total by resource (and verb), all codes. */
async function apiserverRequests(cp: ControlPlane): Promise<Map<string, number>> {
  const text = await apiserverMetrics(cp);
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    const m = /^apiserver_request_total\{([^}]*)\} ([0-9.e+]+)$/.exec(line);
    if (m === null) continue;
    const labels = Object.fromEntries(
      [...(m[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]),
    );
    const key = `${labels.verb ?? '?'} ${labels.resource ?? '?'}${labels.subresource ? `/${labels.subresource}` : ''}`;
    out.set(key, (out.get(key) ?? 0) + Number(m[2]));
  }
  return out;
}

function delta(after: Map<string, number>, before: Map<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of after) {
    const d = v - (before.get(k) ?? 0);
    if (d > 0) out[k] = d;
  }
  return out;
}

const total = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);

// --- the burst -------------------------------------------------------------------------------------

interface BurstResult {
  readonly ok: number;
  readonly failed: number;
  readonly seconds: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly tokenReviews: number;
  readonly mooringApiRequests: number;
  readonly apiserverRequests: Record<string, number>;
}

async function burst(
  cp: ControlPlane,
  mooring: MooringServer,
  tokens: readonly string[],
  csrs: readonly string[],
  o: Options,
): Promise<BurstResult> {
  const bundle = bundleText(await mooring.trustBundle());
  const agent = new https.Agent({ keepAlive: true, maxSockets: o.concurrency, ca: bundle });
  const beforeApi = await apiserverRequests(cp);
  const beforeReviews = await mooring.metric('mooring_token_reviews_total', { kind: 'workload' });
  const beforeMooring = await mooring.metric('mooring_kube_api_requests_total');
  const latencies: number[] = [];
  let ok = 0;
  let failed = 0;
  let next = 0;
  const started = performance.now();
  const one = (i: number): Promise<void> =>
    new Promise((resolve) => {
      const body = JSON.stringify({ csr: csrs[i % csrs.length], ttlSeconds: 3600 });
      const t0 = performance.now();
      const req = https.request(
        `${mooring.url}/v1/certificates`,
        {
          method: 'POST',
          agent,
          headers: {
            'content-type': 'application/json',
            authorization: `Bearer ${tokens[i % tokens.length] ?? ''}`,
          },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            latencies.push(performance.now() - t0);
            if (res.statusCode === 200) ok++;
            else failed++;
            resolve();
          });
        },
      );
      req.on('error', () => {
        failed++;
        resolve();
      });
      req.end(body);
    });
  const worker = async (): Promise<void> => {
    while (next < o.requests) await one(next++);
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  const seconds = (performance.now() - started) / 1000;
  agent.destroy();
  await delay(500);
  const afterApi = await apiserverRequests(cp);
  latencies.sort((a, b) => a - b);
  const pct = (p: number): number =>
    Math.round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))] ?? NaN);
  // The metrics scrape itself is not an apiserver request; our own GET /metrics of the apiserver is.
  const api = delta(afterApi, beforeApi);
  delete api['GET ?'];
  return {
    ok,
    failed,
    seconds: Math.round(seconds * 100) / 100,
    p50Ms: pct(0.5),
    p99Ms: pct(0.99),
    tokenReviews:
      (await mooring.metric('mooring_token_reviews_total', { kind: 'workload' })) - beforeReviews,
    mooringApiRequests: (await mooring.metric('mooring_kube_api_requests_total')) - beforeMooring,
    apiserverRequests: api,
  };
}

// --- main ----------------------------------------------------------------------------------------------

/** The defaults (rotation checks every 60 s, tick every 10 s), quiet logs. */
const benchConfig = (
  namespace: string,
  cluster: Record<string, unknown>,
): Record<string, unknown> => ({
  server: { logLevel: 'warn' },
  cluster: { namespace, ...cluster },
});

async function countConfigMaps(cp: ControlPlane): Promise<number> {
  const out = await kubectl(cp, [
    'get',
    'configmaps',
    '-A',
    '--field-selector',
    'metadata.name=mooring-ca-root-cert',
    '-o',
    'name',
  ]);
  return out.split('\n').filter((l) => l.trim() !== '').length;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  // Run from the repository root: the compiled harness lives in .cache/bench, not next to .cache/bin.
  const root = process.cwd();
  process.env.PATH = `${root}/.cache/bin:${process.env.PATH ?? ''}`;
  process.env.MOORING_E2E_BIN ??= `${root}/bin/mooring.js`;
  const log = (msg: string): void => {
    if (!o.json) process.stderr.write(`[bench/cluster] ${msg}\n`);
  };
  const cp = await startControlPlane({ binDir: `${root}/.cache/bin` });
  const servers: MooringServer[] = [];
  try {
    const ns = 'mooring-system';
    await createNamespace(cp, ns);

    // Namespaces first (a cluster that exists), then Mooring: the start distributes to all.
    log(`creating ${o.namespaces} namespaces`);
    const items = Array.from({ length: o.namespaces }, (_, i) => ({
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: `bench-${i}` },
    }));
    await kubectl(
      cp,
      ['apply', '-f', '-'],
      JSON.stringify({ apiVersion: 'v1', kind: 'List', items }),
    );
    const existing = Number(
      (await kubectl(cp, ['get', 'namespaces', '-o', 'name'])).split('\n').filter((l) => l !== '')
        .length,
    );
    const expected = existing - 2; // all but kube-public and kube-node-lease

    const t0 = performance.now();
    const mooring = await startMooring(cp, { namespace: ns, config: benchConfig(ns, {}) });
    servers.push(mooring);
    const readyMs = Math.round(performance.now() - t0);
    while ((await countConfigMaps(cp)) < expected) await delay(200);
    const distributedMs = Math.round(performance.now() - t0);
    log(`ready in ${readyMs} ms; ${expected} ConfigMaps in ${distributedMs} ms`);

    await delay(5000);
    const rssSettled = rssMiB(mooring.pid);
    const cpu0 = cpuSeconds(mooring.pid);
    const api0 = await mooring.metric('mooring_kube_api_requests_total');
    log(`at rest for ${o.restSeconds} s`);
    await delay(o.restSeconds * 1000);
    const restCpuPercent =
      Math.round(((cpuSeconds(mooring.pid) - cpu0) / o.restSeconds) * 10000) / 100;
    const restApiRequests = (await mooring.metric('mooring_kube_api_requests_total')) - api0;
    const rssRest = rssMiB(mooring.pid);

    // Workloads: S service accounts over 5 namespaces, one Pod and one bound token each.
    log(`${o.accounts} service accounts, tokens`);
    const tokens: string[] = [];
    for (let i = 0; i < o.accounts; i++) {
      const appNs = `app-${i % 5}`;
      if (i < 5) await createNamespace(cp, appNs);
      const sa = `sa-${i}`;
      await kubectl(cp, ['create', 'serviceaccount', sa, '-n', appNs]);
      const pod = await createIdlePod(cp, appNs, `${sa}-pod`, sa);
      tokens.push(
        await tokenFor(cp, appNs, sa, {
          audience: 'mooring-ca',
          pod: { name: `${sa}-pod`, uid: pod.uid },
        }),
      );
    }
    const csrs = Array.from({ length: o.accounts }, () =>
      buildCsr(generateKeyPairSync('ec', { namedCurve: 'prime256v1' })),
    );
    await delay(2000);

    log(`burst: ${o.requests} requests, ${o.concurrency} at a time, cache on`);
    const cacheOn = await burst(cp, mooring, tokens, csrs, o);
    const rssAfterBurst = rssMiB(mooring.pid);
    await mooring.stop();

    log('burst again with tokenReviewCacheSeconds: 0');
    const uncached = await startMooring(cp, {
      namespace: ns,
      config: benchConfig(ns, { tokenReviewCacheSeconds: 0 }),
    });
    servers.push(uncached);
    await delay(3000);
    const cacheOff = await burst(cp, uncached, tokens, csrs, o);

    const result = {
      namespaces: expected,
      readyMs,
      configMapsDistributedMs: distributedMs,
      rssMiB: {
        settled: Math.round(rssSettled),
        afterRest: Math.round(rssRest),
        afterBurst: Math.round(rssAfterBurst),
      },
      restCpuPercent,
      restApiRequests,
      restSeconds: o.restSeconds,
      burst: {
        requests: o.requests,
        accounts: o.accounts,
        concurrency: o.concurrency,
        cacheOn,
        cacheOff,
      },
    };
    if (o.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    else {
      process.stdout.write(
        [
          `namespaces with the ConfigMap: ${expected} (ready ${readyMs} ms, all ConfigMaps ${distributedMs} ms after start)`,
          `RSS: ${result.rssMiB.settled} MiB settled, ${result.rssMiB.afterRest} MiB after ${o.restSeconds} s at rest, ${result.rssMiB.afterBurst} MiB after the burst`,
          `CPU at rest: ${restCpuPercent}% of one core; apiserver requests at rest: ${restApiRequests} in ${o.restSeconds} s`,
          `burst, cache on:  ${cacheOn.ok}/${o.requests} ok in ${cacheOn.seconds} s (p50 ${cacheOn.p50Ms} ms, p99 ${cacheOn.p99Ms} ms); TokenReviews ${cacheOn.tokenReviews}; Mooring->apiserver requests ${cacheOn.mooringApiRequests}; apiserver_request_total +${total(cacheOn.apiserverRequests)} ${JSON.stringify(cacheOn.apiserverRequests)}`,
          `burst, cache off: ${cacheOff.ok}/${o.requests} ok in ${cacheOff.seconds} s (p50 ${cacheOff.p50Ms} ms, p99 ${cacheOff.p99Ms} ms); TokenReviews ${cacheOff.tokenReviews}; Mooring->apiserver requests ${cacheOff.mooringApiRequests}; apiserver_request_total +${total(cacheOff.apiserverRequests)} ${JSON.stringify(cacheOff.apiserverRequests)}`,
          '',
        ].join('\n'),
      );
    }
  } finally {
    for (const s of servers) await s.stop();
    await cp.stop();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);

// Traffic management's costs in the proxy (issue 15, "Benchmarks"; bench/RESULTS.md):
//
//   route    route selection (routeRequest: first matching rule, weighted destination) on a host
//            with 1,000 rules, 100 of them with header matches, for requests matching the first,
//            the 500th and the last rule and none; goal < 5 µs per request
//   memory   the heap of a proxy holding a mesh of 1,000 Services (10 endpoints, a 5-rule route
//            table, a DestinationRule with subsets each) compiled into its MeshIndex, against the
//            same mesh without rules
//   authz    the inbound decision of AuthorizationPolicy (decide, the policies compiled once per
//            configuration as the proxy's MeshIndex does) for a workload with ten policies: a
//            request let through, one a DENY refuses, one no ALLOW matches
//
//   node .cache/bench/bench/traffic.js [--seconds 2]

import { execFileSync } from 'node:child_process';
import type { HttpRouteTable, MeshService, MeshState, TrafficPolicy } from '../src/api/mesh';
import type { AuthorizationPolicyRules } from '../src/api/mesh';
import {
  compileAuthorization,
  decide,
  type AuthorizationFacts,
  type CompiledAuthorization,
} from '../src/agent/proxy/core/authorization';
import { MeshIndex } from '../src/agent/proxy/core/mesh-index';
import { routeRequest, type RequestView } from '../src/agent/proxy/core/route';
import { pickEndpoint } from '../src/agent/proxy/core/endpoints';
import {
  endpoint,
  meshState,
  port,
  proxyScope,
  roundRobinSubsetsPolicy,
  seeded,
  service as meshService,
} from '../test/fixtures/mesh';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string): string => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? fallback : (args[i + 1] ?? fallback);
};
const SECONDS = Number(flag('seconds', '2'));

function service(i: number, routes?: HttpRouteTable): MeshService {
  const name = `svc-${i}`;
  return {
    key: `default/${name}`,
    name,
    namespace: 'default',
    hostname: `${name}.default.svc.cluster.local`,
    addresses: [`10.96.${i >> 8}.${i & 255}`],
    ports: [{ port: 80, name: 'http', protocol: 'http' }],
    endpoints: Array.from({ length: 10 }, (_, e) => ({
      address: `10.${1 + (i >> 8)}.${i & 255}.${e + 1}`,
      ports: { '80': 8080 },
      ready: true,
      identity: `spiffe://cluster.local/ns/default/sa/${name}`,
      workload: {
        name: `${name}-v${(e % 2) + 1}`,
        namespace: 'default',
        app: name,
        version: `v${(e % 2) + 1}`,
      },
      pod: `${name}-${e}`,
      subsets: [`v${(e % 2) + 1}`],
    })),
    ...(routes === undefined ? {} : { routes }),
  };
}

/** 1,000 rules: each a path prefix; every 10th also needs two headers (100 with header matches). */
function bigTable(key: string): HttpRouteTable {
  return {
    source: { kind: 'VirtualService', namespace: 'default', name: 'big' },
    rules: Array.from({ length: 1000 }, (_, r) => ({
      name: `r${r}`,
      matches: [
        {
          uri: { prefix: `/api/v1/resource-${r}/` },
          ...(r % 10 === 0
            ? {
                headers: [
                  { name: 'x-tenant', value: { exact: `tenant-${r}` } },
                  { name: 'x-canary', value: { regex: 'yes|true' } },
                ],
              }
            : {}),
        },
      ],
      destinations: [
        { service: key, subset: 'v1', weight: 90 },
        { service: key, subset: 'v2', weight: 10 },
      ],
      timeoutMs: 5000,
    })),
  };
}

const smallTable = (key: string): HttpRouteTable => ({
  source: { kind: 'VirtualService', namespace: 'default', name: 'small' },
  rules: [
    {
      matches: [{ headers: [{ name: 'end-user', value: { exact: 'jason' } }] }],
      destinations: [{ service: key, subset: 'v2', weight: 1 }],
    },
    {
      matches: [{ uri: { prefix: '/admin' } }],
      destinations: [{ service: key, subset: 'v1', weight: 1 }],
      timeoutMs: 1000,
    },
    {
      matches: [{ uri: { regex: '/api/v[0-9]+/.*' } }],
      destinations: [{ service: key, weight: 1 }],
      retries: { attempts: 3, retryOn: ['5xx'] },
    },
    {
      matches: [{ method: { exact: 'POST' } }],
      destinations: [{ service: key, weight: 1 }],
      fault: { delay: { fixedDelayMs: 100, percent: 1 } },
    },
    {
      matches: [],
      destinations: [
        { service: key, subset: 'v1', weight: 95 },
        { service: key, subset: 'v2', weight: 5 },
      ],
    },
  ],
});

function view(path: string, headers: Record<string, string>): RequestView {
  return { method: 'GET', path, header: (n) => headers[n] ?? null };
}

function benchRoute(): void {
  const svc = service(0, bigTable('default/svc-0'));
  const random = seeded(7);
  const lookup = (): MeshService | null => null;
  const cases: [string, RequestView][] = [
    [
      'first rule (header match)',
      view('/api/v1/resource-0/items', { 'x-tenant': 'tenant-0', 'x-canary': 'yes' }),
    ],
    [
      'rule 500 (header match)',
      view('/api/v1/resource-500/items', { 'x-tenant': 'tenant-500', 'x-canary': 'true' }),
    ],
    ['rule 999 (prefix only)', view('/api/v1/resource-999/items?q=1', {})],
    ['no rule matches (404)', view('/other', {})],
  ];
  console.log(`route selection: 1,000 rules, 100 with header matches (${SECONDS} s per case)`);
  for (const [name, req] of cases) {
    const expect = routeRequest(svc, 80, req, random, lookup);
    let n = 0;
    let sink = 0;
    const start = process.hrtime.bigint();
    const end = start + BigInt(SECONDS * 1e9);
    let now = start;
    while (now < end) {
      for (let i = 0; i < 1000; i++) {
        const d = routeRequest(svc, 80, req, random, lookup);
        if (d !== null) sink++;
      }
      n += 1000;
      now = process.hrtime.bigint();
    }
    const us = Number(now - start) / 1e3 / n;
    console.log(
      `  ${name.padEnd(28)} ${us.toFixed(2).padStart(7)} µs/request  (${(1e6 / us).toFixed(0)}/s; ${expect === null ? 'no route' : `rule ${expect.rule?.name ?? '-'}`}, ${sink > 0 ? 'routed' : 'none'})`,
    );
  }
}

function heapMiB(): number {
  (global as { gc?: () => void }).gc?.();
  (global as { gc?: () => void }).gc?.();
  return process.memoryUsage().heapUsed / 2 ** 20;
}

function meshOf(withRules: boolean): MeshState {
  const services = new Map<string, MeshService>();
  for (let i = 0; i < 1000; i++) {
    const key = `default/svc-${i}`;
    const s = service(i, withRules ? smallTable(key) : undefined);
    services.set(
      key,
      withRules
        ? {
            ...s,
            policy: roundRobinSubsetsPolicy(`svc-${i}`),
          }
        : s,
    );
  }
  return { ...meshState(proxyScope('client')), services };
}

/** The heap one proxy's mesh takes, measured in a fresh process for each variant. */
function memoryOf(withRules: boolean): void {
  const before = heapMiB();
  // As the agent holds it: the snapshot parsed from its JSON line, then compiled.
  const text = JSON.stringify({ services: [...meshOf(withRules).services.values()] });
  const parsed = JSON.parse(text) as { services: MeshService[] };
  const state: MeshState = {
    ...meshOf(false),
    services: new Map(parsed.services.map((s) => [s.key, s])),
  };
  const index = new MeshIndex(state);
  const random = seeded(1);
  for (const s of state.services.values()) {
    index.endpointSet(s, 80, withRules ? 'v1' : undefined);
    index.endpointSet(s, 80, withRules ? 'v2' : undefined);
    // A request to each, so that every table is compiled as it would be in use.
    routeRequest(s, 80, view('/api/v1/x', {}), random, (k) => index.service(k));
  }
  const kept = [text, parsed];
  const after = heapMiB();
  const snapshotMiB = (Buffer.byteLength(kept[0] as string) / 2 ** 20).toFixed(1);
  console.log(
    `  ${withRules ? 'with a 5-rule table and a DestinationRule each' : 'without rules'}: ${(after - before - Buffer.byteLength(text) / 2 ** 20).toFixed(1)} MiB heap beside the ${snapshotMiB} MiB snapshot line`,
  );
}

function benchMemory(): void {
  console.log(
    'memory: a proxy holding 1,000 Services x 10 endpoints (the parsed snapshot and its MeshIndex)',
  );
  for (const variant of ['without', 'with']) {
    const out = execFileSync(process.execPath, ['--expose-gc', __filename, '--memory', variant]);
    process.stdout.write(out);
  }
}

/**
 * Ten policies: four DENYs (admin paths, a header, an address block, a namespace), six ALLOWs of
 * twenty principals each with methods and path prefixes; the last ALLOW names the caller.
 */
function policies(): AuthorizationPolicyRules[] {
  const deny = (name: string, rule: AuthorizationPolicyRules['rules'][number]) => ({
    name: `default/${name}`,
    action: 'DENY' as const,
    rules: [rule],
  });
  const allows = Array.from({ length: 6 }, (_, p) => ({
    name: `default/allow-${p}`,
    action: 'ALLOW' as const,
    rules: [
      {
        from: [
          {
            principals: Array.from(
              { length: 20 },
              (_, i) => `cluster.local/ns/team-${p}/sa/${p === 5 && i === 19 ? 'web' : `svc-${i}`}`,
            ),
          },
        ],
        to: [{ methods: ['GET', 'POST'], paths: ['/api/*', '/healthz'] }],
      },
    ],
  }));
  return [
    deny('admin', { to: [{ paths: ['/admin*', '/debug/*', '*.php'] }] }),
    deny('header', { when: [{ key: 'request.headers[x-blocked]', values: ['*'] }] }),
    deny('block', { from: [{ ipBlocks: ['192.168.0.0/16'] }] }),
    deny('ns', { from: [{ namespaces: ['untrusted'] }] }),
    ...allows,
  ];
}

function benchAuthorize(): void {
  const all = compileAuthorization(policies()) as CompiledAuthorization;
  const facts = (path: string, peer: string): AuthorizationFacts => ({
    peer,
    sourceIp: '10.1.2.3',
    destinationIp: '10.1.2.4',
    destinationPort: 8080,
    request: view(path, { 'x-request-id': 'r' }),
  });
  const web = 'spiffe://cluster.local/ns/team-5/sa/web';
  const cases: [string, AuthorizationFacts, boolean][] = [
    ['let through (the last ALLOW)', facts('/api/v1/items?x=1', web), true],
    ['refused by a DENY (path)', facts('/x/../admin/users', web), false],
    ['no ALLOW matches', facts('/api/v1/items', 'spiffe://cluster.local/ns/x/sa/y'), false],
  ];
  console.log(`authorization: ten policies, the inbound decision (${SECONDS} s per case)`);
  for (const [name, f, expected] of cases) {
    if (decide(all, f).allowed !== expected) throw new Error(`${name}: wrong decision`);
    let n = 0;
    const start = process.hrtime.bigint();
    const end = start + BigInt(SECONDS * 1e9);
    let now = start;
    while (now < end) {
      for (let i = 0; i < 1000; i++) decide(all, f);
      n += 1000;
      now = process.hrtime.bigint();
    }
    const us = Number(now - start) / 1000 / n;
    console.log(`  ${name.padEnd(28)} ${us.toFixed(2).padStart(7)} µs/request`);
  }
}

/**
 * One pick of a Service's endpoint (least request over 10 endpoints), without locality and with
 * three priority levels (Istio's locality failover) or three weighted localities (distribute):
 * the cost locality balancing adds to each request.
 */
function benchLocality(): void {
  const zones = ['r1/za/', 'r1/zb/', 'r2/zc/'];
  const svc = (trafficPolicy: TrafficPolicy | undefined): MeshService => ({
    ...meshService(
      'web',
      '10.96.0.1',
      [port(80)],
      Array.from({ length: 10 }, (_, i) => ({
        ...endpoint(`10.0.0.${i + 1}`, { 80: 8080 }),
        locality: zones[i % 3] as string,
      })),
    ),
    ...(trafficPolicy === undefined
      ? {}
      : { policy: { source: { namespace: 'default', name: 'web' }, trafficPolicy } }),
  });
  const outlierDetection = {
    consecutive5xxErrors: 5,
    consecutiveGatewayErrors: 0,
    intervalMs: 10_000,
    baseEjectionTimeMs: 30_000,
    maxEjectionPercent: 10,
  };
  const cases: [string, TrafficPolicy | undefined][] = [
    ['no locality', undefined],
    ['failover (3 levels)', { outlierDetection }],
    [
      'distribute (3 localities)',
      {
        localityLb: {
          distribute: [{ from: 'r1/*', to: { 'r1/za/*': 70, 'r1/zb/*': 20, 'r2/*': 10 } }],
        },
      },
    ],
  ];
  console.log(`locality: one endpoint pick of 10 (${SECONDS} s per case)`);
  for (const [name, policy] of cases) {
    const s = svc(policy);
    const index = new MeshIndex(
      meshState(
        proxyScope('client', (p) => ({ ...p, locality: 'r1/za/' })),
        s,
      ),
    );
    const set = index.endpointSet(s, 80);
    if ((set.groups === undefined) !== (policy === undefined)) throw new Error(`${name}: groups`);
    let n = 0;
    const start = process.hrtime.bigint();
    const end = start + BigInt(SECONDS * 1e9);
    let now = start;
    while (now < end) {
      for (let i = 0; i < 1000; i++) pickEndpoint(set, 'LEAST_REQUEST', Math.random, 0);
      n += 1000;
      now = process.hrtime.bigint();
    }
    const us = Number(now - start) / 1000 / n;
    console.log(`  ${name.padEnd(28)} ${us.toFixed(3).padStart(7)} µs/pick`);
  }
}

const memoryVariant = flag('memory', '');
if (memoryVariant !== '') {
  memoryOf(memoryVariant === 'with');
} else {
  benchRoute();
  benchMemory();
  benchAuthorize();
  benchLocality();
}

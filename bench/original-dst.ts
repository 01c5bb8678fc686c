// Cost of reading the original destination of a redirected connection (the proxy pays it once per
// accepted connection): time and CPU per call, and bytes allocated per call. As root, in a network
// namespace with the rules of `mooring iptables`; the reader runs as UID/GID 1337 with every
// capability dropped (as mooring-proxy), on a dual-stack listener on 15001; a client as UID 1000
// holds IPv4 and IPv6 connections to outside addresses (redirected) and to 127.0.0.1:15001 (not).
//
//   make bench-original-dst      (= make build && npx tsc -p bench/tsconfig.json &&
//                                   node .cache/bench/bench/original-dst.js)
//   options: --connections N per case (default 50)  --calls N per case (default 200000)

import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { PerformanceObserver } from 'node:perf_hooks';
import type * as Reader from '../src/agent/proxy/l4/original-dst';

const ROOT = process.cwd();
const NODE = process.execPath;
const NS = `mooring-b-${process.pid}-odst`;
const PORT = 15001;

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
const CONNECTIONS = arg('--connections', 50);
const CALLS = arg('--calls', 200_000);

const CASES = [
  { name: 'IPv4 redirected, dual-stack listener', host: (i: number) => `203.0.113.${i + 1}` },
  { name: 'IPv6 redirected', host: (i: number) => `2001:db8:ffff::${(i + 1).toString(16)}` },
  { name: 'not redirected (null)', host: () => '127.0.0.1' },
];

// The client: opens every [host, port], keeps them open, prints `ready` when all are connected.
const CLIENT = `
const net = require('net');
const targets = JSON.parse(process.argv[1]);
let pending = targets.length;
for (const [host, port] of targets) {
  const s = net.connect({ host, port }, () => { if (--pending === 0) console.log('ready'); });
  s.on('error', (e) => { console.error(host, port, e.message); process.exit(1); });
}`;

const sh = (command: string, ...args: string[]): string =>
  execFileSync(command, args, { encoding: 'utf8' });

function untilLine(child: ChildProcess, word: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (c: Buffer) => {
      out += c.toString();
      const line = out.split('\n').find((l) => l.includes(word));
      if (line !== undefined) resolve(line);
    });
    child.on('exit', (code) => reject(new Error(`exited (${code}) before ${word}`)));
  });
}

async function outer(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('run as root: it creates a network namespace');
  const children: ChildProcess[] = [];
  sh('ip', 'netns', 'add', NS);
  try {
    const ip = (...args: string[]): string => sh('ip', '-n', NS, ...args);
    ip('link', 'set', 'lo', 'up');
    ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1'); // eth1 stays down
    ip('link', 'set', 'eth0', 'up');
    ip('addr', 'add', '192.0.2.1/24', 'dev', 'eth0');
    ip('-6', 'addr', 'add', '2001:db8::1/64', 'dev', 'eth0', 'nodad');
    ip('route', 'add', 'default', 'via', '192.0.2.2');
    ip('-6', 'route', 'add', 'default', 'via', '2001:db8::2');
    sh('ip', 'netns', 'exec', NS, NODE, join(ROOT, 'bin/mooring.js'), 'iptables');

    const proxy = ['--reuid=1337', '--regid=1337', '--clear-groups', '--inh-caps=-all'];
    const inner = spawn(
      'ip',
      ['netns', 'exec', NS, 'setpriv', ...proxy, '--bounding-set=-all', '--no-new-privs'].concat([
        NODE,
        '--expose-gc',
        __filename,
        'inner',
        ...process.argv.slice(2),
      ]),
      { stdio: ['ignore', 'pipe', 'inherit'], cwd: ROOT },
    );
    children.push(inner);
    await untilLine(inner, 'listening');
    const targets = CASES.flatMap((c) =>
      Array.from({ length: CONNECTIONS }, (_, i) => [c.host(i), c === CASES[2] ? PORT : 80 + i]),
    );
    const app = ['--reuid=1000', '--regid=1000', '--clear-groups'];
    const client = spawn(
      'ip',
      ['netns', 'exec', NS, 'setpriv', ...app, NODE, '-e', CLIENT, JSON.stringify(targets)],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    children.push(client);
    await untilLine(client, 'ready');
    const report = await untilLine(inner, 'results');
    print(JSON.parse(report) as Results);
  } finally {
    for (const child of children) child.kill('SIGKILL');
    sh('ip', 'netns', 'del', NS);
  }
}

interface Row {
  name: string;
  nsPerCall: number;
  cpuUsPerCall: number;
  bytesPerCall: number | null;
  answer: unknown;
}
interface Results {
  results: Row[];
  node: string;
  uid: number;
}

function print(r: Results): void {
  console.log(`Node ${r.node}, reader as UID ${r.uid}, ${CONNECTIONS} connections per case,`);
  console.log(`${CALLS} calls per case, round robin over the connections\n`);
  console.log('| case | wall µs/call | CPU µs/call | bytes allocated/call | answer |');
  console.log('| --- | ---: | ---: | ---: | --- |');
  for (const row of r.results) {
    console.log(
      `| ${row.name} | ${(row.nsPerCall / 1000).toFixed(2)} | ${row.cpuUsPerCall.toFixed(2)} | ` +
        `${row.bytesPerCall ?? 'a GC ran: n/a'} | \`${JSON.stringify(row.answer)}\` |`,
    );
  }
}

/** Bytes allocated per call, from heapUsed around a short loop with no GC in between. */
function bytesPerCall(fn: () => unknown): number | null {
  const calls = 2_000;
  for (let attempt = 0; attempt < 5; attempt++) {
    (globalThis as { gc?: () => void }).gc?.();
    let gcs = 0;
    const obs = new PerformanceObserver((list) => (gcs += list.getEntries().length));
    obs.observe({ entryTypes: ['gc'] });
    const keep: unknown[] = new Array<unknown>(calls);
    const before = process.memoryUsage().heapUsed;
    for (let i = 0; i < calls; i++) keep[i] = fn();
    const after = process.memoryUsage().heapUsed;
    obs.disconnect();
    if (gcs === 0) return Math.round((after - before) / calls);
  }
  return null;
}

async function inner(): Promise<void> {
  const reader = join(ROOT, 'dist/agent/proxy/l4/original-dst.js');
  const { loadOriginalDestination } = (await import(reader)) as typeof Reader;
  const read = loadOriginalDestination();
  const byCase: Socket[][] = CASES.map(() => []);
  let accepted = 0;
  const server = createServer((socket) => {
    const answer = read(socket);
    const index =
      answer === null ? 2 : answer.family === 4 ? 0 : 1; /* the case this connection is */
    byCase[index]?.push(socket);
    if (++accepted === CASES.length * CONNECTIONS) measure();
  });
  server.listen({ port: PORT, host: '::' }, () => console.log('listening'));

  function measure(): void {
    const results: Row[] = CASES.map((c, k) => {
      const sockets = byCase[k] ?? [];
      if (sockets.length !== CONNECTIONS) throw new Error(`${c.name}: ${sockets.length} sockets`);
      let j = 0;
      const next = (): unknown => read(sockets[j++ % sockets.length] as Socket);
      for (let i = 0; i < 20_000; i++) next(); // warm-up
      const cpu0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < CALLS; i++) next();
      const ns = Number(process.hrtime.bigint() - t0);
      const cpu = process.cpuUsage(cpu0);
      return {
        name: c.name,
        nsPerCall: ns / CALLS,
        cpuUsPerCall: (cpu.user + cpu.system) / CALLS,
        bytesPerCall: bytesPerCall(next),
        answer: read(sockets[0] as Socket),
      };
    });
    console.log(JSON.stringify({ results, node: process.version, uid: process.getuid?.() ?? -1 }));
    process.exit(0);
  }
}

(process.argv[2] === 'inner' ? inner() : outer()).catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});

// The original destination of redirected connections, read by the proxy's reader
// (src/agent/proxy/l4/original-dst.ts and its addon) in network namespaces with the rules of
// `mooring iptables` itself (run as root: `make netns`).
//
//   pod  eth0 192.0.2.1/24 (and .11)  2001:db8::1/64 (and ::11)   runs `mooring iptables`; default
//                                                                  routes via the peer
//   peer eth0 192.0.2.2/24            2001:db8::2/64               the rest of the network
//   bare lo only, no rules                                         direct connections, no conntrack
// The listeners run as UID/GID 1337 with every capability dropped, as mooring-proxy does: 15001
// (outbound) is one dual-stack socket, 15006 (inbound) an IPv4 socket and an IPv6-only socket.
// Each answers a connection with what the reader said of it (a JSON line). Clients connect
// concurrently to several destinations: each must get its own exact original destination.

import { type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import {
  checkPreconditions,
  inNs,
  killAll,
  MOORING,
  must,
  NODE,
  PREFIX,
  removeLeftovers,
  ROOT,
  run,
  startReady,
} from './support';

jest.setTimeout(60_000);

const POD = { v4: '192.0.2.1', v6: '2001:db8::1' };
const POD_SECONDARY = { v4: '192.0.2.11', v6: '2001:db8::11' };
const PEER = { v4: '192.0.2.2', v6: '2001:db8::2' };
const APP_USER = ['--reuid=1000', '--regid=1000', '--clear-groups'];
const PROXY_USER = [
  '--reuid=1337',
  '--regid=1337',
  '--clear-groups',
  '--inh-caps=-all',
  '--bounding-set=-all',
  '--no-new-privs',
];
const READER = join(ROOT, 'dist/agent/proxy/l4/original-dst.js');

interface ListenerSpec {
  name: string;
  port: number;
  host: string;
  ipv6Only?: boolean;
}

// Listens on each spec; answers every connection with the reader's answer for it, then says
// `ready` with its UID and capability sets.
const LISTENER = `
const net = require('net');
const fs = require('fs');
const { loadOriginalDestination } = require(process.argv[1]);
const read = loadOriginalDestination();
const specs = JSON.parse(process.argv[2]);
const status = fs.readFileSync('/proc/self/status', 'utf8').split('\\n');
const caps = Object.fromEntries(status.filter((l) => /^Cap/.test(l)).map((l) => l.split(/:\\s+/)));
let pending = specs.length;
for (const spec of specs) {
  net.createServer((s) => {
    s.on('error', () => {});
    let answer;
    try { answer = { destination: read(s) }; } catch (e) { answer = { error: e.message }; }
    s.end(JSON.stringify({ listener: spec.name, ...answer }) + '\\n');
  }).listen({ port: spec.port, host: spec.host, ipv6Only: spec.ipv6Only === true }, () => {
    if (--pending === 0) console.log(JSON.stringify({ ready: true, uid: process.getuid(), gid: process.getgid(), caps }));
  });
}`;

// Opens every [host, port] of argv[1] at once; prints the answers (or errors) in that order.
const CLIENT = `
const net = require('net');
const targets = JSON.parse(process.argv[1]);
Promise.all(targets.map(([host, port]) => new Promise((resolve) => {
  const s = net.connect({ host, port });
  let data = '';
  s.setTimeout(5000, () => { s.destroy(); resolve({ error: 'TIMEOUT' }); });
  s.on('data', (c) => { data += c; });
  s.on('end', () => resolve(JSON.parse(data)));
  s.on('error', (e) => resolve({ error: e.code }));
}))).then((answers) => console.log(JSON.stringify(answers)));`;

type Answer =
  | { listener: string; destination: { address: string; port: number; family: 4 | 6 } | null }
  | { listener?: string; error: string };

/** Connects from `ns` (as `user`: setpriv flags, or root) to every target at once. */
async function connectAll(
  ns: string,
  targets: readonly (readonly [string, number])[],
  user: readonly string[] = [],
): Promise<Answer[]> {
  const client = [NODE, '-e', CLIENT, JSON.stringify(targets)];
  const command = user.length === 0 ? client : ['setpriv', ...user, ...client];
  const result = await run('ip', ['netns', 'exec', ns, ...command]);
  if (result.code !== 0) throw new Error(`client failed (${result.code}): ${result.stderr}`);
  return JSON.parse(result.stdout) as Answer[];
}

/** What the listener must answer for a redirected connection to `host`:`port`. */
const redirected = (listener: string, host: string, port: number): Answer => ({
  listener,
  destination: { address: host, port, family: host.includes(':') ? 6 : 4 },
});

async function startListeners(ns: string, specs: readonly ListenerSpec[]): Promise<ChildProcess> {
  const args = ['netns', 'exec', ns, 'setpriv', ...PROXY_USER, NODE, '-e', LISTENER, READER];
  const { child, line } = await startReady('ip', [...args, JSON.stringify(specs)]);
  // The reader needs no privilege at all: UID/GID 1337 and empty capability sets.
  const none = '0000000000000000';
  expect(JSON.parse(line)).toEqual({
    ready: true,
    uid: 1337,
    gid: 1337,
    caps: { CapInh: none, CapPrm: none, CapEff: none, CapBnd: none, CapAmb: none },
  });
  return child;
}

describe('the original destination of connections redirected by mooring iptables', () => {
  const pod = `${PREFIX}${process.pid}-odst-pod`;
  const peer = `${PREFIX}${process.pid}-odst-peer`;
  const bare = `${PREFIX}${process.pid}-odst-bare`;
  const children: ChildProcess[] = [];
  const ip = (ns: string, ...args: string[]): Promise<string> => must('ip', ['-n', ns, ...args]);

  beforeAll(async () => {
    await checkPreconditions(
      ['ip', 'setpriv', 'iptables', 'ip6tables'],
      [
        ['src/agent/proxy/l4/original-dst.ts', 'dist/agent/proxy/l4/original-dst.js'],
        ['src/cli/iptables.ts', 'dist/cli/iptables.js'],
      ],
    );
    await removeLeftovers();
    for (const ns of [pod, peer, bare]) {
      await must('ip', ['netns', 'add', ns]);
      await ip(ns, 'link', 'set', 'lo', 'up');
    }
    await ip(pod, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', peer);
    for (const ns of [pod, peer]) await ip(ns, 'link', 'set', 'eth0', 'up');
    for (const address of [POD.v4, POD_SECONDARY.v4]) {
      await ip(pod, 'addr', 'add', `${address}/24`, 'dev', 'eth0');
    }
    for (const address of [POD.v6, POD_SECONDARY.v6]) {
      await ip(pod, '-6', 'addr', 'add', `${address}/64`, 'dev', 'eth0', 'nodad');
    }
    await ip(peer, 'addr', 'add', `${PEER.v4}/24`, 'dev', 'eth0');
    await ip(peer, '-6', 'addr', 'add', `${PEER.v6}/64`, 'dev', 'eth0', 'nodad');
    // Destinations outside the link are routed (and so captured) like a Pod's default route.
    await ip(pod, 'route', 'add', 'default', 'via', PEER.v4);
    await ip(pod, '-6', 'route', 'add', 'default', 'via', PEER.v6);

    const install = await inNs(pod, NODE, [MOORING, 'iptables']);
    if (install.code !== 0) throw new Error(`mooring iptables failed: ${install.stderr}`);

    const proxy: ListenerSpec[] = [
      { name: 'outbound dual-stack', port: 15001, host: '::' },
      { name: 'inbound IPv4', port: 15006, host: '0.0.0.0' },
      { name: 'inbound IPv6-only', port: 15006, host: '::', ipv6Only: true },
    ];
    children.push(await startListeners(pod, proxy));
    const direct: ListenerSpec[] = [
      { name: 'bare IPv4', port: 15001, host: '127.0.0.1' },
      { name: 'bare IPv6', port: 15001, host: '::1', ipv6Only: true },
    ];
    children.push(await startListeners(bare, direct));
  });

  afterAll(async () => {
    await killAll(children);
    for (const ns of [pod, peer, bare]) await run('ip', ['netns', 'del', ns]);
  });

  it('answers the exact IPv4 and IPv6 destinations of outbound connections (dual-stack listener)', async () => {
    const targets = [
      [PEER.v4, 8080],
      ['203.0.113.9', 443],
      ['198.51.100.77', 5432],
      ['10.96.0.10', 53],
      [PEER.v6, 8080],
      ['2001:db8:ffff::9', 443],
      ['2001:db8:1::77', 5432],
      ['fd00:10:96::a', 53],
    ] as const;
    const answers = await connectAll(pod, targets, APP_USER);
    expect(answers).toEqual(
      targets.map(([host, port]) => redirected('outbound dual-stack', host, port)),
    );
  });

  it('answers the exact destinations of inbound connections (IPv4 and IPv6-only listeners)', async () => {
    const v4 = [
      [POD.v4, 8080],
      [POD.v4, 9000],
      [POD_SECONDARY.v4, 80],
    ] as const;
    const v6 = [
      [POD.v6, 8080],
      [POD.v6, 50051],
      [POD_SECONDARY.v6, 80],
    ] as const;
    const answers = await connectAll(peer, [...v4, ...v6]);
    expect(answers).toEqual([
      ...v4.map(([host, port]) => redirected('inbound IPv4', host, port)),
      ...v6.map(([host, port]) => redirected('inbound IPv6-only', host, port)),
    ]);
  });

  it('keeps many concurrent connections apart: each gets its own destination', async () => {
    const targets = Array.from({ length: 40 }, (_, i) =>
      i % 2 === 0
        ? ([`203.0.113.${i + 1}`, 20_000 + i] as const)
        : ([`2001:db8:ffff::${i + 1}`, 20_000 + i] as const),
    );
    const answers = await connectAll(pod, targets, APP_USER);
    expect(answers).toEqual(
      targets.map(([host, port]) => redirected('outbound dual-stack', host, port)),
    );
  });

  it('answers null for connections that reach the listeners directly', async () => {
    // Loopback is never captured, nor the proxy's own UID: tracked, but not translated.
    expect(
      await connectAll(
        pod,
        [
          ['127.0.0.1', 15001],
          ['::1', 15001],
        ],
        APP_USER,
      ),
    ).toEqual([
      { listener: 'outbound dual-stack', destination: null },
      { listener: 'outbound dual-stack', destination: null },
    ]);
    expect(
      await connectAll(
        pod,
        [
          [POD.v4, 15006],
          [POD.v6, 15006],
        ],
        PROXY_USER,
      ),
    ).toEqual([
      { listener: 'inbound IPv4', destination: null },
      { listener: 'inbound IPv6-only', destination: null },
    ]);
    // From the peer to 15006 itself: REDIRECTed onto the interface's primary IPv4 address, the
    // one it was sent to, and the same port. (IPv6 REDIRECT may pick another address of the
    // interface: a translation, so not asked here.)
    expect(await connectAll(peer, [[POD.v4, 15006]])).toEqual([
      { listener: 'inbound IPv4', destination: null },
    ]);
  });

  it('answers null in a namespace without any rule (no conntrack entry: ENOENT)', async () => {
    expect(
      await connectAll(bare, [
        ['127.0.0.1', 15001],
        ['::1', 15001],
      ]),
    ).toEqual([
      { listener: 'bare IPv4', destination: null },
      { listener: 'bare IPv6', destination: null },
    ]);
  });
});

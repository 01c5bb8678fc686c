// A real network-namespace test of `mooring iptables` (run as root: `make netns`).
//
// Two namespaces joined by a veth pair, with addresses that exist only inside them:
//   pod  eth0 192.0.2.1/24  2001:db8::1/64             runs `mooring iptables`
//   peer eth0 192.0.2.2/24  2001:db8::2/64             the rest of the network
//             198.51.100.2/24  2001:db8:1::2/64        an excluded outbound range
// Listeners reply with their own name, so each connection tells where it landed: in the pod, the
// proxy's capture ports (15006, 15001), the app (8080), an excluded app port (8081) and 15020,
// 15021, 15090; in the peer, 8080 and 9000 (an excluded outbound port).
// Everything runs once per backend (auto-detected, and legacy). The namespaces and listeners are
// removed in afterAll, which also runs when a test or the setup fails; namespaces left behind by
// a killed run are removed by the next one.

import { type ChildProcess } from 'node:child_process';
import {
  checkPreconditions,
  inNs,
  killAll,
  MOORING,
  must,
  NODE,
  PREFIX,
  removeLeftovers,
  run,
  startReady,
  type Result,
} from './support';

jest.setTimeout(60_000);

const POD = { v4: '192.0.2.1', v6: '2001:db8::1' };
const PEER = { v4: '192.0.2.2', v6: '2001:db8::2' };
const EXCLUDED_DEST = { v4: '198.51.100.2', v6: '2001:db8:1::2' };
const APP_USER = { uid: 1000, gid: 1000 };
const PROXY_ID = 1337;

const MOORING_FLAGS = [
  '--exclude-inbound-ports',
  '8081',
  '--exclude-outbound-ports',
  '9000',
  // Host bits set on purpose: the plan writes the range as iptables-save prints it.
  '--exclude-outbound-ip-ranges',
  '198.51.100.7/24,2001:db8:1::/64',
];

const POD_LISTENERS: Record<number, string> = {
  15006: 'inbound-capture',
  15001: 'outbound-capture',
  8080: 'app',
  8081: 'app-excluded',
  15020: 'agent',
  15021: 'readiness',
  15090: 'metrics',
};
const PEER_LISTENERS: Record<number, string> = { 8080: 'peer', 9000: 'peer-9000' };

// Listens on every port of the map (dual stack) and answers each connection with the name.
const LISTENER = `
const net = require('net');
const map = JSON.parse(process.argv[1]);
let pending = Object.keys(map).length;
for (const [port, name] of Object.entries(map)) {
  net.createServer((s) => { s.on('error', () => {}); s.end(name + '\\n'); })
    .listen({ port: Number(port), host: '::' }, () => { if (--pending === 0) console.log('ready'); });
}`;

// Connects, prints what the server said, or ERROR <code> / TIMEOUT.
const CLIENT = `
const net = require('net');
const s = net.connect({ host: process.argv[1], port: Number(process.argv[2]) });
let data = '';
s.setTimeout(3000, () => { process.stdout.write('TIMEOUT'); process.exit(1); });
s.on('data', (c) => { data += c; });
s.on('end', () => { process.stdout.write(data.trim()); });
s.on('error', (e) => { process.stdout.write('ERROR ' + e.code); process.exit(1); });`;

const preconditions = (): Promise<void> =>
  checkPreconditions(
    ['ip', 'setpriv', 'iptables', 'ip6tables', 'iptables-legacy-save', 'unshare', 'mount'],
    [
      ['src/cli/main.ts', 'dist/cli/main.js'],
      ['src/cli/iptables.ts', 'dist/cli/iptables.js'],
      ['src/adapters/iptables.ts', 'dist/adapters/iptables.js'],
      ['src/injector/iptables-plan.ts', 'dist/injector/iptables-plan.js'],
    ],
  );

// ---- the rig ----------------------------------------------------------------------------------

interface Rig {
  readonly pod: string;
  readonly peer: string;
  readonly listeners: ChildProcess[];
}

async function startListener(ns: string, map: Record<number, string>): Promise<ChildProcess> {
  const args = ['netns', 'exec', ns, NODE, '-e', LISTENER, JSON.stringify(map)];
  return (await startReady('ip', args)).child;
}

/** Creates the namespaces; `rig.listeners` is filled as listeners start, for the teardown. */
async function buildRig(rig: Rig): Promise<void> {
  const { pod, peer } = rig;
  await must('ip', ['netns', 'add', pod]);
  await must('ip', ['netns', 'add', peer]);
  const ip = (ns: string, ...args: string[]): Promise<string> => must('ip', ['-n', ns, ...args]);
  await ip(pod, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', peer);
  for (const ns of [pod, peer]) {
    await ip(ns, 'link', 'set', 'lo', 'up');
    await ip(ns, 'link', 'set', 'eth0', 'up');
  }
  await ip(pod, 'addr', 'add', `${POD.v4}/24`, 'dev', 'eth0');
  await ip(pod, '-6', 'addr', 'add', `${POD.v6}/64`, 'dev', 'eth0', 'nodad');
  await ip(peer, 'addr', 'add', `${PEER.v4}/24`, 'dev', 'eth0');
  await ip(peer, '-6', 'addr', 'add', `${PEER.v6}/64`, 'dev', 'eth0', 'nodad');
  await ip(peer, 'addr', 'add', `${EXCLUDED_DEST.v4}/24`, 'dev', 'eth0');
  await ip(peer, '-6', 'addr', 'add', `${EXCLUDED_DEST.v6}/64`, 'dev', 'eth0', 'nodad');
  await ip(pod, 'route', 'add', '198.51.100.0/24', 'via', PEER.v4);
  await ip(pod, '-6', 'route', 'add', '2001:db8:1::/64', 'via', PEER.v6);
  rig.listeners.push(await startListener(pod, POD_LISTENERS));
  rig.listeners.push(await startListener(peer, PEER_LISTENERS));
}

async function destroyRig(rig: Rig): Promise<void> {
  await killAll(rig.listeners);
  for (const ns of [rig.pod, rig.peer]) await run('ip', ['netns', 'del', ns]);
}

interface Identity {
  uid: number;
  gid: number;
}

/** Connects from inside `ns` (as `who`, or root) and returns the name of the listener reached. */
async function connect(ns: string, host: string, port: number, who?: Identity): Promise<string> {
  const client = [NODE, '-e', CLIENT, host, String(port)];
  const command =
    who === undefined
      ? client
      : ['setpriv', `--reuid=${who.uid}`, `--regid=${who.gid}`, '--clear-groups', ...client];
  const result = await run('ip', ['netns', 'exec', ns, ...command]);
  return result.stdout.trim() || `EXIT ${result.code}: ${result.stderr.trim()}`;
}

/** `iptables-save -t nat` without comments (they carry dates) and with zeroed counters. */
async function savedNat(ns: string, save: string): Promise<string> {
  const out = await inNs(ns, save, ['-t', 'nat']);
  if (out.code !== 0) throw new Error(`${save} failed: ${out.stderr}`);
  return out.stdout
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]/, '[0:0]'))
    .join('\n');
}

/** `-A` lines grouped by chain, in order: the chain order of iptables-save is not ours to fix. */
function rulesByChain(text: string): Record<string, string[]> {
  const chains: Record<string, string[]> = {};
  for (const line of text.split('\n').filter((l) => l.startsWith('-A '))) {
    const chain = line.split(' ')[1] ?? '';
    (chains[chain] ??= []).push(line);
  }
  return chains;
}

/** The dry run's rules of one family (the part after `# IPv4` or `# IPv6`). */
function dryRunFamily(dryRun: string, family: 4 | 6): string {
  const parts = dryRun.split(/^# IPv/m);
  return parts.find((p) => p.startsWith(String(family))) ?? '';
}

// ---- the tests --------------------------------------------------------------------------------

const backends = [
  {
    backend: 'auto',
    tag: 'auto',
    save4: 'iptables-save',
    save6: 'ip6tables-save',
    ipt: 'iptables',
  },
  {
    backend: 'legacy',
    tag: 'legacy',
    save4: 'iptables-legacy-save',
    save6: 'ip6tables-legacy-save',
    ipt: 'iptables-legacy',
  },
];

describe.each(backends)('mooring iptables in a network namespace (backend $backend)', (b) => {
  const rig: Rig = {
    pod: `${PREFIX}${process.pid}-${b.tag}-pod`,
    peer: `${PREFIX}${process.pid}-${b.tag}-peer`,
    listeners: [],
  };
  const flags = [...MOORING_FLAGS, '--backend', b.backend];
  const runMooring = (...extra: string[]): Promise<Result> =>
    inNs(rig.pod, NODE, [MOORING, 'iptables', ...flags, ...extra]);
  let firstRun: Result | undefined;
  let afterFirst = { v4: '', v6: '' };
  const fromPeer = (host: string, port: number): Promise<string> => connect(rig.peer, host, port);
  const fromPod = (host: string, port: number, who: Identity = APP_USER): Promise<string> =>
    connect(rig.pod, host, port, who);

  beforeAll(async () => {
    await preconditions();
    await removeLeftovers();
    await buildRig(rig);
  });

  afterAll(async () => {
    await destroyRig(rig);
  });

  it('reaches the app and the peer directly before any rule is installed', async () => {
    expect(await fromPeer(POD.v4, 8080)).toBe('app');
    expect(await fromPeer(POD.v6, 8080)).toBe('app');
    expect(await fromPod(PEER.v4, 8080)).toBe('peer');
    expect(await fromPod(PEER.v6, 8080)).toBe('peer');
  });

  it('installs exactly the rules of the dry run, IPv4 and IPv6', async () => {
    firstRun = await runMooring();
    expect({ code: firstRun.code, stderr: firstRun.stderr }).toMatchObject({ code: 0 });
    const backendLog = firstRun.stderr.split('\n').find((l) => l.includes('iptables backend'));
    expect(backendLog).toContain(`"backend":"${b.backend === 'auto' ? 'default' : b.backend}"`);
    const dry = await run(NODE, [MOORING, 'iptables', '--dry-run', ...flags]);
    expect(dry.code).toBe(0);
    afterFirst = { v4: await savedNat(rig.pod, b.save4), v6: await savedNat(rig.pod, b.save6) };
    expect(rulesByChain(afterFirst.v4)).toEqual(rulesByChain(dryRunFamily(dry.stdout, 4)));
    expect(rulesByChain(afterFirst.v6)).toEqual(rulesByChain(dryRunFamily(dry.stdout, 6)));
    expect(afterFirst.v4).toContain('-A MOORING_OUTPUT -d 198.51.100.0/24 -j RETURN');
  });

  it('redirects inbound traffic to an app port to 15006', async () => {
    expect(await fromPeer(POD.v4, 8080)).toBe('inbound-capture');
    expect(await fromPeer(POD.v6, 8080)).toBe('inbound-capture');
  });

  it.each([
    [8081, 'app-excluded'],
    [15020, 'agent'],
    [15021, 'readiness'],
    [15090, 'metrics'],
  ])('lets inbound traffic to port %d reach its own listener (%s)', async (port, name) => {
    expect(await fromPeer(POD.v4, port)).toBe(name);
    expect(await fromPeer(POD.v6, port)).toBe(name);
  });

  it('redirects outbound traffic of an ordinary UID to 15001', async () => {
    expect(await fromPod(PEER.v4, 8080)).toBe('outbound-capture');
    expect(await fromPod(PEER.v6, 8080)).toBe('outbound-capture');
    expect(await fromPod(PEER.v4, 8080, { uid: 0, gid: 0 })).toBe('outbound-capture');
  });

  it('lets outbound traffic of the proxy UID 1337 go straight through', async () => {
    const proxy = { uid: PROXY_ID, gid: APP_USER.gid };
    expect(await fromPod(PEER.v4, 8080, proxy)).toBe('peer');
    expect(await fromPod(PEER.v6, 8080, proxy)).toBe('peer');
  });

  it('lets outbound traffic of the proxy GID 1337 go straight through', async () => {
    const proxyGroup = { uid: APP_USER.uid, gid: PROXY_ID };
    expect(await fromPod(PEER.v4, 8080, proxyGroup)).toBe('peer');
    expect(await fromPod(PEER.v6, 8080, proxyGroup)).toBe('peer');
  });

  it('lets outbound traffic to an excluded port go straight through', async () => {
    expect(await fromPod(PEER.v4, 9000)).toBe('peer-9000');
    expect(await fromPod(PEER.v6, 9000)).toBe('peer-9000');
  });

  it('lets outbound traffic to an excluded CIDR go straight through', async () => {
    expect(await fromPod(EXCLUDED_DEST.v4, 8080)).toBe('peer');
    expect(await fromPod(EXCLUDED_DEST.v6, 8080)).toBe('peer');
  });

  it('never captures loopback traffic: the app reaches itself on localhost', async () => {
    expect(await fromPod('127.0.0.1', 8080)).toBe('app');
    expect(await fromPod('::1', 8080)).toBe('app');
  });

  it('changes nothing when run a second time (iptables-save identical)', async () => {
    expect(afterFirst.v4).toContain('MOORING_INBOUND');
    const second = await runMooring();
    expect({ code: second.code, stderr: second.stderr }).toMatchObject({ code: 0 });
    expect(await savedNat(rig.pod, b.save4)).toBe(afterFirst.v4);
    expect(await savedNat(rig.pod, b.save6)).toBe(afterFirst.v6);
    expect(await fromPeer(POD.v4, 8080)).toBe('inbound-capture');
  });

  it('repairs duplicate jumps and stray rules an interrupted run left behind', async () => {
    const ipt = (family: 4 | 6, ...args: string[]): Promise<Result> =>
      inNs(rig.pod, family === 4 ? b.ipt : b.ipt.replace('iptables', 'ip6tables'), args);
    for (const family of [4, 6] as const) {
      expect(
        (await ipt(family, '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-j', 'MOORING_OUTPUT')).code,
      ).toBe(0);
      expect((await ipt(family, '-t', 'nat', '-I', 'MOORING_OUTPUT', '-j', 'RETURN')).code).toBe(0);
    }
    expect(await fromPod(PEER.v4, 8080)).toBe('peer');
    const again = await runMooring();
    expect({ code: again.code, stderr: again.stderr }).toMatchObject({ code: 0 });
    expect(await savedNat(rig.pod, b.save4)).toBe(afterFirst.v4);
    expect(await savedNat(rig.pod, b.save6)).toBe(afterFirst.v6);
    expect(await fromPod(PEER.v4, 8080)).toBe('outbound-capture');
  });
});

// mooring-init runs with readOnlyRootFilesystem; the injector mounts the emptyDir
// mooring-xtables-lock on its /run (src/injector/sidecar.ts). Here the same two mounts, in a
// mount namespace: a read-only /run, then a writable one over it, as the kubelet's emptyDir.
describe('mooring iptables with a read-only root filesystem (backend legacy)', () => {
  const ns = `${PREFIX}${process.pid}-ro`;
  const inReadOnlyContainer = (writableRun: boolean): Promise<Result> =>
    inNs(ns, 'unshare', [
      '--mount',
      'sh',
      '-c',
      [
        'mount -t tmpfs -o ro tmpfs /run',
        ...(writableRun ? ['mount -t tmpfs tmpfs /run'] : []),
        'exec "$0" "$@"',
      ].join(' && '),
      NODE,
      MOORING,
      'iptables',
      ...MOORING_FLAGS,
      '--backend',
      'legacy',
    ]);

  beforeAll(async () => {
    await preconditions();
    await removeLeftovers();
    await must('ip', ['netns', 'add', ns]);
  });
  afterAll(async () => {
    await run('ip', ['netns', 'del', ns]);
  });

  it('fails without a writable /run, and says which mount is missing', async () => {
    const result = await inReadOnlyContainer(false);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain("can't open lock file /run/xtables.lock");
    expect(result.stderr).toContain('mooring-xtables-lock');
    expect(await savedNat(ns, 'iptables-legacy-save')).not.toContain('MOORING_INBOUND');
  });

  it('installs the rules with the emptyDir the injector mounts on /run', async () => {
    const result = await inReadOnlyContainer(true);
    expect({ code: result.code, stderr: result.stderr }).toMatchObject({ code: 0 });
    expect(await savedNat(ns, 'iptables-legacy-save')).toContain('MOORING_INBOUND');
    expect(await savedNat(ns, 'ip6tables-legacy-save')).toContain('MOORING_INBOUND');
  });
});

import { PassThrough } from 'node:stream';
import { Command, CommanderError } from 'commander';
import {
  applyPlan,
  childProcessExecutor,
  detectBackend,
  routableIPv6Addresses,
  type CommandExecutor,
  type CommandResult,
} from '../../src/adapters/iptables';
import { registerIptables } from '../../src/cli/iptables';
import type { CliIO } from '../../src/cli/io';
import { main } from '../../src/cli/main';
import { MooringError } from '../../src/errors';
import {
  canonicalCidr,
  planFamily,
  planRedirect,
  renderRestore,
  ruleLine,
  staleJumpDeletions,
  type IpFamily,
} from '../../src/injector/iptables-plan';
import { redirectArgs, type RedirectSpec } from '../../src/injector/redirect';

// ---- fixture builders -------------------------------------------------------------------------

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type Modifier = (spec: Mutable<RedirectSpec>) => void;

function spec(...modifiers: Modifier[]): RedirectSpec {
  const s: Mutable<RedirectSpec> = {
    proxyUID: 1337,
    proxyGID: 1337,
    inboundCapturePort: 15006,
    outboundCapturePort: 15001,
    includeInboundPorts: '*',
    excludeInboundPorts: [],
    includeOutboundIPRanges: '*',
    excludeOutboundIPRanges: [],
    excludeOutboundPorts: [],
  };
  for (const modify of modifiers) modify(s);
  return s;
}

const withIncludeInboundPorts =
  (...ports: number[]): Modifier =>
  (s) => {
    s.includeInboundPorts = ports;
  };
const withExcludeInboundPorts =
  (...ports: number[]): Modifier =>
  (s) => {
    s.excludeInboundPorts = ports;
  };
const withIncludeOutboundRanges =
  (...cidrs: string[]): Modifier =>
  (s) => {
    s.includeOutboundIPRanges = cidrs;
  };
const withExcludeOutboundRanges =
  (...cidrs: string[]): Modifier =>
  (s) => {
    s.excludeOutboundIPRanges = cidrs;
  };
const withExcludeOutboundPorts =
  (...ports: number[]): Modifier =>
  (s) => {
    s.excludeOutboundPorts = ports;
  };
const withProxyIds =
  (uid: number, gid: number): Modifier =>
  (s) => {
    s.proxyUID = uid;
    s.proxyGID = gid;
  };
const withCapturePorts =
  (inbound: number, outbound: number): Modifier =>
  (s) => {
    s.inboundCapturePort = inbound;
    s.outboundCapturePort = outbound;
  };

/** The `-A` lines of one chain. */
function chainLines(s: RedirectSpec, family: IpFamily, chain: string): string[] {
  return planFamily(s, family)
    .rules.filter((r) => r.chain === chain)
    .map((r) => ruleLine(r));
}

// ---- the plan ---------------------------------------------------------------------------------

describe('the iptables plan', () => {
  const cases: {
    name: string;
    spec: RedirectSpec;
    family: IpFamily;
    chain: string;
    lines: string[];
  }[] = [
    {
      name: 'jumps into our chains from PREROUTING for TCP only',
      spec: spec(),
      family: 4,
      chain: 'PREROUTING',
      lines: ['-A PREROUTING -p tcp -j MOORING_INBOUND'],
    },
    {
      name: 'jumps into our chains from OUTPUT for TCP only',
      spec: spec(),
      family: 6,
      chain: 'OUTPUT',
      lines: ['-A OUTPUT -p tcp -j MOORING_OUTPUT'],
    },
    {
      name: 'returns 15020, 15021 and 15090 inbound, then captures every other port',
      spec: spec(),
      family: 4,
      chain: 'MOORING_INBOUND',
      lines: [
        '-A MOORING_INBOUND -p tcp -m tcp --dport 15020 -j RETURN',
        '-A MOORING_INBOUND -p tcp -m tcp --dport 15021 -j RETURN',
        '-A MOORING_INBOUND -p tcp -m tcp --dport 15090 -j RETURN',
        '-A MOORING_INBOUND -p tcp -j MOORING_IN_REDIRECT',
      ],
    },
    {
      name: 'returns excluded inbound ports after the always-excluded ones, each once',
      spec: spec(withExcludeInboundPorts(8081, 15021)),
      family: 4,
      chain: 'MOORING_INBOUND',
      lines: [
        '-A MOORING_INBOUND -p tcp -m tcp --dport 15020 -j RETURN',
        '-A MOORING_INBOUND -p tcp -m tcp --dport 15021 -j RETURN',
        '-A MOORING_INBOUND -p tcp -m tcp --dport 15090 -j RETURN',
        '-A MOORING_INBOUND -p tcp -m tcp --dport 8081 -j RETURN',
        '-A MOORING_INBOUND -p tcp -j MOORING_IN_REDIRECT',
      ],
    },
    {
      name: 'captures only the included inbound ports, never an excluded one',
      spec: spec(withIncludeInboundPorts(80, 15020, 443), withExcludeInboundPorts(443)),
      family: 6,
      chain: 'MOORING_INBOUND',
      lines: [
        '-A MOORING_INBOUND -p tcp -m tcp --dport 15020 -j RETURN',
        '-A MOORING_INBOUND -p tcp -m tcp --dport 15021 -j RETURN',
        '-A MOORING_INBOUND -p tcp -m tcp --dport 15090 -j RETURN',
        '-A MOORING_INBOUND -p tcp -m tcp --dport 443 -j RETURN',
        '-A MOORING_INBOUND -p tcp -m tcp --dport 80 -j MOORING_IN_REDIRECT',
      ],
    },
    {
      name: 'captures nothing inbound with an empty include list',
      spec: spec(withIncludeInboundPorts()),
      family: 4,
      chain: 'MOORING_INBOUND',
      lines: [
        '-A MOORING_INBOUND -p tcp -m tcp --dport 15020 -j RETURN',
        '-A MOORING_INBOUND -p tcp -m tcp --dport 15021 -j RETURN',
        '-A MOORING_INBOUND -p tcp -m tcp --dport 15090 -j RETURN',
      ],
    },
    {
      name: 'redirects inbound to the inbound capture port of the spec',
      spec: spec(withCapturePorts(16006, 16001)),
      family: 4,
      chain: 'MOORING_IN_REDIRECT',
      lines: ['-A MOORING_IN_REDIRECT -p tcp -j REDIRECT --to-ports 16006'],
    },
    {
      name: 'redirects outbound to the outbound capture port of the spec',
      spec: spec(withCapturePorts(16006, 16001)),
      family: 6,
      chain: 'MOORING_REDIRECT',
      lines: ['-A MOORING_REDIRECT -p tcp -j REDIRECT --to-ports 16001'],
    },
    {
      name: 'returns the proxy UID, GID and loopback first, then captures everything outbound',
      spec: spec(withProxyIds(2000, 3000)),
      family: 4,
      chain: 'MOORING_OUTPUT',
      lines: [
        '-A MOORING_OUTPUT -m owner --uid-owner 2000 -j RETURN',
        '-A MOORING_OUTPUT -m owner --gid-owner 3000 -j RETURN',
        '-A MOORING_OUTPUT -o lo -j RETURN',
        '-A MOORING_OUTPUT -j MOORING_REDIRECT',
      ],
    },
    {
      name: 'returns excluded outbound ports, then the excluded CIDRs of the same family',
      spec: spec(
        withExcludeOutboundPorts(5432, 6379),
        withExcludeOutboundRanges('10.0.0.0/8', 'fd00::/8', '169.254.169.254/32'),
      ),
      family: 4,
      chain: 'MOORING_OUTPUT',
      lines: [
        '-A MOORING_OUTPUT -m owner --uid-owner 1337 -j RETURN',
        '-A MOORING_OUTPUT -m owner --gid-owner 1337 -j RETURN',
        '-A MOORING_OUTPUT -o lo -j RETURN',
        '-A MOORING_OUTPUT -p tcp -m tcp --dport 5432 -j RETURN',
        '-A MOORING_OUTPUT -p tcp -m tcp --dport 6379 -j RETURN',
        '-A MOORING_OUTPUT -d 10.0.0.0/8 -j RETURN',
        '-A MOORING_OUTPUT -d 169.254.169.254/32 -j RETURN',
        '-A MOORING_OUTPUT -j MOORING_REDIRECT',
      ],
    },
    {
      name: 'puts IPv6 excluded CIDRs in the IPv6 plan only',
      spec: spec(withExcludeOutboundRanges('10.0.0.0/8', 'fd00::/8')),
      family: 6,
      chain: 'MOORING_OUTPUT',
      lines: [
        '-A MOORING_OUTPUT -m owner --uid-owner 1337 -j RETURN',
        '-A MOORING_OUTPUT -m owner --gid-owner 1337 -j RETURN',
        '-A MOORING_OUTPUT -o lo -j RETURN',
        '-A MOORING_OUTPUT -d fd00::/8 -j RETURN',
        '-A MOORING_OUTPUT -j MOORING_REDIRECT',
      ],
    },
    {
      name: 'captures only the included CIDRs of the family',
      spec: spec(withIncludeOutboundRanges('10.96.0.0/12', '192.168.0.0/16', 'fd00:10::/108')),
      family: 4,
      chain: 'MOORING_OUTPUT',
      lines: [
        '-A MOORING_OUTPUT -m owner --uid-owner 1337 -j RETURN',
        '-A MOORING_OUTPUT -m owner --gid-owner 1337 -j RETURN',
        '-A MOORING_OUTPUT -o lo -j RETURN',
        '-A MOORING_OUTPUT -d 10.96.0.0/12 -j MOORING_REDIRECT',
        '-A MOORING_OUTPUT -d 192.168.0.0/16 -j MOORING_REDIRECT',
      ],
    },
    {
      name: 'captures nothing outbound in a family the include list does not mention',
      spec: spec(withIncludeOutboundRanges('10.96.0.0/12')),
      family: 6,
      chain: 'MOORING_OUTPUT',
      lines: [
        '-A MOORING_OUTPUT -m owner --uid-owner 1337 -j RETURN',
        '-A MOORING_OUTPUT -m owner --gid-owner 1337 -j RETURN',
        '-A MOORING_OUTPUT -o lo -j RETURN',
      ],
    },
  ];

  it.each(cases)('$name', ({ spec: s, family, chain, lines }) => {
    expect(chainLines(s, family, chain)).toEqual(lines);
  });

  it('uses the same four chains in both families and only jumps from PREROUTING and OUTPUT', () => {
    const plan = planRedirect(spec(withExcludeOutboundRanges('10.0.0.0/8', 'fd00::/8')));
    for (const family of [plan.v4, plan.v6]) {
      expect(family.chains).toEqual([
        'MOORING_INBOUND',
        'MOORING_IN_REDIRECT',
        'MOORING_OUTPUT',
        'MOORING_REDIRECT',
      ]);
      const outside = family.rules.filter((r) => !family.chains.includes(r.chain));
      expect(outside.map((r) => r.chain)).toEqual(['PREROUTING', 'OUTPUT']);
    }
  });

  it('renders a restore input that declares the chains, then cleans up, then appends', () => {
    const text = renderRestore(planFamily(spec(), 4), ['-D OUTPUT -p tcp -j MOORING_OUTPUT']);
    const lines = text.trimEnd().split('\n');
    expect(lines[0]).toBe('*nat');
    expect(lines.slice(1, 5)).toEqual([
      ':MOORING_INBOUND - [0:0]',
      ':MOORING_IN_REDIRECT - [0:0]',
      ':MOORING_OUTPUT - [0:0]',
      ':MOORING_REDIRECT - [0:0]',
    ]);
    expect(lines[5]).toBe('-D OUTPUT -p tcp -j MOORING_OUTPUT');
    expect(lines[6]).toBe('-A PREROUTING -p tcp -j MOORING_INBOUND');
    expect(lines.at(-1)).toBe('COMMIT');
    expect(text.endsWith('COMMIT\n')).toBe(true);
  });
});

// ---- CIDRs as iptables-save prints them ---------------------------------------------------------

describe('canonical CIDRs (checked against iptables-save, nft and legacy)', () => {
  it.each([
    ['clears the host bits of an IPv4 range', '10.1.2.3/8', '10.0.0.0/8'],
    ['clears host bits inside a byte', '192.0.2.255/25', '192.0.2.128/25'],
    ['keeps the IPv4 default route', '0.0.0.0/0', '0.0.0.0/0'],
    ['lower-cases and compresses IPv6', '2001:DB8:0:0::1/128', '2001:db8::1/128'],
    ['compresses trailing zero groups', '2001:db8:0:1:0:0:0:0/64', '2001:db8:0:1::/64'],
    ['clears IPv6 host bits', '2001:db8:1:2:3:4:5:6/33', '2001:db8::/33'],
    ['compresses the longest zero run', 'fe80:0:0:0:1:0:0:1/128', 'fe80::1:0:0:1/128'],
    ['compresses the first of two equal zero runs', '1:0:0:2:0:0:3:4/128', '1::2:0:0:3:4/128'],
    ['never compresses a single zero group', '1:0:2:3:4:5:6:7/128', '1:0:2:3:4:5:6:7/128'],
    ['prints IPv4-mapped addresses in dotted form', '::ffff:1.2.3.4/128', '::ffff:1.2.3.4/128'],
    ['prints the IPv4-mapped range in dotted form', '::ffff:0:0/96', '::ffff:0.0.0.0/96'],
    ['prints the unspecified address as ::', '0:0:0:0:0:0:0:0/128', '::/128'],
    ['keeps the loopback address', '::1/128', '::1/128'],
  ])('%s', (_name, input, expected) => {
    expect(canonicalCidr(input)).toBe(expected);
  });

  it('writes no -d for a /0, as iptables-save does', () => {
    const lines = chainLines(
      spec(withExcludeOutboundRanges('0.0.0.0/0', '::/0')),
      6,
      'MOORING_OUTPUT',
    );
    expect(lines).toContain('-A MOORING_OUTPUT -j RETURN');
    expect(lines.some((l) => l.includes('-d'))).toBe(false);
  });

  it('writes a range once when two spellings of it are given', () => {
    const lines = chainLines(
      spec(withExcludeOutboundRanges('10.0.0.0/8', '10.9.9.9/8', '2001:db8::/32')),
      4,
      'MOORING_OUTPUT',
    );
    expect(lines.filter((l) => l.includes('-d 10.0.0.0/8'))).toHaveLength(1);
  });
});

// ---- cleanup of an earlier run ------------------------------------------------------------------

const savedAfterTwoRuns = `# Generated by iptables-nft-save v1.8.9 (nf_tables) on Tue Nov 24 16:33:00 2026
*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp -j MOORING_INBOUND
COMMIT
*nat
:PREROUTING ACCEPT [3:180]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:MOORING_INBOUND - [0:0]
:MOORING_OUTPUT - [0:0]
:KUBE-THING - [0:0]
-A PREROUTING -p tcp -j MOORING_INBOUND
-A PREROUTING -p tcp -j KUBE-THING
-A PREROUTING -p tcp -j MOORING_INBOUND
-A OUTPUT -p tcp -m comment --comment "old version" -j MOORING_OUTPUT
-A OUTPUT -d 10.0.0.0/8 -g MOORING_REDIRECT
-A MOORING_INBOUND -p tcp -j MOORING_IN_REDIRECT
-A KUBE-THING -j MOORING_OUTPUT
COMMIT
# Completed on Tue Nov 24 16:33:00 2026
`;

describe('the cleanup of jumps an earlier run left', () => {
  const cases: { name: string; saved: string; deletions: string[] }[] = [
    { name: 'deletes nothing in a fresh namespace', saved: '', deletions: [] },
    {
      name: 'deletes every jump from a built-in nat chain into ours, duplicates and variants included',
      saved: savedAfterTwoRuns,
      deletions: [
        '-D PREROUTING -p tcp -j MOORING_INBOUND',
        '-D PREROUTING -p tcp -j MOORING_INBOUND',
        '-D OUTPUT -p tcp -m comment --comment "old version" -j MOORING_OUTPUT',
        '-D OUTPUT -d 10.0.0.0/8 -g MOORING_REDIRECT',
      ],
    },
    {
      name: 'leaves jumps of other tables and rules of other chains alone',
      saved:
        '*filter\n-A INPUT -j MOORING_INBOUND\nCOMMIT\n*nat\n-A KUBE-X -j MOORING_OUTPUT\nCOMMIT\n',
      deletions: [],
    },
  ];

  it.each(cases)('$name', ({ saved, deletions }) => {
    expect(staleJumpDeletions(saved)).toEqual(deletions);
  });
});

// ---- applying through the executor port ----------------------------------------------------------

interface Call {
  command: string;
  args: readonly string[];
  input?: string;
}

type Responder = (command: string, args: readonly string[]) => Partial<CommandResult> | undefined;

/** An executor that records every call and answers from `respond` (default: success, no output). */
function recordingExecutor(respond: Responder = () => undefined): CommandExecutor & {
  calls: Call[];
} {
  const calls: Call[] = [];
  return {
    calls,
    run: (command, args, input) => {
      calls.push(input === undefined ? { command, args } : { command, args, input });
      const answer = respond(command, args) ?? {};
      return Promise.resolve({ code: 0, stdout: '', stderr: '', ...answer });
    },
  };
}

const rulesOf = (n: number): string =>
  `*nat\n${Array.from({ length: n }, (_, i) => `-A OUTPUT -p tcp -m tcp --dport ${i + 1} -j ACCEPT`).join('\n')}\nCOMMIT\n`;

const commandsOf = (calls: Call[]): string[] => calls.map((c) => [c.command, ...c.args].join(' '));

describe('applying the plan', () => {
  const plan = planRedirect(spec());

  it('reads and restores each family with the default backend when no backend holds rules', async () => {
    const exec = recordingExecutor();
    const report = await applyPlan(plan, exec, { backend: 'auto', ipv6: 'auto' });
    expect(report.backend).toBe('default');
    expect(commandsOf(exec.calls)).toEqual([
      'iptables-legacy-save',
      'ip6tables-legacy-save',
      'iptables-nft-save',
      'ip6tables-nft-save',
      'iptables-save --version',
      'iptables-save -t nat',
      'iptables-restore --noflush',
      'ip6tables-save -t nat',
      'ip6tables-restore --noflush',
    ]);
    const restores = exec.calls.filter((c) => c.command.endsWith('-restore'));
    expect(restores.map((c) => c.input)).toEqual([renderRestore(plan.v4), renderRestore(plan.v6)]);
    expect(report.families.map((f) => [f.family, f.applied])).toEqual([
      [4, true],
      [6, true],
    ]);
  });

  it('uses the backend that already holds more rules', async () => {
    const exec = recordingExecutor((command) =>
      command === 'iptables-legacy-save' ? { stdout: rulesOf(3) } : undefined,
    );
    const report = await applyPlan(plan, exec, { backend: 'auto', ipv6: 'on' });
    expect(report.backend).toBe('legacy');
    expect(report.counts).toEqual({ legacy: 3, nft: 0 });
    expect(commandsOf(exec.calls).slice(-4)).toEqual([
      'iptables-legacy-save -t nat',
      'iptables-legacy-restore --noflush',
      'ip6tables-legacy-save -t nat',
      'ip6tables-legacy-restore --noflush',
    ]);
  });

  it('does not count a backend whose save command fails', async () => {
    const exec = recordingExecutor((command) => {
      if (command.includes('legacy')) return { code: 127, stderr: 'not found' };
      if (command === 'ip6tables-nft-save') return { stdout: rulesOf(1) };
      return undefined;
    });
    const detection = await detectBackend(exec);
    expect(detection.backend.name).toBe('nft');
    expect(detection.counts).toEqual({ nft: 1 });
  });

  it('skips detection when a backend is named', async () => {
    const exec = recordingExecutor();
    await applyPlan(plan, exec, { backend: 'nft', ipv6: 'off' });
    expect(commandsOf(exec.calls)).toEqual([
      'iptables-nft-save --version',
      'iptables-nft-save -t nat',
      'iptables-nft-restore --noflush',
    ]);
  });

  it('deletes the jumps an earlier run left before appending its own', async () => {
    const exec = recordingExecutor((command, args) =>
      command === 'iptables-save' && args[0] === '-t' ? { stdout: savedAfterTwoRuns } : undefined,
    );
    const report = await applyPlan(plan, exec, { backend: 'auto', ipv6: 'off' });
    const restore = exec.calls.find((c) => c.command === 'iptables-restore');
    expect(restore?.input).toBe(renderRestore(plan.v4, staleJumpDeletions(savedAfterTwoRuns)));
    expect(report.families[0]?.deletedJumps).toBe(4);
  });

  it('never calls ip6tables with --ipv6 off', async () => {
    const exec = recordingExecutor();
    const report = await applyPlan(plan, exec, { backend: 'legacy', ipv6: 'off' });
    expect(exec.calls.some((c) => c.command.startsWith('ip6tables'))).toBe(false);
    expect(report.families[1]).toMatchObject({ family: 6, applied: false, skipped: '--ipv6 off' });
  });

  it('skips IPv6 with --ipv6 auto when ip6tables cannot read the nat table', async () => {
    const exec = recordingExecutor((command) =>
      command === 'ip6tables-nft-save'
        ? { code: 3, stderr: 'table nat does not exist\n' }
        : undefined,
    );
    const report = await applyPlan(plan, exec, { backend: 'nft', ipv6: 'auto' });
    expect(exec.calls.some((c) => c.command === 'ip6tables-nft-restore')).toBe(false);
    expect(report.families[1]).toMatchObject({ applied: false });
    expect(report.families[1]?.skipped).toContain('table nat does not exist');
  });

  it('fails with --ipv6 auto when ip6tables cannot read the nat table of a Pod with an IPv6 address', async () => {
    const exec = recordingExecutor((command) =>
      command === 'ip6tables-nft-save'
        ? { code: 3, stderr: 'table nat does not exist' }
        : undefined,
    );
    const err = await applyPlan(plan, exec, {
      backend: 'nft',
      ipv6: 'auto',
      routableIPv6: ['fd77::2'],
    }).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'IPT_ERR_APPLY' });
    expect((err as Error).message).toBe(
      'ip6tables-nft-save -t nat failed (exit 3): table nat does not exist; the Pod has the IPv6 ' +
        'address fd77::2: its IPv6 traffic would bypass the proxy (--ipv6 off to accept that)',
    );
  });

  it('hints at the capabilities when iptables is not permitted', async () => {
    const exec = recordingExecutor((command) =>
      command === 'iptables-legacy-save'
        ? {
            code: 1,
            stderr: 'iptables-legacy-save: Cannot initialize: Permission denied (you must be root)',
          }
        : undefined,
    );
    await expect(applyPlan(plan, exec, { backend: 'legacy', ipv6: 'off' })).rejects.toThrow(
      'needs the capabilities NET_ADMIN and NET_RAW',
    );
  });

  it('fails with --ipv6 on when ip6tables cannot read the nat table', async () => {
    const exec = recordingExecutor((command) =>
      command === 'ip6tables-nft-save'
        ? { code: 3, stderr: 'table nat does not exist' }
        : undefined,
    );
    await expect(applyPlan(plan, exec, { backend: 'nft', ipv6: 'on' })).rejects.toThrow(
      'ip6tables-nft-save -t nat failed (exit 3): table nat does not exist',
    );
  });

  it('reports a failing restore as IPT_ERR_APPLY with the command and its error', async () => {
    const exec = recordingExecutor((command) =>
      command === 'iptables-restore'
        ? { code: 2, stderr: 'iptables-restore: line 9 failed\n' }
        : undefined,
    );
    const err: unknown = await applyPlan(plan, exec, { backend: 'auto', ipv6: 'auto' }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(MooringError);
    expect((err as MooringError).code).toBe('IPT_ERR_APPLY');
    expect((err as MooringError).message).toBe(
      'iptables-restore --noflush failed (exit 2): iptables-restore: line 9 failed',
    );
  });
});

describe('the routable IPv6 addresses of a network namespace', () => {
  it('are the IPv6 addresses that are neither loopback nor link-local', () => {
    expect(
      routableIPv6Addresses({
        lo: [
          { address: '127.0.0.1', family: 'IPv4', internal: true },
          { address: '::1', family: 'IPv6', internal: true },
        ],
        eth0: [
          { address: '10.1.0.5', family: 'IPv4', internal: false },
          { address: 'fe80::1', family: 'IPv6', internal: false },
          { address: 'FEBF::2', family: 'IPv6', internal: false },
          { address: 'fd77::2', family: 'IPv6', internal: false },
          { address: '2001:db8::5', family: 6, internal: false },
        ],
      }),
    ).toEqual(['fd77::2', '2001:db8::5']);
  });
});

describe('the child-process executor', () => {
  const exec = childProcessExecutor(10_000);

  it('feeds the input on stdin and returns stdout and the exit code', async () => {
    const script =
      'process.stdin.pipe(process.stdout); process.stdin.on("end", () => process.exit(3))';
    const result = await exec.run(process.execPath, ['-e', script], 'hello\n');
    expect(result).toMatchObject({ code: 3, stdout: 'hello\n' });
  });

  it('answers 127 for a command that is not installed', async () => {
    const result = await exec.run('mooring-no-such-command', ['-t', 'nat']);
    expect(result.code).toBe(127);
    expect(result.stderr).toContain('mooring-no-such-command: command not found');
  });
});

// ---- the command line -----------------------------------------------------------------------------

function bufferIO(): CliIO & { out: () => string; err: () => string } {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const chunks = { out: [] as Buffer[], err: [] as Buffer[] };
  stdout.on('data', (c: Buffer) => chunks.out.push(c));
  stderr.on('data', (c: Buffer) => chunks.err.push(c));
  return {
    stdin: new PassThrough(),
    stdout,
    stderr,
    out: () => Buffer.concat(chunks.out).toString('utf8'),
    err: () => Buffer.concat(chunks.err).toString('utf8'),
  };
}

async function runCli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const io = bufferIO();
  const code = await main(['node', 'mooring', 'iptables', ...args], io);
  return { code, out: io.out(), err: io.err() };
}

describe('mooring iptables flags', () => {
  const invalid: { name: string; args: string[]; flag: string; value: string }[] = [
    {
      name: 'rejects a port list with a word in it',
      args: ['--exclude-inbound-ports', '80,http'],
      flag: '--exclude-inbound-ports',
      value: '80,http',
    },
    {
      name: 'rejects a port above 65535',
      args: ['--include-inbound-ports', '70000'],
      flag: '--include-inbound-ports',
      value: '70000',
    },
    {
      name: 'rejects port 0 in the outbound exclusions',
      args: ['--exclude-outbound-ports', '0'],
      flag: '--exclude-outbound-ports',
      value: '0',
    },
    {
      name: 'rejects a CIDR with a prefix too long for its family',
      args: ['--exclude-outbound-ip-ranges', '10.0.0.0/33'],
      flag: '--exclude-outbound-ip-ranges',
      value: '10.0.0.0/33',
    },
    {
      name: 'rejects a host name where CIDRs are expected',
      args: ['--include-outbound-ip-ranges', 'example.com'],
      flag: '--include-outbound-ip-ranges',
      value: 'example.com',
    },
    {
      name: 'rejects a wildcard in an exclusion list',
      args: ['--exclude-outbound-ip-ranges', '*'],
      flag: '--exclude-outbound-ip-ranges',
      value: '*',
    },
    {
      name: 'rejects a negative proxy UID',
      args: ['--proxy-uid', '-1'],
      flag: '--proxy-uid',
      value: '-1',
    },
    {
      name: 'rejects a proxy GID that is not a number',
      args: ['--proxy-gid', 'proxy'],
      flag: '--proxy-gid',
      value: 'proxy',
    },
    {
      name: 'rejects a capture port of 0',
      args: ['--inbound-capture-port', '0'],
      flag: '--inbound-capture-port',
      value: '0',
    },
    {
      name: 'rejects an unknown --ipv6 mode',
      args: ['--ipv6', 'maybe'],
      flag: '--ipv6',
      value: 'maybe',
    },
    {
      name: 'rejects an unknown backend',
      args: ['--backend', 'ebtables'],
      flag: '--backend',
      value: 'ebtables',
    },
  ];

  it.each(invalid)(
    '$name with exit 2, naming the flag and the value',
    async ({ args, flag, value }) => {
      const result = await runCli(['--dry-run', ...args]);
      expect(result.code).toBe(2);
      expect(result.out).toBe('');
      const firstLine = result.err.split('\n')[0] ?? '';
      expect(firstLine).toContain(flag);
      expect(firstLine).toContain(`'${value}'`);
    },
  );

  it('exits 2 on an unknown flag', async () => {
    const result = await runCli(['--dry-run', '--exclude-inbound-port', '80']);
    expect(result.code).toBe(2);
    expect(result.err).toContain('--exclude-inbound-port');
  });

  it('prints IPv4 then IPv6 rules with --dry-run and the defaults', async () => {
    const result = await runCli(['--dry-run']);
    expect(result.code).toBe(0);
    const plan = planRedirect(spec());
    expect(result.out).toBe(
      `# IPv4: iptables-restore --noflush\n${renderRestore(plan.v4)}` +
        `# IPv6: ip6tables-restore --noflush\n${renderRestore(plan.v6)}`,
    );
  });

  it("names the chosen backend's restore command in --dry-run", async () => {
    const result = await runCli(['--dry-run', '--backend', 'legacy']);
    expect(result.out).toContain('# IPv4: iptables-legacy-restore --noflush\n');
    expect(result.out).toContain('# IPv6: ip6tables-legacy-restore --noflush\n');
  });

  it("adds up a list flag given twice (as Linkerd's proxy-init)", async () => {
    const result = await runCli([
      ...['--dry-run', '--ipv6', 'off'],
      ...['--exclude-inbound-ports', '8080', '--exclude-inbound-ports', '9000,8080'],
      ...[
        '--exclude-outbound-ip-ranges',
        '10.0.0.0/8',
        '--exclude-outbound-ip-ranges',
        '192.168.0.0/16',
      ],
    ]);
    expect(result.code).toBe(0);
    const plan = planRedirect(
      spec(
        withExcludeInboundPorts(8080, 9000),
        withExcludeOutboundRanges('10.0.0.0/8', '192.168.0.0/16'),
      ),
    );
    expect(result.out).toBe(`# IPv4: iptables-restore --noflush\n${renderRestore(plan.v4)}`);
  });

  it.each<[string, string[], string]>([
    [
      'a wildcard with other values',
      ['--include-inbound-ports', '80', '--include-inbound-ports', '*'],
      '"*" cannot be combined with other values',
    ],
    [
      'the same port for both captures',
      ['--inbound-capture-port', '15001'],
      '--inbound-capture-port and --outbound-capture-port must differ (both are 15001)',
    ],
    [
      "a capture port that is one of the sidecar's own",
      ['--outbound-capture-port', '15021'],
      "--outbound-capture-port 15021 is one of the sidecar's own ports (15020, 15021, 15090)",
    ],
  ])('refuses %s with exit 2', async (_name, args, message) => {
    const result = await runCli(['--dry-run', ...args]);
    expect(result.code).toBe(2);
    expect(result.out).toBe('');
    expect(result.err).toContain(message);
  });

  it('prints only IPv4 rules with --dry-run --ipv6 off', async () => {
    const result = await runCli(['--dry-run', '--ipv6', 'off']);
    expect(result.out).toContain('# IPv4');
    expect(result.out).not.toContain('# IPv6');
  });

  it('parses every redirect flag into the spec the injector wrote', async () => {
    const result = await runCli([
      '--dry-run',
      '--proxy-uid',
      '2000',
      '--proxy-gid',
      '3000',
      '--inbound-capture-port',
      '16006',
      '--outbound-capture-port',
      '16001',
      '--include-inbound-ports',
      '80, 443',
      '--exclude-inbound-ports',
      '443',
      '--include-outbound-ip-ranges',
      '10.96.0.0/12,fd00::/108',
      '--exclude-outbound-ip-ranges',
      '10.96.0.1',
      '--exclude-outbound-ports',
      '5432',
    ]);
    const expected = planRedirect(
      spec(
        withProxyIds(2000, 3000),
        withCapturePorts(16006, 16001),
        withIncludeInboundPorts(80, 443),
        withExcludeInboundPorts(443),
        withIncludeOutboundRanges('10.96.0.0/12', 'fd00::/108'),
        withExcludeOutboundRanges('10.96.0.1/32'),
        withExcludeOutboundPorts(5432),
      ),
    );
    expect(result.out).toBe(
      `# IPv4: iptables-restore --noflush\n${renderRestore(expected.v4)}` +
        `# IPv6: ip6tables-restore --noflush\n${renderRestore(expected.v6)}`,
    );
  });

  it.each([
    ['the defaults', spec()],
    [
      'every list set',
      spec(
        withIncludeInboundPorts(8080, 9090),
        withExcludeInboundPorts(9091),
        withIncludeOutboundRanges('10.0.0.0/8', '2001:db8::/32'),
        withExcludeOutboundRanges('10.1.0.0/16'),
        withExcludeOutboundPorts(25),
      ),
    ],
    ['empty include lists', spec(withIncludeInboundPorts(), withIncludeOutboundRanges())],
  ])('reads back the arguments the injector writes for %s', async (_name, written) => {
    const result = await runCli(['--dry-run', ...redirectArgs(written)]);
    const expected = planRedirect(written);
    expect(result.out).toBe(
      `# IPv4: iptables-restore --noflush\n${renderRestore(expected.v4)}` +
        `# IPv6: ip6tables-restore --noflush\n${renderRestore(expected.v6)}`,
    );
  });

  it('applies through the executor and logs what it did without --dry-run', async () => {
    const io = bufferIO();
    const exec = recordingExecutor();
    let code = -1;
    const program = new Command('mooring').exitOverride();
    registerIptables(program, io, (c) => (code = c), exec);
    await program.parseAsync(['node', 'mooring', 'iptables', '--backend', 'nft', '--ipv6', 'off']);
    expect(code).toBe(0);
    expect(io.out()).toBe('');
    expect(commandsOf(exec.calls)).toContain('iptables-nft-restore --noflush');
    const logs = io
      .err()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { msg: string; family?: number });
    expect(logs.map((l) => [l.msg, l.family])).toEqual([
      ['iptables backend', undefined],
      ['iptables rules applied', 4],
      ['iptables rules not applied', 6],
    ]);
  });

  it('fails with IPT_ERR_APPLY when a restore fails', async () => {
    const io = bufferIO();
    const program = new Command('mooring')
      .exitOverride()
      .configureOutput({ writeErr: (s) => io.stderr.write(s) });
    const exec = recordingExecutor((command) =>
      command.endsWith('-restore') ? { code: 1, stderr: 'boom' } : undefined,
    );
    registerIptables(program, io, () => undefined, exec);
    const err: unknown = await program
      .parseAsync(['node', 'mooring', 'iptables'])
      .catch((e: unknown) => e);
    expect(err).not.toBeInstanceOf(CommanderError);
    expect((err as MooringError).code).toBe('IPT_ERR_APPLY');
  });

  it('warns when it cannot tell the backends apart (no -legacy or -nft command)', async () => {
    const run = async (suffixed: boolean) => {
      const io = bufferIO();
      const program = new Command('mooring').exitOverride();
      const exec = recordingExecutor((command) =>
        !suffixed && /-(legacy|nft)-save$/.test(command)
          ? { code: 127, stderr: 'not found' }
          : undefined,
      );
      registerIptables(
        program,
        io,
        () => undefined,
        exec,
        () => ({}),
      );
      await program.parseAsync(['node', 'mooring', 'iptables', '--ipv6', 'off']);
      return io.err();
    };
    expect(await run(false)).toContain('cannot tell which backend holds rules');
    expect(await run(true)).not.toContain('cannot tell which backend holds rules');
  });

  it("takes the namespace's IPv6 addresses into account: --ipv6 auto fails on a dual-stack Pod", async () => {
    const run = async (addresses: string[]) => {
      const io = bufferIO();
      const program = new Command('mooring').exitOverride();
      const exec = recordingExecutor((command) =>
        command === 'ip6tables-save' ? { code: 3, stderr: 'table nat does not exist' } : undefined,
      );
      let code = -1;
      registerIptables(
        program,
        io,
        (c) => (code = c),
        exec,
        () => ({
          eth0: addresses.map((address) => ({ address, family: 'IPv6', internal: false }) as never),
        }),
      );
      return program.parseAsync(['node', 'mooring', 'iptables']).then(
        () => code,
        (e: unknown) => (e as MooringError).code,
      );
    };
    expect(await run(['fe80::1'])).toBe(0);
    expect(await run(['fe80::1', 'fd77::2'])).toBe('IPT_ERR_APPLY');
  });
});

// The rules `mooring iptables` installs in a pod's network namespace, as a pure plan computed from
// a RedirectSpec, rendered in iptables-save/iptables-restore syntax. Side effects live in
// src/adapters/iptables.ts; the flags are parsed in src/cli/iptables.ts.
//
// Every rule is written in the canonical form that iptables-save prints (`-p tcp -m tcp --dport`),
// on the nft and on the legacy backend alike, so that what the dry run shows is exactly what
// `iptables-save -t nat` shows after applying it.
//
// nat table, for each family:
//   PREROUTING -p tcp -j MOORING_INBOUND
//   MOORING_INBOUND      RETURN for excluded ports (always 15020, 15021, 15090), then every other
//                        port (or only the included ones) -> MOORING_IN_REDIRECT
//   MOORING_IN_REDIRECT  REDIRECT --to-ports 15006
//   OUTPUT -p tcp -j MOORING_OUTPUT
//   MOORING_OUTPUT       RETURN for the proxy's UID and GID, for anything leaving through `lo`,
//                        for excluded ports and excluded CIDRs; then every destination (or only
//                        the included CIDRs) -> MOORING_REDIRECT
//   MOORING_REDIRECT     REDIRECT --to-ports 15001
//
// Loopback: everything leaving through `lo` is returned, whoever sends it. That covers 127.0.0.0/8,
// ::1 and the pod's own addresses (the kernel routes them through `lo`). Istio instead sends the
// proxy's own connections to the pod IP back to the inbound listener, which needs the proxy to
// mark its inbound passthrough connections (source 127.0.0.6) to avoid a loop; Mooring's proxy is
// pluggable and PRODUCT.md says the proxy UID is never redirected, so we keep the simpler rule: an
// app calling itself reaches itself directly, never through a proxy.

import { PORT } from '../constants';
import { cidrFamily, ipv4Bytes, ipv6Bytes } from '../ip';
import type { RedirectSpec } from './redirect';

export type IpFamily = 4 | 6;

export const CHAIN = {
  inbound: 'MOORING_INBOUND',
  inRedirect: 'MOORING_IN_REDIRECT',
  output: 'MOORING_OUTPUT',
  redirect: 'MOORING_REDIRECT',
} as const;

/** Our chains, in the order they are declared. */
export const MOORING_CHAINS: readonly string[] = [
  CHAIN.inbound,
  CHAIN.inRedirect,
  CHAIN.output,
  CHAIN.redirect,
];

/** Ports never captured inbound, whatever the flags say (PRODUCT.md). */
export const ALWAYS_EXCLUDED_INBOUND_PORTS: readonly number[] = [
  PORT.agent,
  PORT.readiness,
  PORT.proxyMetrics,
];

/** One rule of the nat table: the chain it is appended to and its match/target arguments. */
export interface IptablesRule {
  readonly chain: string;
  readonly spec: readonly string[];
}

/** The nat-table rules of one address family. */
export interface FamilyPlan {
  readonly family: IpFamily;
  readonly chains: readonly string[];
  readonly rules: readonly IptablesRule[];
}

export interface IptablesPlan {
  readonly v4: FamilyPlan;
  readonly v6: FamilyPlan;
}

const rule = (chain: string, ...spec: string[]): IptablesRule => ({ chain, spec });

/** RFC 5952 text: lower case, the first longest run of two or more zero groups as `::`. */
function formatIpv6(bytes: readonly number[]): string {
  const groups = Array.from(
    { length: 8 },
    (_, i) => (bytes[2 * i] ?? 0) * 256 + (bytes[2 * i + 1] ?? 0),
  );
  let best = { start: -1, len: 0 };
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > best.len) best = { start: i, len: j - i };
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  // Like glibc's inet_ntop: IPv4-compatible and IPv4-mapped addresses end in dotted form.
  if (best.start === 0 && (best.len === 6 || (best.len === 5 && groups[5] === 0xffff))) {
    return `::${best.len === 5 ? 'ffff:' : ''}${bytes.slice(12).join('.')}`;
  }
  if (best.len < 2) return hex.join(':');
  return `${hex.slice(0, best.start).join(':')}::${hex.slice(best.start + best.len).join(':')}`;
}

/**
 * A CIDR as iptables-save prints it: host bits cleared, IPv6 in RFC 5952 form. `10.1.2.3/8`
 * becomes `10.0.0.0/8`, `2001:DB8:0:0::1/128` becomes `2001:db8::1/128`. Input is a CIDR that
 * src/injector/lists.ts accepted.
 */
export function canonicalCidr(cidr: string): string {
  const [addr = '', prefixText = ''] = cidr.split('/');
  const prefix = Number(prefixText);
  const v6 = cidrFamily(cidr) === 6;
  const bytes = v6 ? ipv6Bytes(addr) : ipv4Bytes(addr);
  const masked = bytes.map((b, i) => {
    const keep = Math.max(0, Math.min(8, prefix - 8 * i));
    return b & ((0xff << (8 - keep)) & 0xff);
  });
  return `${v6 ? formatIpv6(masked) : masked.join('.')}/${prefix}`;
}

const tcpPort = (port: number): string[] => ['-p', 'tcp', '-m', 'tcp', '--dport', String(port)];

/** Excluded inbound ports: the always-excluded ones first, then the spec's, without repeats. */
export function inboundExclusions(spec: RedirectSpec): number[] {
  return [...new Set([...ALWAYS_EXCLUDED_INBOUND_PORTS, ...spec.excludeInboundPorts])];
}

function inboundRules(spec: RedirectSpec): IptablesRule[] {
  const excluded = inboundExclusions(spec);
  const rules = excluded.map((port) => rule(CHAIN.inbound, ...tcpPort(port), '-j', 'RETURN'));
  if (spec.includeInboundPorts === '*') {
    rules.push(rule(CHAIN.inbound, '-p', 'tcp', '-j', CHAIN.inRedirect));
  } else {
    for (const port of spec.includeInboundPorts) {
      if (!excluded.includes(port)) {
        rules.push(rule(CHAIN.inbound, ...tcpPort(port), '-j', CHAIN.inRedirect));
      }
    }
  }
  rules.push(
    rule(
      CHAIN.inRedirect,
      '-p',
      'tcp',
      '-j',
      'REDIRECT',
      '--to-ports',
      String(spec.inboundCapturePort),
    ),
  );
  return rules;
}

/** `-d CIDR`; nothing for a /0, which iptables-save prints without `-d` as it matches everything. */
function destination(cidr: string): string[] {
  return cidr.endsWith('/0') ? [] : ['-d', cidr];
}

function outboundRules(spec: RedirectSpec, family: IpFamily): IptablesRule[] {
  const ofFamily = (cidrs: readonly string[]): string[] => [
    ...new Set(cidrs.filter((cidr) => cidrFamily(cidr) === family).map(canonicalCidr)),
  ];
  const rules = [
    rule(CHAIN.output, '-m', 'owner', '--uid-owner', String(spec.proxyUID), '-j', 'RETURN'),
    rule(CHAIN.output, '-m', 'owner', '--gid-owner', String(spec.proxyGID), '-j', 'RETURN'),
    rule(CHAIN.output, '-o', 'lo', '-j', 'RETURN'),
    ...spec.excludeOutboundPorts.map((port) =>
      rule(CHAIN.output, ...tcpPort(port), '-j', 'RETURN'),
    ),
    ...ofFamily(spec.excludeOutboundIPRanges).map((cidr) =>
      rule(CHAIN.output, ...destination(cidr), '-j', 'RETURN'),
    ),
  ];
  if (spec.includeOutboundIPRanges === '*') {
    rules.push(rule(CHAIN.output, '-j', CHAIN.redirect));
  } else {
    for (const cidr of ofFamily(spec.includeOutboundIPRanges)) {
      rules.push(rule(CHAIN.output, ...destination(cidr), '-j', CHAIN.redirect));
    }
  }
  rules.push(
    rule(
      CHAIN.redirect,
      '-p',
      'tcp',
      '-j',
      'REDIRECT',
      '--to-ports',
      String(spec.outboundCapturePort),
    ),
  );
  return rules;
}

/** The jumps from the built-in chains into ours: the only rules outside our chains. */
export function jumpRules(): IptablesRule[] {
  return [
    rule('PREROUTING', '-p', 'tcp', '-j', CHAIN.inbound),
    rule('OUTPUT', '-p', 'tcp', '-j', CHAIN.output),
  ];
}

export function planFamily(spec: RedirectSpec, family: IpFamily): FamilyPlan {
  return {
    family,
    chains: MOORING_CHAINS,
    rules: [...jumpRules(), ...inboundRules(spec), ...outboundRules(spec, family)],
  };
}

/** The whole plan: the same structure for IPv4 and IPv6, CIDRs split by family. */
export function planRedirect(spec: RedirectSpec): IptablesPlan {
  return { v4: planFamily(spec, 4), v6: planFamily(spec, 6) };
}

export function ruleLine(r: IptablesRule, op: '-A' | '-D' = '-A'): string {
  return [op, r.chain, ...r.spec].join(' ');
}

/**
 * The iptables-restore input for one family. Meant for `iptables-restore --noflush`: declaring a
 * user chain (`:NAME - [0:0]`) creates it or flushes it, and nothing else in the table is touched.
 * `cleanup` holds the `-D` lines that remove our earlier jumps (see `staleJumpDeletions`).
 */
export function renderRestore(plan: FamilyPlan, cleanup: readonly string[] = []): string {
  const lines = [
    '*nat',
    ...plan.chains.map((chain) => `:${chain} - [0:0]`),
    ...cleanup,
    ...plan.rules.map((r) => ruleLine(r)),
    'COMMIT',
  ];
  return `${lines.join('\n')}\n`;
}

const restoreCommand = (family: IpFamily): string =>
  family === 4 ? 'iptables-restore' : 'ip6tables-restore';

/**
 * What `--dry-run` prints: each family's restore input under a comment naming the command (the
 * backend's, when one is chosen). A real run on a namespace that already has our chains also
 * deletes the jumps an earlier run left (staleJumpDeletions), before the same lines.
 */
export function renderDryRun(
  plans: readonly FamilyPlan[],
  commandOf: (family: IpFamily) => string = restoreCommand,
): string {
  return plans
    .map(
      (plan) => `# IPv${plan.family}: ${commandOf(plan.family)} --noflush\n${renderRestore(plan)}`,
    )
    .join('');
}

const BUILTIN_CHAINS = new Set(['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING']);

/**
 * The `-D` lines that delete every rule of a built-in nat chain jumping into one of our chains,
 * read from `iptables-save -t nat` output. Run before our jumps are appended again, they make a
 * second run leave exactly one jump per chain, whatever an earlier run (or version) left behind.
 */
export function staleJumpDeletions(saveOutput: string): string[] {
  const deletions: string[] = [];
  let inNat = false;
  for (const raw of saveOutput.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('*')) inNat = line === '*nat';
    if (!inNat || !line.startsWith('-A ')) continue;
    const words = line.split(/\s+/);
    const chain = words[1] ?? '';
    const target = words.findIndex((w, i) => (w === '-j' || w === '-g') && i > 1);
    const into = target >= 0 ? (words[target + 1] ?? '') : '';
    if (BUILTIN_CHAINS.has(chain) && MOORING_CHAINS.includes(into)) {
      deletions.push(`-D ${line.slice(3)}`);
    }
  }
  return deletions;
}

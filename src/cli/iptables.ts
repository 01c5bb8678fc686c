// `mooring iptables`: the init container's program. Parses the flags the injector writes
// (src/injector/redirect.ts), plans the rules (src/injector/iptables-plan.ts) and either prints
// them (--dry-run) or applies them (src/adapters/iptables.ts).

import { networkInterfaces } from 'node:os';
import { InvalidArgumentError, Option, type Command } from 'commander';
import {
  applyPlan,
  backendCommands,
  childProcessExecutor,
  routableIPv6Addresses,
  type BackendChoice,
  type CommandExecutor,
  type Ipv6Mode,
} from '../adapters/iptables';
import { PORT, PROXY_GID, PROXY_UID } from '../constants';
import {
  ALWAYS_EXCLUDED_INBOUND_PORTS,
  inboundExclusions,
  planRedirect,
  renderDryRun,
} from '../injector/iptables-plan';
import {
  parseCidrList,
  parseCidrListOrWildcard,
  parsePort,
  parsePortList,
  parsePortListOrWildcard,
  type ParseResult,
} from '../injector/lists';
import { REDIRECT_FLAGS, type RedirectSpec } from '../injector/redirect';
import { createLogger } from '../observability/logger';
import { UsageError, type CliIO } from './io';

export interface IptablesCommandOptions {
  readonly spec: RedirectSpec;
  readonly dryRun: boolean;
  readonly ipv6: Ipv6Mode;
  readonly backend: BackendChoice;
}

/**
 * A commander argument parser from a list parser: the error names the value and why. A flag given
 * twice adds up (as Linkerd's proxy-init), and `*` with anything else is refused.
 */
function listParser<T>(
  parse: (value: string) => ParseResult<T[] | '*'>,
): (value: string, previous: T[] | '*' | undefined) => T[] | '*' {
  return (value, previous) => {
    const result = parse(value);
    if (!result.ok) throw new InvalidArgumentError(result.reason);
    if (previous === undefined) return result.value;
    if (previous === '*' || result.value === '*') {
      throw new InvalidArgumentError('"*" cannot be combined with other values');
    }
    return [...previous, ...result.value.filter((v) => !previous.includes(v))];
  };
}

function parsePortArg(value: string): number {
  const port = parsePort(value.trim());
  if (port === undefined) throw new InvalidArgumentError('expected a port (1-65535)');
  return port;
}

/** An option whose value goes through `parse`, with a default and how help shows it. */
function valueOption<T>(
  flags: string,
  description: string,
  parse: (value: string, previous: T) => T,
  defaultValue: T,
  defaultDescription?: string,
): Option {
  return new Option(flags, description).argParser(parse).default(defaultValue, defaultDescription);
}

const MAX_ID = 4294967294;

function parseIdArg(value: string): number {
  const text = value.trim();
  if (!/^[0-9]{1,10}$/.test(text) || Number(text) > MAX_ID) {
    throw new InvalidArgumentError(`expected a numeric id (0-${MAX_ID})`);
  }
  return Number(text);
}

/** The values commander hands to the action, keyed by its camel-cased flag names. */
interface RawOptions {
  proxyUid: number;
  proxyGid: number;
  inboundCapturePort: number;
  outboundCapturePort: number;
  // Absent when the flag is not given (see listParser).
  includeInboundPorts?: number[] | '*';
  excludeInboundPorts?: number[] | '*';
  includeOutboundIpRanges?: string[] | '*';
  excludeOutboundIpRanges?: string[] | '*';
  excludeOutboundPorts?: number[] | '*';
  dryRun?: boolean;
  ipv6: Ipv6Mode;
  backend: BackendChoice;
}

/** The two capture ports must differ, and neither may be a port that is never captured. */
function checkCapturePorts(inbound: number, outbound: number): void {
  const F = REDIRECT_FLAGS;
  if (inbound === outbound) {
    throw new UsageError(
      `${F.inboundCapturePort} and ${F.outboundCapturePort} must differ (both are ${inbound})`,
    );
  }
  for (const [flag, port] of [
    [F.inboundCapturePort, inbound],
    [F.outboundCapturePort, outbound],
  ] as const) {
    if (ALWAYS_EXCLUDED_INBOUND_PORTS.includes(port)) {
      throw new UsageError(
        `${flag} ${port} is one of the sidecar's own ports (${ALWAYS_EXCLUDED_INBOUND_PORTS.join(', ')}), which are never captured`,
      );
    }
  }
}

/** An exclusion list: absent is empty (its parser never gives `*`). */
const list = <T>(value: T[] | '*' | undefined): T[] => (Array.isArray(value) ? value : []);

export function toCommandOptions(raw: RawOptions): IptablesCommandOptions {
  return {
    spec: {
      proxyUID: raw.proxyUid,
      proxyGID: raw.proxyGid,
      inboundCapturePort: raw.inboundCapturePort,
      outboundCapturePort: raw.outboundCapturePort,
      includeInboundPorts: raw.includeInboundPorts ?? '*',
      excludeInboundPorts: list(raw.excludeInboundPorts),
      includeOutboundIPRanges: raw.includeOutboundIpRanges ?? '*',
      excludeOutboundIPRanges: list(raw.excludeOutboundIpRanges),
      excludeOutboundPorts: list(raw.excludeOutboundPorts),
    },
    dryRun: raw.dryRun === true,
    ipv6: raw.ipv6,
    backend: raw.backend,
  };
}

/** Runs the command once its flags are parsed; resolves to the exit code. */
export async function runIptables(
  options: IptablesCommandOptions,
  io: CliIO,
  exec: CommandExecutor,
  interfaces: () => ReturnType<typeof networkInterfaces> = networkInterfaces,
): Promise<number> {
  const plan = planRedirect(options.spec);
  if (options.dryRun) {
    const backend = backendCommands(options.backend === 'auto' ? 'default' : options.backend);
    io.stdout.write(
      renderDryRun(options.ipv6 === 'off' ? [plan.v4] : [plan.v4, plan.v6], (family) =>
        backend.restore(family),
      ),
    );
    return 0;
  }
  const log = createLogger('info', io.stderr);
  const report = await applyPlan(plan, exec, {
    backend: options.backend,
    ipv6: options.ipv6,
    routableIPv6: routableIPv6Addresses(interfaces()),
  });
  log.info(
    {
      backend: report.backend,
      version: report.version,
      detected: report.counts,
      inboundExcluded: inboundExclusions(options.spec),
    },
    'iptables backend',
  );
  if (
    options.backend === 'auto' &&
    report.counts.legacy === undefined &&
    report.counts.nft === undefined
  ) {
    // Rules another program left in the other backend would then be missed.
    log.warn(
      { backend: report.backend },
      'neither iptables-legacy-save nor iptables-nft-save runs: cannot tell which backend holds rules; using iptables on the PATH',
    );
  }
  for (const family of report.families) {
    if (family.applied) {
      log.info(
        { family: family.family, rules: family.rules, deletedJumps: family.deletedJumps },
        'iptables rules applied',
      );
    } else {
      log.warn({ family: family.family, reason: family.skipped }, 'iptables rules not applied');
    }
  }
  return 0;
}

export function registerIptables(
  program: Command,
  io: CliIO,
  setExit: (code: number) => void,
  exec: CommandExecutor = childProcessExecutor(),
  interfaces: () => ReturnType<typeof networkInterfaces> = networkInterfaces,
): void {
  const F = REDIRECT_FLAGS;
  program
    .command('iptables')
    .description(
      `install the init container's traffic redirect (nat table, IPv4 and IPv6); ` +
        `inbound ports ${ALWAYS_EXCLUDED_INBOUND_PORTS.join(', ')} are never captured`,
    )
    .option(
      '--dry-run',
      'print the rules (iptables-restore input for IPv4 and IPv6), change nothing',
    )
    .addOption(
      valueOption(
        `${F.proxyUID} <uid>`,
        'UID of the proxy, never redirected',
        parseIdArg,
        PROXY_UID,
      ),
    )
    .addOption(
      valueOption(
        `${F.proxyGID} <gid>`,
        'GID of the proxy, never redirected',
        parseIdArg,
        PROXY_GID,
      ),
    )
    .addOption(
      valueOption(
        `${F.inboundCapturePort} <port>`,
        'port inbound TCP is redirected to',
        parsePortArg,
        PORT.inboundCapture,
      ),
    )
    .addOption(
      valueOption(
        `${F.outboundCapturePort} <port>`,
        'port outbound TCP is redirected to',
        parsePortArg,
        PORT.outboundCapture,
      ),
    )
    .addOption(
      valueOption(
        `${F.includeInboundPorts} <ports>`,
        'inbound ports captured: comma-separated list or *',
        listParser(parsePortListOrWildcard),
        undefined,
        '*',
      ),
    )
    .addOption(
      valueOption(
        `${F.excludeInboundPorts} <ports>`,
        `inbound ports never captured, besides ${ALWAYS_EXCLUDED_INBOUND_PORTS.join(', ')}`,
        listParser(parsePortList),
        undefined,
        'none',
      ),
    )
    .addOption(
      valueOption(
        `${F.includeOutboundIPRanges} <cidrs>`,
        'outbound IPv4/IPv6 ranges captured: comma-separated CIDRs or *',
        listParser(parseCidrListOrWildcard),
        undefined,
        '*',
      ),
    )
    .addOption(
      valueOption(
        `${F.excludeOutboundIPRanges} <cidrs>`,
        'outbound IPv4/IPv6 ranges never captured',
        listParser(parseCidrList),
        undefined,
        'none',
      ),
    )
    .addOption(
      valueOption(
        `${F.excludeOutboundPorts} <ports>`,
        'outbound destination ports never captured',
        listParser(parsePortList),
        undefined,
        'none',
      ),
    )
    .addOption(
      new Option('--ipv6 <mode>', 'IPv6 rules: on, off, or auto (only if ip6tables works)')
        .choices(['auto', 'on', 'off'])
        .default('auto'),
    )
    .addOption(
      new Option('--backend <backend>', 'iptables backend: nft, legacy, or auto (detect)')
        .choices(['auto', 'nft', 'legacy'])
        .default('auto'),
    )
    .action(async (raw: RawOptions) => {
      checkCapturePorts(raw.inboundCapturePort, raw.outboundCapturePort);
      setExit(await runIptables(toCommandOptions(raw), io, exec, interfaces));
    });
}

import type { Wildcard } from './lists';

/**
 * What the init container's `mooring iptables` must install. The injector derives it from the
 * config and the traffic annotations and turns it into arguments (`redirectArgs`); the iptables
 * program parses the same flags back (src/cli/iptables.ts) and plans rules from it.
 */
export interface RedirectSpec {
  readonly proxyUID: number;
  readonly proxyGID: number;
  readonly inboundCapturePort: number;
  readonly outboundCapturePort: number;
  readonly includeInboundPorts: readonly number[] | Wildcard;
  /** Never captured inbound. The program always adds the agent, readiness and metrics ports. */
  readonly excludeInboundPorts: readonly number[];
  readonly includeOutboundIPRanges: readonly string[] | Wildcard;
  readonly excludeOutboundIPRanges: readonly string[];
  readonly excludeOutboundPorts: readonly number[];
}

export const REDIRECT_FLAGS = {
  proxyUID: '--proxy-uid',
  proxyGID: '--proxy-gid',
  inboundCapturePort: '--inbound-capture-port',
  outboundCapturePort: '--outbound-capture-port',
  includeInboundPorts: '--include-inbound-ports',
  excludeInboundPorts: '--exclude-inbound-ports',
  includeOutboundIPRanges: '--include-outbound-ip-ranges',
  excludeOutboundIPRanges: '--exclude-outbound-ip-ranges',
  excludeOutboundPorts: '--exclude-outbound-ports',
} as const satisfies Record<keyof RedirectSpec, string>;

function list(value: readonly (number | string)[] | Wildcard): string {
  return value === '*' ? '*' : value.join(',');
}

/** The `mooring iptables` arguments for a spec; empty exclusion lists are left out. */
export function redirectArgs(spec: RedirectSpec): string[] {
  const args = [
    REDIRECT_FLAGS.proxyUID,
    String(spec.proxyUID),
    REDIRECT_FLAGS.proxyGID,
    String(spec.proxyGID),
    REDIRECT_FLAGS.inboundCapturePort,
    String(spec.inboundCapturePort),
    REDIRECT_FLAGS.outboundCapturePort,
    String(spec.outboundCapturePort),
    REDIRECT_FLAGS.includeInboundPorts,
    list(spec.includeInboundPorts),
    REDIRECT_FLAGS.includeOutboundIPRanges,
    list(spec.includeOutboundIPRanges),
  ];
  const optional: [string, readonly (number | string)[]][] = [
    [REDIRECT_FLAGS.excludeInboundPorts, spec.excludeInboundPorts],
    [REDIRECT_FLAGS.excludeOutboundIPRanges, spec.excludeOutboundIPRanges],
    [REDIRECT_FLAGS.excludeOutboundPorts, spec.excludeOutboundPorts],
  ];
  for (const [flag, values] of optional) if (values.length > 0) args.push(flag, list(values));
  return args;
}

// Probe rewriting. The kubelet's HTTP, TCP and gRPC probes of an app container would be captured
// by the inbound redirect (and an mTLS-only proxy would refuse them), so each becomes an HTTP GET
// on the agent (15020) `/app-health/<container>/<livez|readyz|startupz>`, and the agent runs the
// original probe from inside the Pod. The originals go to the agent in MOORING_APP_PROBES, whose
// shape is the contract of src/api/app-probes.ts.
//
// Named ports are resolved against the container's own ports; a name that is not there leaves the
// probe as it is, with a warning. Exec probes never touch the network and stay as they are. Every
// timing field (delays, period, thresholds, timeout) stays on the rewritten probe.

import { appHealthPath, type AppProbe, type ProbeKind } from '../api/app-probes';
import {
  containerPorts,
  type Container,
  type GRPCAction,
  type HTTPGetAction,
  type Probe,
  type TCPSocketAction,
} from './pod';

export const PROBE_FIELDS = [
  ['livenessProbe', 'livez'],
  ['readinessProbe', 'readyz'],
  ['startupProbe', 'startupz'],
] as const satisfies readonly (readonly [string, ProbeKind])[];

export type ProbeField = (typeof PROBE_FIELDS)[number][0];

export interface ProbeRewrite {
  /** `[<container>/<kind>, original]`, in container then liveness/readiness/startup order. */
  readonly probes: readonly (readonly [string, AppProbe])[];
  readonly warnings: readonly string[];
}

const HANDLERS = ['httpGet', 'tcpSocket', 'grpc'] as const;
type Handler = (typeof HANDLERS)[number];

const isPort = (n: unknown): n is number =>
  typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535;

/** A port number, or why it cannot be one. Named ports are looked up in the container. */
function resolvePort(port: unknown, container: Container): number | string {
  if (typeof port === 'string' && /^[0-9]+$/.test(port)) port = Number(port);
  if (isPort(port)) return port;
  if (typeof port === 'string' && port !== '') {
    const named = containerPorts(container).find((p) => p.name === port);
    if (named !== undefined && isPort(named.containerPort)) return named.containerPort;
    return `port ${JSON.stringify(port)} is not a named port of the container`;
  }
  return `port ${JSON.stringify(port)} is not a port number`;
}

/** Why the agent could not send a probe's headers (each must be a name and a value, strings). */
function headersProblem(probe: Probe): string | undefined {
  const headers = (probe.httpGet as { httpHeaders?: unknown } | undefined)?.httpHeaders;
  if (headers === undefined || headers === null) return undefined;
  const ok =
    Array.isArray(headers) &&
    headers.every(
      (h: unknown) =>
        typeof (h as { name?: unknown } | null)?.name === 'string' &&
        typeof (h as { value?: unknown }).value === 'string',
    );
  return ok ? undefined : 'httpHeaders are not {name, value} strings (quote them in YAML)';
}

/** The probe's single network handler, or undefined (exec, none, or several). */
function networkHandler(probe: Probe): Handler | undefined {
  const present = HANDLERS.filter((h) => probe[h] !== undefined && probe[h] !== null);
  if (present.length !== 1 || probe.exec !== undefined) return undefined;
  return present[0];
}

function original(probe: Probe, handler: Handler, port: number): AppProbe {
  const timeoutSeconds = typeof probe.timeoutSeconds === 'number' ? probe.timeoutSeconds : 1;
  switch (handler) {
    case 'httpGet':
      return { httpGet: { ...(probe.httpGet as HTTPGetAction), port }, timeoutSeconds };
    case 'tcpSocket':
      return { tcpSocket: { ...(probe.tcpSocket as TCPSocketAction), port }, timeoutSeconds };
    case 'grpc':
      return { grpc: { ...(probe.grpc as GRPCAction), port }, timeoutSeconds };
  }
}

/** The probe with its handler replaced, in place, by the agent's HTTP GET; timings kept. */
function rewritten(probe: Probe, handler: Handler, path: string, agentPort: number): Probe {
  const out: Probe = {};
  for (const [key, value] of Object.entries(probe)) {
    if (key === handler) out.httpGet = { path, port: agentPort, scheme: 'HTTP' };
    else out[key] = value;
  }
  return out;
}

/**
 * Rewrites the HTTP, TCP and gRPC probes of `container` (a copy the caller owns: it is changed in
 * place) to the agent on `agentPort`. Returns the originals for MOORING_APP_PROBES and a warning
 * for each probe left as it was because its port cannot be resolved.
 */
export function rewriteProbes(container: Container, agentPort: number): ProbeRewrite {
  const probes: [string, AppProbe][] = [];
  const warnings: string[] = [];
  for (const [field, kind] of PROBE_FIELDS) {
    const probe = container[field];
    if (probe === undefined || probe === null || typeof probe !== 'object') continue;
    const handler = networkHandler(probe);
    if (handler === undefined) continue;
    const port = resolvePort((probe[handler] as { port?: unknown }).port, container);
    const problem =
      typeof port === 'string' ? port : handler === 'httpGet' ? headersProblem(probe) : undefined;
    if (problem !== undefined || typeof port === 'string') {
      warnings.push(
        `container ${container.name}: ${field} ${problem ?? ''}; the probe is not rewritten and the ` +
          'kubelet calls the app directly',
      );
      continue;
    }
    container[field] = rewritten(probe, handler, appHealthPath(container.name, kind), agentPort);
    probes.push([`${container.name}/${kind}`, original(probe, handler, port)]);
  }
  return { probes, warnings };
}

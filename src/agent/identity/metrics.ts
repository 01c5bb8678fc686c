// The agent's metrics, on the registry its composition root builds (one per agent, one per test).

import { Counter, Gauge, type Registry } from 'prom-client';

export interface AgentMetrics {
  readonly certificateExpiry: Gauge;
  readonly renewals: Counter;
  readonly renewalFailures: Counter<'reason'>;
}

export function createAgentMetrics(registry: Registry): AgentMetrics {
  const registers = [registry];
  return {
    certificateExpiry: new Gauge({
      name: 'mooring_agent_certificate_expiry_timestamp_seconds',
      help: "notAfter of the workload certificate in the agent's output directory (Unix seconds).",
      registers,
    }),
    renewals: new Counter({
      name: 'mooring_agent_renewals_total',
      help: 'Certificates obtained from the CA, verified and written out (the first one included).',
      registers,
    }),
    renewalFailures: new Counter({
      name: 'mooring_agent_renewal_failures_total',
      help: 'Failed certificate requests by reason (token, roots, unreachable, tls, rejected, unavailable, invalid_response, verification, write).',
      labelNames: ['reason'],
      registers,
    }),
  };
}

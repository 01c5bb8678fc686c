// Outlier detection (pure; time comes in): Envoy's consecutive 5xx and consecutive gateway
// errors, as Istio's DestinationRule `outlierDetection` sets them.
//
// - An attempt's outcome updates its endpoint's counters: a 5xx (or a connection failure, a
//   reset, a timeout: Envoy counts locally originated failures as 5xx too) adds to
//   `consecutive5xx`; a 502, 503 or 504 (or such a failure) adds to `consecutiveGatewayErrors`;
//   anything else sets both to 0.
// - When a counter reaches its threshold (0: that check is off), the endpoint is ejected at once
//   for `baseEjectionTime x (times ejected before + 1)`, unless that would take the ejected share
//   of the set above `maxEjectionPercent` (at least one endpoint may always be ejected when the
//   percentage allows any, as Envoy rounds).
// - An ejection ends by itself at its time (the balancer reads `ejectedUntil`); an endpoint that
//   stays healthy for an `interval` after its ejection ended has its multiplier lowered by one, as
//   Envoy's interval sweep does.

import type { OutlierDetectionPolicy } from '../../../api/mesh';
import type { UpstreamEndpoint } from './endpoints';

/** What an attempt came to: a response with its status, or a failure before any. */
export type AttemptOutcomeView =
  { readonly kind: 'response'; readonly status: number } | { readonly kind: 'failure' };

export interface OutlierDecision {
  readonly ejected: boolean;
  /** When the ejection ends (ms, the proxy's clock), when ejected. */
  readonly until?: number;
}

const isGatewayError = (o: AttemptOutcomeView): boolean =>
  o.kind === 'failure' || o.status === 502 || o.status === 503 || o.status === 504;
const is5xx = (o: AttemptOutcomeView): boolean => o.kind === 'failure' || o.status >= 500;

/** Records one attempt's outcome on `endpoint`, in the set `peers`; ejects it when due. */
export function recordOutcome(
  endpoint: UpstreamEndpoint,
  peers: readonly UpstreamEndpoint[],
  policy: OutlierDetectionPolicy,
  outcome: AttemptOutcomeView,
  now: number,
): OutlierDecision {
  const interval = policy.intervalMs ?? 10_000;
  // A healthy spell of an interval after the last ejection ended lowers the multiplier.
  if (
    endpoint.ejections > 0 &&
    endpoint.ejectedUntil > 0 &&
    now >= endpoint.ejectedUntil + interval
  ) {
    endpoint.ejections -= 1;
    endpoint.ejectedUntil = endpoint.ejections === 0 ? 0 : now;
  }
  if (endpoint.ejectedUntil > now) return { ejected: false };
  if (is5xx(outcome)) endpoint.consecutive5xx += 1;
  else endpoint.consecutive5xx = 0;
  if (isGatewayError(outcome)) endpoint.consecutiveGatewayErrors += 1;
  else endpoint.consecutiveGatewayErrors = 0;
  const max5xx = policy.consecutive5xxErrors ?? 5;
  const maxGateway = policy.consecutiveGatewayErrors ?? 0;
  const due =
    (max5xx > 0 && endpoint.consecutive5xx >= max5xx) ||
    (maxGateway > 0 && endpoint.consecutiveGatewayErrors >= maxGateway);
  if (!due) return { ejected: false };
  const maxPercent = policy.maxEjectionPercent ?? 10;
  let ejectedNow = 0;
  for (const p of peers) if (p !== endpoint && p.ejectedUntil > now) ejectedNow++;
  const allowed = Math.max(Math.floor((peers.length * maxPercent) / 100), maxPercent > 0 ? 1 : 0);
  if (ejectedNow + 1 > allowed) return { ejected: false };
  endpoint.ejections += 1;
  endpoint.consecutive5xx = 0;
  endpoint.consecutiveGatewayErrors = 0;
  const until = now + (policy.baseEjectionTimeMs ?? 30_000) * endpoint.ejections;
  endpoint.ejectedUntil = until;
  return { ejected: true, until };
}

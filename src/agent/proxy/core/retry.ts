// Envoy's retry conditions (`retry_on`), shared by HTTP/1.1 and HTTP/2 (pure): whether a failed
// attempt, a response status or a gRPC status calls for another attempt under a route's policy.

import type { RetryPolicy } from '../../../api/mesh';

/** How an attempt failed before any response (`protocol-error`: a response that cannot be read). */
export type AttemptFailure =
  'connect-failure' | 'tls' | 'reset' | 'refused-stream' | 'timeout' | 'protocol-error';

/** Whether `retryOn` covers an attempt that failed this way. */
export function retriableFailure(retryOn: readonly string[], reason: AttemptFailure): boolean {
  const any = (...conditions: string[]): boolean => conditions.some((c) => retryOn.includes(c));
  switch (reason) {
    case 'connect-failure':
    case 'tls':
      return any('connect-failure', '5xx', 'gateway-error');
    case 'refused-stream':
      return any('refused-stream', '5xx', 'reset');
    default:
      // A reset, a response that cannot be read, or a per-try timeout (Envoy retries them like
      // a reset).
      return any('reset', '5xx', 'gateway-error');
  }
}

/** Whether a response status calls for a retry under a policy (Envoy's retry_on). */
export function retriableStatus(p: RetryPolicy, status: number): boolean {
  for (const cond of p.retryOn) {
    switch (cond) {
      case '5xx':
        if (status >= 500) return true;
        break;
      case 'gateway-error':
        if (status === 502 || status === 503 || status === 504) return true;
        break;
      case 'retriable-4xx':
        if (status === 409) return true;
        break;
      case 'retriable-status-codes':
        if (p.retriableStatusCodes?.includes(status) === true) return true;
        break;
      default:
        break;
    }
  }
  return false;
}

/** Envoy's gRPC retry conditions on the `grpc-status` of a trailers-only answer. */
export function grpcRetriable(retryOn: readonly string[], status: string): boolean {
  switch (status) {
    case '1':
      return retryOn.includes('cancelled');
    case '4':
      return retryOn.includes('deadline-exceeded');
    case '8':
      return retryOn.includes('resource-exhausted');
    case '13':
      return retryOn.includes('internal');
    case '14':
      return retryOn.includes('unavailable');
    default:
      return false;
  }
}

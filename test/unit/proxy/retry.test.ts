// Envoy's retry conditions on tables, as both HTTP versions apply them: a failed attempt by how it
// failed, a response status, a gRPC status.
import type { RetryPolicy } from '../../../src/api/mesh';
import {
  grpcRetriable,
  retriableFailure,
  retriableStatus,
  type AttemptFailure,
} from '../../../src/agent/proxy/core/retry';

describe('retry conditions', () => {
  it.each<[AttemptFailure, string[], string[]]>([
    ['connect-failure', ['connect-failure', '5xx', 'gateway-error'], ['reset', 'refused-stream']],
    ['tls', ['connect-failure', '5xx', 'gateway-error'], ['reset', 'retriable-4xx']],
    ['reset', ['reset', '5xx', 'gateway-error'], ['connect-failure', 'refused-stream']],
    ['refused-stream', ['refused-stream', 'reset', '5xx'], ['gateway-error', 'connect-failure']],
    ['timeout', ['reset', '5xx', 'gateway-error'], ['connect-failure', 'unavailable']],
    [
      'protocol-error',
      ['reset', '5xx', 'gateway-error'],
      ['connect-failure', 'refused-stream', 'unavailable'],
    ],
  ])('an attempt failing with %s is retried under %j, not under %j', (reason, yes, no) => {
    for (const c of yes) expect(retriableFailure([c], reason)).toBe(true);
    for (const c of no) expect(retriableFailure([c], reason)).toBe(false);
  });

  const policy = (retryOn: string[], codes?: number[]): RetryPolicy => ({
    attempts: 2,
    retryOn,
    ...(codes === undefined ? {} : { retriableStatusCodes: codes }),
  });

  it.each<[string, RetryPolicy, number, boolean]>([
    ['5xx on 500', policy(['5xx']), 500, true],
    ['5xx on 404', policy(['5xx']), 404, false],
    ['gateway-error on 503', policy(['gateway-error']), 503, true],
    ['gateway-error on 500', policy(['gateway-error']), 500, false],
    ['retriable-4xx on 409', policy(['retriable-4xx']), 409, true],
    [
      'retriable-status-codes on a listed code',
      policy(['retriable-status-codes'], [418]),
      418,
      true,
    ],
    ['retriable-status-codes on another', policy(['retriable-status-codes'], [418]), 419, false],
    ['the default conditions on 503', policy(['connect-failure', 'refused-stream']), 503, false],
  ])('a response: %s', (_name, p, status, want) => {
    expect(retriableStatus(p, status)).toBe(want);
  });

  it('takes the gRPC statuses of a trailers-only answer by their condition names', () => {
    const all = ['cancelled', 'deadline-exceeded', 'resource-exhausted', 'internal', 'unavailable'];
    const retried = (status: string): boolean => grpcRetriable(all, status);
    expect(['1', '4', '8', '13', '14'].map(retried)).toEqual([true, true, true, true, true]);
    expect(['0', '2', '5', '16'].map(retried)).toEqual([false, false, false, false]);
    expect(grpcRetriable(['unavailable'], '1')).toBe(false);
    expect(grpcRetriable(['cancelled'], '14')).toBe(false);
  });
});

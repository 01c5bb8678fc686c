import { backoffDelayMs } from '../../src/backoff';
import { RENEWAL_BACKOFF } from '../../src/agent/identity/lifecycle';

describe('backoffDelayMs', () => {
  const policy = { initialMs: 1000, maxMs: 60_000, jitterFraction: 0.2 };
  const noJitter = { ...policy, jitterFraction: 0 };

  it('doubles from the first delay', () => {
    expect([1, 2, 3, 4, 5].map((a) => backoffDelayMs(a, noJitter, 0.5))).toEqual([
      1000, 2000, 4000, 8000, 16000,
    ]);
  });

  it('stops at the maximum, jitter included', () => {
    expect(backoffDelayMs(30, noJitter, 0.5)).toBe(60_000);
    expect(backoffDelayMs(1000, policy, 0.99)).toBeLessThanOrEqual(60_000);
  });

  it('jitters by at most the fraction of the delay', () => {
    expect(backoffDelayMs(3, policy, 0)).toBe(3200);
    expect(backoffDelayMs(3, policy, 0.5)).toBe(4000);
  });

  it("is the agent's renewal retry rule: 1 s doubling, ±20%, at most 60 s", () => {
    expect(RENEWAL_BACKOFF).toEqual(policy);
  });
});

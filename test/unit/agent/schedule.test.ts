import {
  backoffCapMs,
  backoffDelayMs,
  DEFAULT_BACKOFF,
  effectiveStart,
  renewalTime,
} from '../../../src/agent/schedule';

const t = (s: number): Date => new Date(Date.UTC(2030, 0, 1) + s * 1000);
const policy = { renewFraction: 0.5, jitterFraction: 0.1 };

describe('renewalTime', () => {
  it('renews at half of the lifetime when the jitter draw is the middle', () => {
    expect(renewalTime(t(0), t(100), policy, 0.5)).toEqual(t(50));
  });

  it('renews at the given fraction of the lifetime', () => {
    expect(renewalTime(t(0), t(100), { renewFraction: 0.8, jitterFraction: 0 }, 0.3)).toEqual(
      t(80),
    );
  });

  it('moves by at most ±10% of the window between the renewal time and expiry', () => {
    expect(renewalTime(t(0), t(100), policy, 0)).toEqual(t(45));
    expect(renewalTime(t(0), t(100), policy, 0.999999).getTime()).toBeCloseTo(t(55).getTime(), -1);
  });

  it('spreads renewals of certificates issued together', () => {
    const times = new Set(
      [0.1, 0.3, 0.5, 0.7, 0.9].map((r) => renewalTime(t(0), t(100), policy, r).getTime()),
    );
    expect(times.size).toBe(5);
  });

  it('never renews after expiry, whatever the jitter', () => {
    const at = renewalTime(t(0), t(100), { renewFraction: 0.99, jitterFraction: 5 }, 0.99);
    expect(at.getTime()).toBeLessThanOrEqual(t(100).getTime());
  });
});

describe('effectiveStart', () => {
  it('counts from the receipt, not from the backdated notBefore', () => {
    expect(effectiveStart(t(-60), t(120), t(0))).toEqual(t(0));
  });

  it('clamps a receipt before notBefore to notBefore', () => {
    expect(effectiveStart(t(10), t(120), t(0))).toEqual(t(10));
  });

  it('clamps a receipt after notAfter to notAfter', () => {
    expect(effectiveStart(t(0), t(120), t(500))).toEqual(t(120));
  });
});

describe('backoff', () => {
  const noJitter = { ...DEFAULT_BACKOFF, jitterFraction: 0 };

  it('doubles from 1 s', () => {
    expect([1, 2, 3, 4, 5].map((a) => backoffDelayMs(a, 60_000, 0.5, noJitter))).toEqual([
      1000, 2000, 4000, 8000, 16000,
    ]);
  });

  it('stops at the cap', () => {
    expect(backoffDelayMs(30, 60_000, 0.5, noJitter)).toBe(60_000);
    expect(backoffDelayMs(1000, 60_000, 0.99)).toBeLessThanOrEqual(60_000);
  });

  it('jitters by at most ±20%', () => {
    expect(backoffDelayMs(3, 60_000, 0)).toBe(3200);
    expect(backoffDelayMs(3, 60_000, 0.5)).toBe(4000);
  });

  it('caps at a quarter of the lifetime for short-lived certificates', () => {
    expect(backoffCapMs(8_000)).toBe(2_000);
  });

  it('caps at 60 s for long-lived certificates and at least at 1 s', () => {
    expect(backoffCapMs(86_400_000)).toBe(60_000);
    expect(backoffCapMs(100)).toBe(1_000);
  });
});

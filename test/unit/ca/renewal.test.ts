import { effectiveStart, renewalTime, retryCapMs } from '../../../src/ca/renewal';

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

describe('retryCapMs', () => {
  const bounds = { minMs: 1_000, maxMs: 60_000 };

  it('caps at a quarter of the lifetime for short-lived certificates', () => {
    expect(retryCapMs(8_000, bounds)).toBe(2_000);
  });

  it('caps at the maximum for long-lived certificates and at least at the minimum', () => {
    expect(retryCapMs(86_400_000, bounds)).toBe(60_000);
    expect(retryCapMs(100, bounds)).toBe(1_000);
  });
});

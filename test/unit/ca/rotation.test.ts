import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Authority } from '../../../src/ca/authority';
import { buildRoot } from '../../../src/ca/issuer';
import { privateKeyToPem } from '../../../src/ca/keys';
import {
  activateDue,
  applyDue,
  autoRotationAt,
  checkState,
  initialState,
  nextRotationAt,
  nextTransitionAt,
  removeDue,
  rotationDue,
  startRotation,
  type CAState,
  type NewRoot,
  type RotationPolicy,
} from '../../../src/ca/rotation';
import { MooringError } from '../../../src/errors';
import {
  cachedKeyGenerator,
  caConfig,
  countingRandom,
  csrPem,
  DAY,
  fixedClock,
  MemoryStore,
  T0,
  testKey,
  verifiesAgainst,
} from './fixtures';

const at = (days: number): Date => new Date(T0.getTime() + days * DAY * 1000);
const policy: RotationPolicy = {
  auto: true,
  beforeExpirySeconds: 30 * DAY,
  propagationDelaySeconds: DAY,
  maxIssuedLifetimeSeconds: 10 * DAY,
  graceSeconds: 60,
};

function root(slot: number, createdDay: number, lifetimeDays = 100): NewRoot {
  const key = testKey('ecdsa-p256', slot);
  return {
    certPem: buildRoot({
      key,
      commonName: `Root ${slot}`,
      organization: 'cluster.local',
      now: at(createdDay),
      lifetimeSeconds: lifetimeDays * DAY,
      backdateSeconds: 0,
      serial: Buffer.from([slot + 1]),
    }),
    keyPem: privateKeyToPem(key.privateKey),
  };
}

const statuses = (s: CAState): string[] => s.roots.map((r) => r.status);

describe('rotation transitions (pure)', () => {
  const s0 = initialState(root(1, 0), at(0));

  it('a new CA has one active root', () => {
    expect(statuses(s0)).toEqual(['active']);
    expect(checkState(JSON.parse(JSON.stringify(s0)))).toEqual(s0);
  });

  it('starting a rotation adds a pending root that activates after the propagation delay', () => {
    const { state, events } = startRotation(s0, at(70), root(2, 70), policy);
    expect(statuses(state)).toEqual(['active', 'pending']);
    expect(state.roots[1]?.activateAt).toBe(at(71).toISOString());
    expect(events).toEqual([
      expect.objectContaining({ event: 'rotation-started', activateAt: at(71) }),
    ]);
  });

  it('refuses a second rotation while one is under way', () => {
    const { state } = startRotation(s0, at(70), root(2, 70), policy);
    expect(() => startRotation(state, at(70), root(3, 70), policy)).toThrow(
      expect.objectContaining({ code: 'CA_ERR_ROTATION' }),
    );
  });

  it.each([
    ['does nothing one second before activateAt', 71 - 1 / DAY, ['active', 'pending']],
    ['activates the new root at activateAt and retires the old one', 71, ['retired', 'active']],
  ])('activation %s', (_name, day, expected) => {
    const pending = startRotation(s0, at(70), root(2, 70), policy).state;
    expect(statuses(activateDue(pending, at(day), policy).state)).toEqual(expected);
  });

  it('keeps the retired root until everything it signed has expired', () => {
    const pending = startRotation(s0, at(70), root(2, 70), policy).state;
    const activated = activateDue(pending, at(72), policy).state;
    // Activated at day 72: the last certificate from the old root was issued then, for at most
    // 10 days; plus the 60 s grace.
    const removeAt = new Date(at(82).getTime() + 60_000);
    expect(activated.roots[0]?.removeAt).toBe(removeAt.toISOString());
    expect(statuses(removeDue(activated, new Date(removeAt.getTime() - 1)).state)).toEqual([
      'retired',
      'active',
    ]);
    expect(statuses(removeDue(activated, removeAt).state)).toEqual(['active']);
  });

  it('never keeps a retired root past its own expiry', () => {
    const pending = startRotation(s0, at(95), root(2, 95), policy).state;
    const activated = activateDue(pending, at(96), policy).state;
    expect(activated.roots[0]?.removeAt).toBe(at(100).toISOString());
  });

  it.each([
    ['is not due before the window', 70 - 1 / DAY, false],
    ['is due inside the window (30 days before expiry)', 70, true],
  ])('automatic rotation %s', (_name, day, due) => {
    expect(rotationDue(s0, at(day), policy)).toBe(due);
  });

  it('is never due with automatic rotation off', () => {
    expect(rotationDue(s0, at(99), { ...policy, auto: false })).toBe(false);
    expect(autoRotationAt(s0, { ...policy, auto: false })).toBeNull();
  });

  it('is not due while a rotation is under way', () => {
    const pending = startRotation(s0, at(70), root(2, 70), policy).state;
    expect(rotationDue(pending, at(80), policy)).toBe(false);
  });

  it('reports the next rotation: the automatic start, or the pending activation', () => {
    expect(nextRotationAt(s0, policy)).toEqual(at(70));
    const pending = startRotation(s0, at(10), root(2, 10), policy).state;
    expect(nextRotationAt(pending, policy)).toEqual(at(11));
    expect(nextTransitionAt(pending, policy)).toEqual(at(11));
  });

  it('applies activation and removal together when both are due', () => {
    const pending = startRotation(s0, at(10), root(2, 10), policy).state;
    const { state, events } = applyDue(pending, at(30), policy);
    expect(statuses(state)).toEqual(['retired', 'active']);
    expect(events.map((e) => e.event)).toEqual(['root-activated']);
    expect(applyDue(state, at(30), policy).events).toEqual([]);
  });

  it.each<[string, unknown, string]>([
    ['not an object', 'x', 'not an object'],
    ['an unknown schema', { schema: 2, roots: [] }, 'schema'],
    ['no active root', { schema: 1, roots: [] }, '0 active roots'],
    [
      'a root without key',
      { schema: 1, roots: [{ certPem: 'x', status: 'active' }] },
      'no certificate or key',
    ],
    [
      'a pending root without activateAt',
      { schema: 1, roots: [{ certPem: 'x', keyPem: 'y', status: 'pending' }] },
      'activateAt',
    ],
  ])('refuses a stored state with %s', (_name, state, message) => {
    expect(() => checkState(state)).toThrow(message);
    expect(() => checkState(state)).toThrow(MooringError);
  });
});

describe('a whole rotation with a fixed clock', () => {
  jest.setTimeout(120_000);

  interface Issued {
    readonly pem: string;
    readonly cert: X509Certificate;
    readonly issuedAt: Date;
    readonly kind: 'workload' | 'serving';
  }

  it('every certificate issued before, during and after verifies against the bundle served at each moment it is valid', async () => {
    const clock = fixedClock(T0);
    const config = caConfig({
      rootLifetimeSeconds: 100 * DAY,
      workloadMaxTtlSeconds: 7 * DAY,
      servingCertLifetimeSeconds: 10 * DAY,
      rotation: {
        auto: true,
        beforeExpirySeconds: 30 * DAY,
        propagationDelaySeconds: DAY,
        checkIntervalSeconds: 60,
      },
    });
    const authority = await Authority.open(
      {
        trustDomain: 'cluster.local',
        ca: config,
        clock,
        random: countingRandom(),
        store: new MemoryStore(),
        generateKey: cachedKeyGenerator(),
      },
      { create: true },
    );
    const csr = csrPem();
    const issued: Issued[] = [];
    const firstInBundle = new Map<string, Date>();
    const rootPems = new Map<string, X509Certificate>();
    const events: string[] = [];
    const openssl: { issued: Issued; at: Date; bundle: readonly string[] }[] = [];
    const stepSeconds = 6 * 3600;
    const ttls = [3600, DAY, 7 * DAY];

    for (let step = 0; step * stepSeconds <= 200 * DAY; step++) {
      clock.set(new Date(T0.getTime() + step * stepSeconds * 1000));
      if (step === 20 * 4) {
        const manual = await authority.rotate();
        events.push(...manual.events.map((e) => `${e.event}@${step / 4}`));
      }
      const tick = await authority.tick();
      events.push(...tick.events.map((e) => `${e.event}@${step / 4}`));
      const now = clock.now();
      const bundle = authority.trustBundle();
      for (const pem of bundle) {
        const cert = new X509Certificate(pem);
        if (!firstInBundle.has(cert.fingerprint256)) firstInBundle.set(cert.fingerprint256, now);
        rootPems.set(cert.fingerprint256, cert);
      }

      // Every certificate valid now verifies against the bundle served now.
      for (const c of issued) {
        if (
          now.getTime() < Date.parse(c.cert.validFrom) ||
          now.getTime() > Date.parse(c.cert.validTo)
        )
          continue;
        if (!verifiesAgainst(c.pem, bundle, now)) {
          throw new Error(
            `${c.kind} certificate issued at ${c.issuedAt.toISOString()} does not verify at ${now.toISOString()}`,
          );
        }
        const left = Date.parse(c.cert.validTo) - now.getTime();
        if (left > 0 && left <= stepSeconds * 1000 && (bundle.length > 1 || step % 20 === 0)) {
          openssl.push({ issued: c, at: now, bundle });
        }
      }

      const ttl = ttls[step % ttls.length] as number;
      const chain = await authority.issueWorkload({
        csrPem: csr,
        spiffeId: 'spiffe://cluster.local/ns/a/sa/b',
        ttlSeconds: ttl,
      });
      issued.push({
        pem: chain.certificateChain[0] as string,
        cert: new X509Certificate(chain.certificateChain[0] as string),
        issuedAt: now,
        kind: 'workload',
      });
      if (step % 4 === 0) {
        const serving = await authority.issueServing({
          csrPem: csr,
          dnsNames: ['localhost'],
          ipAddresses: ['127.0.0.1'],
          ttlSeconds: 10 * DAY,
        });
        issued.push({
          pem: serving.certificateChain[0] as string,
          cert: new X509Certificate(serving.certificateChain[0] as string),
          issuedAt: now,
          kind: 'serving',
        });
      }
      // The new certificate verifies right away, against the bundle it came with.
      expect(verifiesAgainst(chain.certificateChain[0] as string, chain.trustBundle, now)).toBe(
        true,
      );
    }

    // Manual rotation on day 20, automatic ones after: each activates a day later, and the
    // retired root leaves when nothing it signed can be valid any more.
    expect(events).toEqual([
      'rotation-started@20',
      'root-activated@21',
      'root-removed@31.25',
      'rotation-started@90',
      'root-activated@91',
      'root-removed@101.25',
      'rotation-started@160',
      'root-activated@161',
      'root-removed@171.25',
    ]);

    // Propagation: a root signs its first certificate only after a full propagation delay in
    // the bundle (the first root excepted: nothing trusted anything before it).
    const [firstRoot] = [...firstInBundle.keys()];
    for (const c of issued) {
      const issuer = [...rootPems.values()].find((r) => c.cert.checkIssued(r));
      if (issuer === undefined) throw new Error('no issuing root found');
      if (issuer.fingerprint256 === firstRoot) continue;
      const joined = firstInBundle.get(issuer.fingerprint256) as Date;
      expect(c.issuedAt.getTime() - joined.getTime()).toBeGreaterThanOrEqual(DAY * 1000);
    }

    // And openssl agrees, strictly, for certificates close to their expiry.
    const dir = mkdtempSync(join(tmpdir(), 'mooring-rotation-'));
    // Near their expiry, in particular while two roots are in the bundle (the old root's last
    // certificates), sampled to keep openssl runs few.
    const during = openssl.filter((o) => o.bundle.length > 1);
    const outside = openssl.filter((o) => o.bundle.length === 1);
    expect(during.length).toBeGreaterThan(10);
    const every = (list: typeof openssl, n: number) =>
      list.filter((_, i) => i % Math.max(1, Math.floor(list.length / n)) === 0);
    const sample = [...every(during, 15), ...every(outside, 10)];
    for (const [i, o] of sample.entries()) {
      writeFileSync(join(dir, `leaf${i}.pem`), o.issued.pem);
      writeFileSync(join(dir, `bundle${i}.pem`), o.bundle.join(''));
      const purpose = o.issued.kind === 'serving' ? 'sslserver' : 'sslclient';
      const out = execFileSync('openssl', [
        'verify',
        '-x509_strict',
        '-purpose',
        purpose,
        '-attime',
        String(Math.floor(o.at.getTime() / 1000)),
        '-CAfile',
        join(dir, `bundle${i}.pem`),
        join(dir, `leaf${i}.pem`),
      ]).toString();
      expect(out).toContain(': OK');
    }
  });
});

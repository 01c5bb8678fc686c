// The serving certificate's lifecycle (src/adapters/tls-reloader.ts) against the real CA with a
// controlled clock: issue, renew at the configured fraction, renew when the CA's issuer changes,
// install into the server, keep the old one when a renewal fails.

import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openLocalCA } from '../../src/adapters/local-ca';
import { TlsReloader, type SecureContextTarget } from '../../src/adapters/tls-reloader';
import type { Authority } from '../../src/ca/authority';
import type { CertificateService, Clock } from '../../src/ca/ports';
import { validateConfig } from '../../src/config/validate';

class ManualClock implements Clock {
  constructor(private t: number) {}
  now(): Date {
    return new Date(this.t);
  }
  advance(seconds: number): void {
    this.t += seconds * 1000;
  }
}

const silent = { info: () => undefined, error: () => undefined };

class RecordingTarget implements SecureContextTarget {
  readonly installed: { key: string; cert: string }[] = [];
  setSecureContext(options: { key: string; cert: string }): void {
    this.installed.push(options);
  }
}

let dir: string;
let clock: ManualClock;
let authority: Authority;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'mooring-tls-'));
  clock = new ManualClock(Date.parse('2030-01-01T00:00:00Z'));
  const config = validateConfig({ server: { dataDir: dir } });
  ({ authority } = await openLocalCA({ config, dataDir: dir, create: true, clock }));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

function reloader(
  certificates: CertificateService = authority,
  lifetimeSeconds = 3000,
): TlsReloader {
  return new TlsReloader({
    certificates,
    clock,
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
    lifetimeSeconds,
    renewFraction: 0.5,
    logger: silent,
  });
}

describe('TlsReloader', () => {
  it('issues a certificate for the names, valid now, whose key matches, and installs it', async () => {
    const r = reloader();
    const target = new RecordingTarget();
    r.attach(target);
    const cert = await r.renew();
    const leaf = new X509Certificate(cert.cert);
    expect(leaf.subjectAltName).toBe('DNS:localhost, IP Address:127.0.0.1');
    expect(leaf.checkPrivateKey(createPrivateKey(cert.key))).toBe(true);
    expect(leaf.verify(new X509Certificate(authority.trustBundle()[0] ?? '').publicKey)).toBe(true);
    expect(r.valid(clock.now())).toBe(true);
    expect(target.installed).toEqual([{ key: cert.key, cert: cert.cert }]);
  });

  it('renews at the configured fraction of the lifetime, counted from when it was issued', async () => {
    const r = reloader();
    const first = await r.renew();
    expect(r.renewAt()?.toISOString()).toBe(
      new Date(clock.now().getTime() + 1500_000).toISOString(),
    );
    clock.advance(1499);
    expect(await r.check()).toBe(false);
    expect(r.current()?.serialNumber).toBe(first.serialNumber);
    clock.advance(2);
    expect(await r.check()).toBe(true);
    expect(r.current()?.serialNumber).not.toBe(first.serialNumber);
  });

  it('is not valid once the certificate has expired (readiness turns false)', async () => {
    const r = reloader();
    await r.renew();
    clock.advance(3001);
    expect(r.valid(clock.now())).toBe(false);
  });

  it('renews as soon as the CA issues from a new root, before the renewal time', async () => {
    const r = reloader(authority, 30 * 24 * 3600);
    const first = await r.renew();
    await authority.rotate(clock.now());
    expect(await r.check()).toBe(false); // the new root is only pending
    clock.advance(validateConfig({}).ca.rotation.propagationDelaySeconds + 1);
    await authority.tick(clock.now());
    expect(await r.check()).toBe(true);
    const second = r.current();
    expect(second?.issuerFingerprint).not.toBe(first.issuerFingerprint);
    expect(second?.issuerFingerprint).toBe(authority.status().issuer.fingerprint);
  });

  it('keeps the current certificate when a renewal fails', async () => {
    let fail = false;
    const flaky: CertificateService = {
      spiffeIdOf: (id) => authority.spiffeIdOf(id),
      issueWorkload: (req) => authority.issueWorkload(req),
      issueServing: (req) =>
        fail ? Promise.reject(new Error('CA unavailable')) : authority.issueServing(req),
      trustBundle: () => authority.trustBundle(),
      status: () => authority.status(),
      ready: () => authority.ready(),
    };
    const r = reloader(flaky);
    const target = new RecordingTarget();
    r.attach(target);
    const first = await r.renew();
    fail = true;
    clock.advance(2000);
    await expect(r.check()).rejects.toThrow('CA unavailable');
    expect(r.current()).toBe(first);
    expect(target.installed).toHaveLength(1);
    expect(r.valid(clock.now())).toBe(true);
  });

  it('issues one certificate for concurrent renewals', async () => {
    const r = reloader();
    const [a, b] = await Promise.all([r.renew(), r.renew()]);
    expect(a).toBe(b);
  });
});

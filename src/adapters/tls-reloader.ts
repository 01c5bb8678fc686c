// The HTTPS serving certificate of `mooring serve`: issued by our own CA (fresh ECDSA P-256 key,
// kept in memory only), renewed at a fraction of its lifetime or when the CA's issuer changes,
// and swapped into the running server with setSecureContext(): open connections keep their
// session, new handshakes get the new certificate.

import { generateKeyPairSync, X509Certificate } from 'node:crypto';
import { buildCsr } from '../ca/csr-writer';
import type { CertificateService, Clock } from '../ca/ports';
import { effectiveStart, renewalTime } from '../ca/renewal';

export interface ServingCertificate {
  /** PEM PKCS#8 private key. */
  readonly key: string;
  /** PEM chain: leaf first, then intermediates. */
  readonly cert: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
  /** When we received it: renewal counts from here, not from the (backdated) notBefore. */
  readonly issuedAt: Date;
  readonly serialNumber: string;
  /** Fingerprint of the CA issuer that signed it, to notice an issuer change. */
  readonly issuerFingerprint: string;
}

/** What setSecureContext is called on: an https.Server or a tls.Server. */
export interface SecureContextTarget {
  setSecureContext(options: { key: string; cert: string }): void;
}

export interface ReloaderLogger {
  info(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface TlsReloaderOptions {
  readonly certificates: CertificateService;
  readonly clock: Clock;
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  readonly lifetimeSeconds: number;
  /** Renew once this fraction of the lifetime has passed (config.ca.servingCertRenewFraction). */
  readonly renewFraction: number;
  readonly logger: ReloaderLogger;
  /** Wait after a failed renewal before trying again. */
  readonly retryMs?: number;
}

// --- the reloader -------------------------------------------------------------------------------

const MAX_TIMER_MS = 2_147_483_647;

export class TlsReloader {
  private currentCert: ServingCertificate | null = null;
  private readonly targets: SecureContextTarget[] = [];
  private timer: NodeJS.Timeout | null = null;
  private renewing: Promise<ServingCertificate> | null = null;
  private stopped = false;

  constructor(private readonly options: TlsReloaderOptions) {}

  current(): ServingCertificate | null {
    return this.currentCert;
  }

  /** When the current certificate is due for renewal. */
  renewAt(): Date | null {
    const cert = this.currentCert;
    if (cert === null) return null;
    // The agent's rule (src/ca/renewal.ts), without jitter: one certificate per process.
    return renewalTime(
      effectiveStart(cert.notBefore, cert.notAfter, cert.issuedAt),
      cert.notAfter,
      { renewFraction: this.options.renewFraction, jitterFraction: 0 },
      0.5,
    );
  }

  /** True when there is a certificate and `now` is within its validity. */
  valid(now: Date = this.options.clock.now()): boolean {
    const cert = this.currentCert;
    return cert !== null && now >= cert.notBefore && now < cert.notAfter;
  }

  /** Servers that get every new certificate. */
  attach(target: SecureContextTarget): void {
    this.targets.push(target);
  }

  /** Issues a new certificate now and installs it into every attached server. */
  renew(): Promise<ServingCertificate> {
    this.renewing ??= this.issue().finally(() => {
      this.renewing = null;
    });
    return this.renewing;
  }

  /** Renews when due or when the CA's issuer has changed since; true if it renewed. */
  async check(): Promise<boolean> {
    const cert = this.currentCert;
    const due = this.renewAt();
    const issuerChanged =
      cert !== null &&
      this.options.certificates.ready() &&
      this.options.certificates.status().issuer.fingerprint !== cert.issuerFingerprint;
    if (cert !== null && due !== null && this.options.clock.now() < due && !issuerChanged)
      return false;
    await this.renew();
    return true;
  }

  /** Issues the first certificate (if none yet) and schedules every renewal after it. */
  async start(): Promise<ServingCertificate> {
    this.stopped = false;
    const cert = this.currentCert ?? (await this.renew());
    this.schedule();
    return cert;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(delayMs?: number): void {
    if (this.stopped) return;
    if (this.timer !== null) clearTimeout(this.timer);
    const due = this.renewAt();
    const wait =
      delayMs ??
      (due === null ? 0 : Math.max(0, due.getTime() - this.options.clock.now().getTime()));
    this.timer = setTimeout(
      () => {
        this.timer = null;
        this.check().then(
          () => this.schedule(),
          (err: unknown) => {
            this.options.logger.error(
              { err },
              'serving certificate renewal failed; keeping the current one',
            );
            this.schedule(this.options.retryMs ?? 30_000);
          },
        );
      },
      Math.min(wait, MAX_TIMER_MS),
    );
    this.timer.unref();
  }

  private async issue(): Promise<ServingCertificate> {
    const { certificates, dnsNames, ipAddresses, lifetimeSeconds, logger } = this.options;
    const key = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const { privateKey } = key;
    const chain = await certificates.issueServing({
      csrPem: buildCsr(key),
      dnsNames,
      ipAddresses,
      ttlSeconds: lifetimeSeconds,
    });
    const leafPem = chain.certificateChain[0];
    if (leafPem === undefined) throw new Error('the CA returned an empty chain');
    const leaf = new X509Certificate(leafPem);
    const cert: ServingCertificate = {
      key: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString(),
      cert: chain.certificateChain.map((pem) => `${pem.trim()}\n`).join(''),
      notBefore: new Date(leaf.validFrom),
      notAfter: new Date(leaf.validTo),
      issuedAt: this.options.clock.now(),
      serialNumber: leaf.serialNumber,
      issuerFingerprint: certificates.status().issuer.fingerprint,
    };
    for (const target of this.targets) target.setSecureContext({ key: cert.key, cert: cert.cert });
    this.currentCert = cert;
    logger.info(
      {
        serial: cert.serialNumber,
        notAfter: cert.notAfter.toISOString(),
        renewAt: this.renewAt()?.toISOString(),
        dnsNames,
        ipAddresses,
      },
      'serving certificate installed',
    );
    return cert;
  }
}

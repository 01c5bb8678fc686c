// The HTTPS serving certificate of `mooring serve`: issued by our own CA (fresh ECDSA P-256 key,
// kept in memory only), renewed at a fraction of its lifetime or when the CA's issuer changes,
// and swapped into the running server with setSecureContext(): open connections keep their
// session, new handshakes get the new certificate.

import {
  createPublicKey,
  generateKeyPairSync,
  sign,
  X509Certificate,
  type KeyObject,
} from 'node:crypto';
import type { CertificateService, Clock } from '../ca/ports';

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

// --- a minimal PKCS#10 writer (DER), enough for an ECDSA P-256 CSR --------------------------

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}
const OID_COMMON_NAME = Buffer.from([0x06, 0x03, 0x55, 0x04, 0x03]);
const OID_ECDSA_SHA256 = Buffer.from([0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]);

/** A PEM PKCS#10 CSR with subject CN=`commonName`, signed with an ECDSA P-256 key. */
export function buildEcdsaCsr(privateKey: KeyObject, commonName: string): string {
  const spki = createPublicKey(privateKey).export({ format: 'der', type: 'spki' });
  const subject = tlv(
    0x30,
    tlv(0x31, tlv(0x30, OID_COMMON_NAME, tlv(0x0c, Buffer.from(commonName, 'utf8')))),
  );
  const info = tlv(0x30, tlv(0x02, Buffer.from([0])), subject, spki, Buffer.from([0xa0, 0x00]));
  const signature = sign('sha256', info, privateKey);
  const csr = tlv(0x30, info, tlv(0x30, OID_ECDSA_SHA256), tlv(0x03, Buffer.from([0]), signature));
  const b64 = csr.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64.trimEnd()}\n-----END CERTIFICATE REQUEST-----\n`;
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
    const start = Math.max(cert.notBefore.getTime(), cert.issuedAt.getTime());
    const span = cert.notAfter.getTime() - start;
    return new Date(start + span * this.options.renewFraction);
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
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const chain = await certificates.issueServing({
      csrPem: buildEcdsaCsr(privateKey, dnsNames[0] ?? ipAddresses[0] ?? 'mooring'),
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

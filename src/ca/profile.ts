// The certificate profiles, as small validate-then-override steps. The CSR gives the public key
// and proof of possession; identity, usages, CA flag and lifetime come from policy and from the
// authenticated caller (STYLE.md habit 9).
//
// Workload (SPIFFE X.509-SVID): empty subject, exactly one URI SAN (critical, since the subject
// is empty) = the caller's SPIFFE ID, basicConstraints critical CA:false, keyUsage critical
// digitalSignature (+ keyEncipherment for RSA keys), extKeyUsage serverAuth + clientAuth,
// subject and authority key identifiers. Serving (the server's own TLS certificate): the same
// with DNS and IP SANs and serverAuth only.

import { isIP } from 'node:net';
import { MooringError } from '../errors';
import { describeNames, type RequestedNames, type VerifiedCsr } from './csr';
import { keyIdentifier } from './keys';
import { OID } from './oids';
import type { KeyAlgorithm, RandomSource } from './ports';
import {
  basicConstraints,
  EMPTY_NAME,
  extKeyUsage,
  keyUsage,
  subjectAltName,
  subjectKeyIdentifier,
  type KeyUsageName,
} from './x509';

/** Lifetime rules, from config.ca. */
export interface LifetimePolicy {
  readonly defaultTtlSeconds: number;
  readonly maxTtlSeconds: number;
  readonly backdateSeconds: number;
}

/** The validity of the issuing chain: no certificate may outlive (or predate) it. */
export interface IssuerWindow {
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export interface Validity {
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/** A leaf certificate before the issuer fills in its part and signs. */
export interface LeafTemplate {
  readonly serial: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly subjectName: Buffer;
  readonly spki: Buffer;
  /** Every extension but the authority key identifier, which the issuer adds. */
  readonly extensions: readonly Buffer[];
}

// --- validate ------------------------------------------------------------------------------

/**
 * The CSR may ask for nothing, or for exactly the caller's own SPIFFE ID as its one URI SAN.
 * Anything else is refused with CA_ERR_SAN (never silently dropped, never copied).
 */
export function checkRequestedNames(names: RequestedNames, spiffeId: string): void {
  // What nearly every CSR asks for: nothing, or its own SPIFFE ID once.
  const plain =
    names.dnsNames.length + names.ipAddresses.length + names.emails.length + names.otherCount === 0;
  if (plain && (names.uris.length === 0 || (names.uris.length === 1 && names.uris[0] === spiffeId)))
    return;
  const others = describeNames({ ...names, uris: names.uris.filter((u) => u !== spiffeId) });
  if (others.length > 0) {
    throw new MooringError(
      'CA_ERR_SAN',
      `the CSR asks for ${others.join(', ')}; only the caller's own identity ${spiffeId} may be requested`,
    );
  }
  if (names.uris.length > 1) {
    throw new MooringError('CA_ERR_SAN', `the CSR names ${spiffeId} more than once`);
  }
}

/** The lifetime to issue for: the default when none is asked, CA_ERR_TTL above the maximum. */
export function resolveTtl(requested: number | undefined, policy: LifetimePolicy): number {
  if (requested === undefined) return policy.defaultTtlSeconds;
  if (!Number.isInteger(requested) || requested <= 0) {
    throw new MooringError(
      'CA_ERR_TTL',
      `the lifetime must be a positive number of seconds, not ${requested}`,
    );
  }
  if (requested > policy.maxTtlSeconds) {
    throw new MooringError(
      'CA_ERR_TTL',
      `the requested lifetime ${requested}s is above the maximum ${policy.maxTtlSeconds}s`,
    );
  }
  return requested;
}

const wholeSeconds = (ms: number): Date => new Date(Math.floor(ms / 1000) * 1000);

/**
 * notBefore = now - backdate, never before the issuer's notBefore; notAfter = now + ttl, never
 * after the issuer's notAfter. Whole seconds. An expired issuer is CA_ERR_NOT_READY.
 */
export function validityWindow(
  now: Date,
  ttlSeconds: number,
  backdateSeconds: number,
  issuer: IssuerWindow,
): Validity {
  const t = Math.floor(now.getTime() / 1000) * 1000;
  if (t >= issuer.notAfter.getTime()) {
    throw new MooringError('CA_ERR_NOT_READY', 'the issuing CA certificate has expired');
  }
  return {
    notBefore: new Date(
      Math.max(t - backdateSeconds * 1000, Math.ceil(issuer.notBefore.getTime() / 1000) * 1000),
    ),
    notAfter: wholeSeconds(Math.min(t + ttlSeconds * 1000, issuer.notAfter.getTime())),
  };
}

/** digitalSignature, plus keyEncipherment for RSA keys (RSA key transport in TLS 1.2). */
export function leafKeyUsage(keyType: KeyAlgorithm): readonly KeyUsageName[] {
  return keyType.startsWith('rsa-')
    ? ['digitalSignature', 'keyEncipherment']
    : ['digitalSignature'];
}

/**
 * A random positive serial number: 16 bytes, top bit cleared (positive), next bit set (so the
 * encoding is always 16 bytes and never needs a leading zero): 126 random bits.
 */
export function serialNumber(random: RandomSource): Buffer {
  const bytes = Buffer.from(random.bytes(16));
  if (bytes.length !== 16) throw new RangeError('the random source returned a short read');
  bytes[0] = ((bytes[0] as number) & 0x3f) | 0x40;
  return bytes;
}

/** IPv4 or IPv6 text to 4 or 16 bytes; null if not an address. */
export function ipToBytes(text: string): Buffer | null {
  const version = isIP(text);
  if (version === 4) return Buffer.from(text.split('.').map(Number));
  if (version !== 6) return null;
  let head = text;
  let v4: number[] = [];
  const lastColon = text.lastIndexOf(':');
  if (text.slice(lastColon + 1).includes('.')) {
    v4 = text
      .slice(lastColon + 1)
      .split('.')
      .map(Number);
    head = text.slice(0, lastColon + 1) + '0:0';
  }
  const [left = '', right] = head.split('::');
  const parse = (s: string): number[] => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const l = parse(left);
  const r = right === undefined ? [] : parse(right);
  const groups = [...l, ...new Array<number>(8 - l.length - r.length).fill(0), ...r];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  if (v4.length === 4) Buffer.from(v4).copy(out, 12);
  return out;
}

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

/** Validates the serving certificate's names: DNS names (RFC 1123, lowercased) and IPs. */
export function checkServingNames(
  dnsNames: readonly string[],
  ipAddresses: readonly string[],
): { dnsNames: string[]; ipAddresses: Buffer[] } {
  if (dnsNames.length + ipAddresses.length === 0) {
    throw new MooringError('CA_ERR_SAN', 'a serving certificate needs at least one DNS name or IP');
  }
  const dns = dnsNames.map((raw) => {
    const name = raw.toLowerCase();
    if (name.length > 253 || !name.split('.').every((l) => DNS_LABEL.test(l))) {
      throw new MooringError('CA_ERR_SAN', `"${raw.slice(0, 300)}" is not a valid DNS name`);
    }
    return name;
  });
  const ips = ipAddresses.map((raw) => {
    const bytes = ipToBytes(raw);
    if (bytes === null)
      throw new MooringError('CA_ERR_SAN', `"${raw.slice(0, 64)}" is not an IP address`);
    return bytes;
  });
  return { dnsNames: dns, ipAddresses: ips };
}

// --- override ------------------------------------------------------------------------------

const LEAF_CONSTRAINTS = basicConstraints(false);
const LEAF_KEY_USAGE = {
  plain: keyUsage(['digitalSignature']),
  rsa: keyUsage(['digitalSignature', 'keyEncipherment']),
};
const WORKLOAD_EKU = extKeyUsage([OID.serverAuth, OID.clientAuth]);
const SERVING_EKU = extKeyUsage([OID.serverAuth]);

const keyUsageExtension = (keyType: KeyAlgorithm): Buffer =>
  leafKeyUsage(keyType).length === 2 ? LEAF_KEY_USAGE.rsa : LEAF_KEY_USAGE.plain;

export interface WorkloadProfileInput {
  readonly csr: VerifiedCsr;
  readonly spiffeId: string;
  readonly ttlSeconds: number | undefined;
  readonly now: Date;
  readonly serial: Buffer;
  readonly issuer: IssuerWindow;
  readonly policy: LifetimePolicy;
}

/** What the two leaf profiles share: lifetime, validity window, key usage, SKI, basic constraints. */
function leafTemplate(
  input: Omit<WorkloadProfileInput, 'spiffeId'>,
  eku: Buffer,
  names: Parameters<typeof subjectAltName>[0],
): LeafTemplate {
  const ttl = resolveTtl(input.ttlSeconds, input.policy);
  const validity = validityWindow(input.now, ttl, input.policy.backdateSeconds, input.issuer);
  return {
    serial: input.serial,
    ...validity,
    subjectName: EMPTY_NAME,
    spki: input.csr.spki,
    extensions: [
      LEAF_CONSTRAINTS,
      keyUsageExtension(input.csr.keyType),
      eku,
      subjectAltName(names, true),
      subjectKeyIdentifier(keyIdentifier(input.csr.spki)),
    ],
  };
}

/** The X.509-SVID for `spiffeId` (already checked against the trust domain). */
export function workloadTemplate(input: WorkloadProfileInput): LeafTemplate {
  checkRequestedNames(input.csr.names, input.spiffeId);
  return leafTemplate(input, WORKLOAD_EKU, { uris: [input.spiffeId] });
}

export interface ServingProfileInput {
  readonly csr: VerifiedCsr;
  readonly dnsNames: readonly string[];
  readonly ipAddresses: readonly string[];
  readonly ttlSeconds: number;
  readonly now: Date;
  readonly serial: Buffer;
  readonly issuer: IssuerWindow;
  readonly policy: LifetimePolicy;
}

/** The server's own TLS certificate: the CSR's names are ignored, the given ones put in. */
export function servingTemplate(input: ServingProfileInput): LeafTemplate {
  return leafTemplate(input, SERVING_EKU, checkServingNames(input.dnsNames, input.ipAddresses));
}

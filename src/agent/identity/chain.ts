// Verifies what the CA returned before the agent uses it: each certificate signed by the next,
// the last one by a root of the root file, every one within its validity period, intermediates
// are CAs and the leaf is not, and the leaf's public key is the agent's own key.

import { X509Certificate, type KeyObject } from 'node:crypto';

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** Every CERTIFICATE block of a PEM text, each normalised to end with a newline. */
export function splitPemCertificates(text: string): string[] {
  return (text.match(PEM_BLOCK) ?? []).map((block) => `${block}\n`);
}

/** Parses PEM certificates; throws when one does not parse. */
export function parseCertificates(pems: readonly string[]): X509Certificate[] {
  return pems.map((pem, i) => {
    try {
      return new X509Certificate(pem);
    } catch (err) {
      throw new ChainError(`certificate ${i} does not parse (${(err as Error).message})`);
    }
  });
}

export class ChainError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ChainError';
  }
}

export interface VerifiedChain {
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly serialNumber: string;
  /** The leaf's URI SAN (its SPIFFE ID), or null when it has none. */
  readonly spiffeId: string | null;
  /** Fingerprint (SHA-256) of the root the chain ends at. */
  readonly rootFingerprint: string;
}

const validity = (cert: X509Certificate): { notBefore: Date; notAfter: Date } => ({
  notBefore: new Date(cert.validFrom),
  notAfter: new Date(cert.validTo),
});

function checkValidity(cert: X509Certificate, name: string, now: Date): void {
  const { notBefore, notAfter } = validity(cert);
  if (now < notBefore)
    throw new ChainError(`${name} is not valid before ${notBefore.toISOString()}`);
  if (now > notAfter) throw new ChainError(`${name} expired at ${notAfter.toISOString()}`);
}

const signedBy = (child: X509Certificate, parent: X509Certificate): boolean =>
  child.checkIssued(parent) && child.verify(parent.publicKey);

/** The URI SANs of a certificate (Node prints them as `URI:<uri>` in subjectAltName). */
export function uriSans(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '')
    .split(/,\s*/)
    .filter((s) => s.startsWith('URI:'))
    .map((s) => s.slice(4));
}

/**
 * Verifies `chainPems` (leaf first) against `rootPems` at `now`, for the key `publicKey`.
 * Throws ChainError with the first reason it fails.
 */
export function verifyChain(
  chainPems: readonly string[],
  rootPems: readonly string[],
  publicKey: KeyObject,
  now: Date,
): VerifiedChain {
  if (chainPems.length === 0) throw new ChainError('the certificate chain is empty');
  if (rootPems.length === 0) throw new ChainError('the root file holds no certificate');
  const roots = parseCertificates(rootPems);
  const given = parseCertificates(chainPems);
  // A chain that ends with one of our roots is accepted: the root is checked as a root below.
  const last = given[given.length - 1];
  const chain =
    given.length > 1 && last !== undefined && roots.some((r) => r.raw.equals(last.raw))
      ? given.slice(0, -1)
      : given;
  const [leaf] = chain;
  if (leaf === undefined) throw new ChainError('the certificate chain holds only a root');

  if (!leaf.publicKey.equals(publicKey)) {
    throw new ChainError("the leaf certificate's public key is not the agent's key");
  }
  if (leaf.ca) throw new ChainError('the leaf certificate is a CA certificate');
  checkValidity(leaf, 'the leaf certificate', now);

  for (let i = 1; i < chain.length; i++) {
    const child = chain[i - 1] as X509Certificate;
    const parent = chain[i] as X509Certificate;
    if (!parent.ca) throw new ChainError(`chain certificate ${i} is not a CA certificate`);
    if (!signedBy(child, parent))
      throw new ChainError(`chain certificate ${i - 1} is not signed by certificate ${i}`);
    checkValidity(parent, `chain certificate ${i}`, now);
  }

  const top = chain[chain.length - 1] as X509Certificate;
  const root = roots.find((r) => signedBy(top, r));
  if (root === undefined) {
    throw new ChainError('the certificate chain does not lead to a root of the root file');
  }
  checkValidity(root, 'the root certificate', now);

  const { notBefore, notAfter } = validity(leaf);
  const uris = uriSans(leaf);
  return {
    notBefore,
    notAfter,
    serialNumber: leaf.serialNumber,
    spiffeId: uris.find((u) => u.startsWith('spiffe://')) ?? null,
    rootFingerprint: root.fingerprint256,
  };
}

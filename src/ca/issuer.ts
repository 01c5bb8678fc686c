// The issuing side: a CA certificate with its parsed key, compiled once into everything each
// issuance copies (issuer Name bytes, authority key identifier, validity window, chain PEMs),
// self-signed root generation, and signing a leaf template.

import { X509Certificate, type KeyObject } from 'node:crypto';
import { MooringError } from '../errors';
import { fromPemAll, toPem } from './der';
import { createSigner, keyIdentifier, keyTypeOf, spkiOf, type KeyPair } from './keys';
import { OID } from './oids';
import type { IssuerWindow, LeafTemplate } from './profile';
import type { KeyAlgorithm, Signer } from './ports';
import {
  authorityKeyIdentifier,
  basicConstraints,
  buildTbs,
  certificateOf,
  encodeName,
  keyUsage,
  readCertificate,
  signTbs,
  signTbsInPool,
  subjectKeyIdentifier,
  type NameAttribute,
} from './x509';

/** A CA certificate ready to issue: parsed once, reused for every certificate. */
export interface IssuingCA {
  readonly certPem: string;
  readonly certificate: X509Certificate;
  /** What follows the leaf in an issued chain: intermediates up to, not including, the root. */
  readonly chainPems: readonly string[];
  readonly signer: Signer;
  readonly nameDer: Buffer;
  readonly authorityKeyIdExtension: Buffer;
  /** The validity every issued certificate must fit in: the intersection over the chain. */
  readonly window: IssuerWindow;
  readonly keyType: KeyAlgorithm | null;
}

/** Colon-separated SHA-256 fingerprint, as openssl prints it. */
export const fingerprintOf = (cert: X509Certificate): string => cert.fingerprint256;

export function parseCertificatePem(pem: string, what: string): X509Certificate {
  try {
    return new X509Certificate(pem);
  } catch (err) {
    throw new MooringError('CA_ERR_STORE', `${what} is not a PEM certificate`, { cause: err });
  }
}

/** Every certificate in a PEM bundle, in order. */
export function splitPemCertificates(text: string): string[] {
  return fromPemAll(text, 'CERTIFICATE').map((der) => toPem('CERTIFICATE', der));
}

/**
 * Compiles a CA certificate and its private key. `chain` is every certificate between it and
 * the root (for a root issuer: empty); `windowCertificates` bounds issued lifetimes.
 */
export function compileIssuer(params: {
  readonly certPem: string;
  readonly privateKey: KeyObject;
  readonly chainPems: readonly string[];
  readonly windowCertificates: readonly X509Certificate[];
}): IssuingCA {
  const certificate = new X509Certificate(params.certPem);
  const fields = readCertificate(certificate.raw);
  const keyId = fields.subjectKeyId ?? keyIdentifier(fields.spki);
  const all = [certificate, ...params.windowCertificates];
  return {
    certPem: certificate.toString(),
    certificate,
    chainPems: params.chainPems,
    signer: createSigner(params.privateKey),
    nameDer: fields.subjectName,
    authorityKeyIdExtension: authorityKeyIdentifier(keyId),
    window: {
      notBefore: new Date(Math.max(...all.map((c) => Date.parse(c.validFrom)))),
      notAfter: new Date(Math.min(...all.map((c) => Date.parse(c.validTo)))),
    },
    keyType: keyTypeOf(params.privateKey),
  };
}

/** Signs a leaf template: the issuer adds its Name, AKI and signature. Returns DER. */
export function signLeaf(template: LeafTemplate, ca: IssuingCA): Buffer {
  return signTbs(leafTbs(template, ca), ca.signer);
}

/** signLeaf with the signature computed in libuv's thread pool. */
export function signLeafInPool(template: LeafTemplate, ca: IssuingCA): Promise<Buffer> {
  return signTbsInPool(leafTbs(template, ca), ca.signer);
}

/**
 * signLeaf with the signature run by `run` (the crypto queue of 'batched' mode): the TBS is built
 * first, so that only the signature waits in the queue.
 */
export async function signLeafQueued(
  template: LeafTemplate,
  ca: IssuingCA,
  run: (op: () => Buffer) => Promise<Buffer>,
): Promise<Buffer> {
  const tbs = leafTbs(template, ca);
  return certificateOf(tbs, ca.signer, await run(() => ca.signer.sign(tbs)));
}

function leafTbs(template: LeafTemplate, ca: IssuingCA): Buffer {
  return buildTbs({
    serial: template.serial,
    signatureAlgorithm: ca.signer.algorithmIdentifierDer,
    issuerName: ca.nameDer,
    notBefore: template.notBefore,
    notAfter: template.notAfter,
    subjectName: template.subjectName,
    spki: template.spki,
    extensions: [...template.extensions, ca.authorityKeyIdExtension],
  });
}

export interface RootParams {
  readonly key: KeyPair;
  readonly commonName: string;
  readonly organization: string;
  readonly now: Date;
  readonly lifetimeSeconds: number;
  readonly backdateSeconds: number;
  readonly serial: Buffer;
}

/**
 * A self-signed root: subject O=<organization>, CN=<commonName>, serialNumber=<key id> (so
 * that successive roots have distinct names), basicConstraints critical CA:true, keyUsage
 * critical keyCertSign + cRLSign, subject and authority key identifiers. Returns PEM.
 */
export function buildRoot(params: RootParams): string {
  const spki = spkiOf(params.key.publicKey);
  const keyId = keyIdentifier(spki);
  const attributes: NameAttribute[] = [
    { oid: OID.organization, value: params.organization },
    { oid: OID.commonName, value: params.commonName },
    { oid: OID.serialNumber, value: keyId.subarray(0, 8).toString('hex'), printable: true },
  ];
  const name = encodeName(attributes);
  const t = Math.floor(params.now.getTime() / 1000) * 1000;
  const signer = createSigner(params.key.privateKey);
  const tbs = buildTbs({
    serial: params.serial,
    signatureAlgorithm: signer.algorithmIdentifierDer,
    issuerName: name,
    notBefore: new Date(t - params.backdateSeconds * 1000),
    notAfter: new Date(t + params.lifetimeSeconds * 1000),
    subjectName: name,
    spki,
    extensions: [
      basicConstraints(true),
      keyUsage(['keyCertSign', 'cRLSign']),
      subjectKeyIdentifier(keyId),
      authorityKeyIdentifier(keyId),
    ],
  });
  return toPem('CERTIFICATE', signTbs(tbs, signer));
}

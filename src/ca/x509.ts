// X.509 v3 certificates as DER: the TBSCertificate from pre-encoded parts, the extensions the
// profiles use, the signature through a Signer, and the few fields read back from a CA
// certificate (its subject Name bytes, SPKI and key identifier) so that they can be copied
// into every certificate it issues.

import {
  boolean,
  bitString,
  bytesOf,
  children,
  contentOf,
  explicit,
  implicitPrimitive,
  namedBits,
  octetString,
  oid,
  oidToString,
  printableString,
  readNode,
  readRoot,
  sequence,
  set,
  smallInteger,
  TAG,
  time,
  unsignedInteger,
  utf8String,
} from './der';
import { OID } from './oids';
import type { Signer } from './ports';

/** Everything a TBSCertificate holds, each part already DER except times and serial. */
export interface TbsParts {
  /** Big-endian magnitude of the positive serial number. */
  readonly serial: Buffer;
  readonly signatureAlgorithm: Buffer;
  readonly issuerName: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly subjectName: Buffer;
  readonly spki: Buffer;
  /** Encoded Extension SEQUENCEs. */
  readonly extensions: readonly Buffer[];
}

const VERSION_3 = explicit(0, smallInteger(2));

export function buildTbs(parts: TbsParts): Buffer {
  return sequence(
    VERSION_3,
    unsignedInteger(parts.serial),
    parts.signatureAlgorithm,
    parts.issuerName,
    sequence(time(parts.notBefore), time(parts.notAfter)),
    parts.subjectName,
    parts.spki,
    explicit(3, sequence(...parts.extensions)),
  );
}

/** Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }. */
export function certificateOf(tbs: Buffer, signer: Signer, signature: Buffer): Buffer {
  return sequence(tbs, signer.algorithmIdentifierDer, bitString(signature));
}

/** The Certificate of `tbs`, signed now. */
export function signTbs(tbs: Buffer, signer: Signer): Buffer {
  return certificateOf(tbs, signer, signer.sign(tbs));
}

/** signTbs with the signature computed in the thread pool when the signer can. */
export async function signTbsInPool(tbs: Buffer, signer: Signer): Promise<Buffer> {
  const signature =
    signer.signInPool === undefined ? signer.sign(tbs) : await signer.signInPool(tbs);
  return certificateOf(tbs, signer, signature);
}

// --- names ---------------------------------------------------------------------------------

export interface NameAttribute {
  readonly oid: string;
  readonly value: string;
  /** serialNumber and countryName must be PrintableString; everything else is UTF8String. */
  readonly printable?: boolean;
}

/** A Name (RDNSequence), one attribute per RDN, in the given order. */
export function encodeName(attributes: readonly NameAttribute[]): Buffer {
  return sequence(
    ...attributes.map((a) =>
      set(sequence(oid(a.oid), a.printable ? printableString(a.value) : utf8String(a.value))),
    ),
  );
}

/** The empty Name (SPIFFE X.509-SVIDs identify by URI SAN only). */
export const EMPTY_NAME = sequence();

// --- extensions ----------------------------------------------------------------------------

export function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical
    ? sequence(oid(id), boolean(true), octetString(value))
    : sequence(oid(id), octetString(value));
}

export const KEY_USAGE_BIT = {
  digitalSignature: 0,
  keyEncipherment: 2,
  keyCertSign: 5,
  cRLSign: 6,
} as const;
export type KeyUsageName = keyof typeof KEY_USAGE_BIT;

export const basicConstraints = (isCA: boolean): Buffer =>
  // DER leaves out a FALSE default: a leaf's value is the empty SEQUENCE.
  extension(OID.basicConstraints, true, isCA ? sequence(boolean(true)) : sequence());

export const keyUsage = (usages: readonly KeyUsageName[]): Buffer =>
  extension(OID.keyUsage, true, namedBits(usages.map((u) => KEY_USAGE_BIT[u])));

export const extKeyUsage = (purposes: readonly string[]): Buffer =>
  extension(OID.extKeyUsage, false, sequence(...purposes.map((p) => oid(p))));

export const subjectKeyIdentifier = (keyId: Buffer): Buffer =>
  extension(OID.subjectKeyIdentifier, false, octetString(keyId));

export const authorityKeyIdentifier = (keyId: Buffer): Buffer =>
  extension(OID.authorityKeyIdentifier, false, sequence(implicitPrimitive(0, keyId)));

export interface SubjectAltNames {
  readonly uris?: readonly string[];
  readonly dnsNames?: readonly string[];
  /** Four (IPv4) or sixteen (IPv6) bytes each. */
  readonly ipAddresses?: readonly Buffer[];
}

/** GeneralNames [6] URI, [2] dNSName, [7] iPAddress. Critical when the subject is empty. */
export function subjectAltName(names: SubjectAltNames, critical: boolean): Buffer {
  const general = [
    ...(names.uris ?? []).map((u) => implicitPrimitive(6, Buffer.from(u, 'ascii'))),
    ...(names.dnsNames ?? []).map((d) => implicitPrimitive(2, Buffer.from(d, 'ascii'))),
    ...(names.ipAddresses ?? []).map((ip) => implicitPrimitive(7, ip)),
  ];
  return extension(OID.subjectAltName, critical, sequence(...general));
}

// --- reading a certificate back ------------------------------------------------------------

/** The fields of a certificate the CA copies into what it issues. */
export interface CertificateFields {
  readonly tbs: Buffer;
  readonly issuerName: Buffer;
  readonly subjectName: Buffer;
  readonly spki: Buffer;
  /** The value of the subjectKeyIdentifier extension, if present. */
  readonly subjectKeyId: Buffer | undefined;
}

/** Reads the subject, issuer, SPKI and SKI of a certificate (DER); throws DerError if malformed. */
export function readCertificate(der: Buffer): CertificateFields {
  const root = readRoot(der);
  const [tbsNode] = children(der, root);
  if (tbsNode?.tag !== TAG.sequence) throw new RangeError('not a certificate');
  const fields = children(der, tbsNode);
  let i = fields[0]?.tag === 0xa0 ? 1 : 0;
  const at = (): NonNullable<(typeof fields)[number]> => {
    const f = fields[i++];
    if (f === undefined) throw new RangeError('truncated TBSCertificate');
    return f;
  };
  at(); // serialNumber
  at(); // signature
  const issuer = at();
  at(); // validity
  const subject = at();
  const spki = at();
  let subjectKeyId: Buffer | undefined;
  for (const f of fields.slice(i)) {
    if (f.tag !== 0xa3) continue;
    const [exts] = children(der, f);
    if (exts === undefined) continue;
    for (const ext of children(der, exts)) {
      const parts = children(der, ext);
      const id = parts[0];
      const value = parts[parts.length - 1];
      if (id === undefined || value === undefined) continue;
      if (oidToString(contentOf(der, id)) !== OID.subjectKeyIdentifier) continue;
      const inner = contentOf(der, value);
      subjectKeyId = contentOf(inner, readNode(inner, 0));
    }
  }
  return {
    tbs: bytesOf(der, tbsNode),
    issuerName: bytesOf(der, issuer),
    subjectName: bytesOf(der, subject),
    spki: bytesOf(der, spki),
    subjectKeyId,
  };
}

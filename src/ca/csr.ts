// PKCS#10 certificate signing requests (RFC 2986): parsed strictly as DER, the public key
// imported, the signature verified. The CSR only proves possession of a key: its subject is
// ignored and the names it asks for are returned so that the profile can refuse them.
//
// Parsed with the small DER reader of ./der.ts rather than node-forge's ASN.1: the signed
// CertificationRequestInfo and the SPKI copied into the certificate must be the CSR's own
// bytes, which forge can only give back by re-encoding (bench/ca.ts compares the two).

import { verify, type KeyObject } from 'node:crypto';
import { MooringError } from '../errors';
import {
  bytesOf,
  children,
  contentOf,
  DerError,
  fromPemAll,
  oidToString,
  readRoot,
  TAG,
  type Node,
} from './der';
import { importPublicKey } from './keys';
import { OID } from './oids';
import type { KeyAlgorithm } from './ports';

/** The names a CSR asks for in its extensionRequest subjectAltName. */
export interface RequestedNames {
  readonly uris: readonly string[];
  readonly dnsNames: readonly string[];
  /** Textual form (IPv4 dotted, IPv6 hex groups). */
  readonly ipAddresses: readonly string[];
  readonly emails: readonly string[];
  /** GeneralName kinds other than the four above (otherName, directoryName...). */
  readonly otherCount: number;
}

/** A CSR's structure before any cryptography. */
export interface CsrStructure {
  /** The exact bytes of CertificationRequestInfo: what the signature covers. */
  readonly info: Buffer;
  /** The exact bytes of the SubjectPublicKeyInfo. */
  readonly spki: Buffer;
  readonly signatureAlgorithm: string;
  /** Encoded AlgorithmIdentifier parameters, undefined when absent. */
  readonly signatureParameters: Buffer | undefined;
  readonly signature: Buffer;
  readonly names: RequestedNames;
}

/** A CSR whose signature verified. */
export interface VerifiedCsr {
  readonly spki: Buffer;
  readonly publicKey: KeyObject;
  readonly keyType: KeyAlgorithm;
  readonly names: RequestedNames;
}

const csrError = (message: string, cause?: unknown): MooringError =>
  new MooringError('CA_ERR_CSR', message, cause === undefined ? undefined : { cause });
const signatureError = (message: string): MooringError =>
  new MooringError('CA_ERR_CSR_SIGNATURE', message);

/** The DER of the one PEM `CERTIFICATE REQUEST` block in `pem`. */
export function csrDerFromPem(pem: string): Buffer {
  const blocks = [
    ...fromPemAll(pem, 'CERTIFICATE REQUEST'),
    ...fromPemAll(pem, 'NEW CERTIFICATE REQUEST'),
  ];
  if (blocks.length === 0) throw csrError('no PEM "CERTIFICATE REQUEST" block found');
  if (blocks.length > 1) throw csrError('more than one CSR in the PEM');
  const der = blocks[0] as Buffer;
  if (der.length === 0) throw csrError('the CSR PEM block is empty');
  return der;
}

function formatIp(bytes: Buffer): string {
  if (bytes.length === 4) return [...bytes].join('.');
  if (bytes.length === 16) {
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
    return groups.join(':');
  }
  return `invalid(${bytes.toString('hex')})`;
}

function readGeneralNames(buf: Buffer): RequestedNames {
  const root = readRoot(buf);
  if (root.tag !== TAG.sequence) throw new DerError('subjectAltName is not a SEQUENCE');
  const uris: string[] = [];
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  const emails: string[] = [];
  let otherCount = 0;
  for (const name of children(buf, root)) {
    const value = contentOf(buf, name);
    switch (name.tag) {
      case 0x81:
        emails.push(value.toString('latin1'));
        break;
      case 0x82:
        dnsNames.push(value.toString('latin1'));
        break;
      case 0x86:
        uris.push(value.toString('latin1'));
        break;
      case 0x87:
        ipAddresses.push(formatIp(value));
        break;
      default:
        otherCount++;
    }
  }
  return { uris, dnsNames, ipAddresses, emails, otherCount };
}

const NO_NAMES: RequestedNames = {
  uris: [],
  dnsNames: [],
  ipAddresses: [],
  emails: [],
  otherCount: 0,
};

/** The subjectAltName of the extensionRequest attribute, if any. */
function requestedNames(der: Buffer, attributes: Node | undefined): RequestedNames {
  if (attributes === undefined) return NO_NAMES;
  if (attributes.tag !== 0xa0) throw new DerError('attributes must be [0]');
  let found: RequestedNames | undefined;
  for (const attribute of children(der, attributes)) {
    const [type, values] = children(der, attribute);
    if (type?.tag !== TAG.oid || values?.tag !== TAG.set) throw new DerError('bad attribute');
    if (oidToString(contentOf(der, type)) !== OID.extensionRequest) continue;
    if (found !== undefined) throw new DerError('more than one extensionRequest');
    const [extensions, extra] = children(der, values);
    if (extensions?.tag !== TAG.sequence || extra !== undefined) {
      throw new DerError('extensionRequest must hold one Extensions');
    }
    found = NO_NAMES;
    let sawSan = false;
    for (const ext of children(der, extensions)) {
      const parts = children(der, ext);
      const id = parts[0];
      const value = parts[parts.length - 1];
      if (id?.tag !== TAG.oid || value?.tag !== TAG.octetString)
        throw new DerError('bad extension');
      if (oidToString(contentOf(der, id)) !== OID.subjectAltName) continue;
      if (sawSan) throw new DerError('more than one subjectAltName');
      sawSan = true;
      found = readGeneralNames(contentOf(der, value));
    }
  }
  return found ?? NO_NAMES;
}

/** Parses a CSR's DER without verifying it. Throws CA_ERR_CSR. */
export function parseCsr(der: Buffer): CsrStructure {
  try {
    const root = readRoot(der);
    if (root.tag !== TAG.sequence) throw new DerError('not a SEQUENCE');
    const [info, algId, sig, extra] = children(der, root);
    if (
      info?.tag !== TAG.sequence ||
      algId?.tag !== TAG.sequence ||
      sig?.tag !== TAG.bitString ||
      extra !== undefined
    ) {
      throw new DerError('not a CertificationRequest');
    }
    const [version, subject, spki, attributes, more] = children(der, info);
    if (
      version?.tag !== TAG.integer ||
      subject?.tag !== TAG.sequence ||
      spki?.tag !== TAG.sequence ||
      more !== undefined
    ) {
      throw new DerError('not a CertificationRequestInfo');
    }
    const versionBytes = contentOf(der, version);
    if (versionBytes.length !== 1 || versionBytes[0] !== 0) throw new DerError('version is not 1');
    const [algOid, params, algExtra] = children(der, algId);
    if (algOid?.tag !== TAG.oid || algExtra !== undefined) {
      throw new DerError('bad signature algorithm');
    }
    const sigBits = contentOf(der, sig);
    if (sigBits.length < 2 || sigBits[0] !== 0) throw new DerError('bad signature bit string');
    return {
      info: bytesOf(der, info),
      spki: bytesOf(der, spki),
      signatureAlgorithm: oidToString(contentOf(der, algOid)),
      signatureParameters: params === undefined ? undefined : bytesOf(der, params),
      signature: sigBits.subarray(1),
      names: requestedNames(der, attributes),
    };
  } catch (err) {
    if (err instanceof MooringError) throw err;
    throw csrError(`the CSR is not valid DER PKCS#10: ${(err as Error).message}`, err);
  }
}

const NULL_PARAMS = Buffer.from([TAG.null, 0]);

/** The hash crypto.verify needs for a signature OID over a key type; throws if they don't fit. */
export function verificationHash(
  signatureAlgorithm: string,
  parameters: Buffer | undefined,
  keyType: KeyAlgorithm,
): string | null {
  const rsa: Readonly<Record<string, string>> = {
    [OID.sha256WithRSA]: 'sha256',
    [OID.sha384WithRSA]: 'sha384',
    [OID.sha512WithRSA]: 'sha512',
  };
  const ecdsa: Readonly<Record<string, string>> = {
    [OID.ecdsaWithSHA256]: 'sha256',
    [OID.ecdsaWithSHA384]: 'sha384',
    [OID.ecdsaWithSHA512]: 'sha512',
  };
  if (keyType.startsWith('rsa-')) {
    const hash = rsa[signatureAlgorithm];
    if (hash !== undefined && (parameters === undefined || parameters.equals(NULL_PARAMS))) {
      return hash;
    }
  } else if (keyType.startsWith('ecdsa-')) {
    const hash = ecdsa[signatureAlgorithm];
    if (hash !== undefined && parameters === undefined) return hash;
  } else if (signatureAlgorithm === OID.ed25519 && parameters === undefined) {
    return null;
  }
  throw signatureError(
    `signature algorithm ${signatureAlgorithm} is not accepted for a ${keyType} key ` +
      '(RSA and ECDSA with SHA-256/384/512, Ed25519 are)',
  );
}

/**
 * Where and when CSR signatures are checked and certificates signed: 'sync' at once on the calling
 * thread; 'threadpool' in libuv's thread pool (crypto.verify/sign with a callback); 'batched' on
 * the calling thread, queued and run back to back with those of the other requests of the same
 * event-loop turn (./crypto-queue.ts).
 */
export type CryptoMode = 'sync' | 'threadpool' | 'batched';

function verifyInPool(
  hash: string | null,
  data: Buffer,
  key: KeyObject,
  sig: Buffer,
): Promise<boolean> {
  return new Promise((resolve) => {
    verify(hash, data, key, sig, (err, ok) => resolve(err === null && ok));
  });
}

const badSignature = (): MooringError =>
  signatureError('the CSR signature does not verify with its own public key');

/** Imports the key and verifies the signature now: CA_ERR_KEY_TYPE, CA_ERR_CSR_SIGNATURE. */
export function checkCsr(csr: CsrStructure): VerifiedCsr {
  const { key, keyType } = importPublicKey(csr.spki);
  const hash = verificationHash(csr.signatureAlgorithm, csr.signatureParameters, keyType);
  let ok: boolean;
  try {
    ok = verify(hash, csr.info, key, csr.signature);
  } catch {
    ok = false;
  }
  if (!ok) throw badSignature();
  return { spki: csr.spki, publicKey: key, keyType, names: csr.names };
}

/**
 * checkCsr, with the signature checked in the thread pool in 'threadpool' mode. ('batched' is
 * the caller's queue around checkCsr: alone, a check has nothing to be batched with.)
 */
export async function verifyCsr(
  csr: CsrStructure,
  mode: CryptoMode = 'sync',
): Promise<VerifiedCsr> {
  if (mode !== 'threadpool') return checkCsr(csr);
  const { key, keyType } = importPublicKey(csr.spki);
  const hash = verificationHash(csr.signatureAlgorithm, csr.signatureParameters, keyType);
  if (!(await verifyInPool(hash, csr.info, key, csr.signature))) throw badSignature();
  return { spki: csr.spki, publicKey: key, keyType, names: csr.names };
}

/** PEM in, verified CSR out. */
export async function readCsr(pem: string, mode: CryptoMode = 'sync'): Promise<VerifiedCsr> {
  return verifyCsr(parseCsr(csrDerFromPem(pem)), mode);
}

/** Every name a CSR asks for, as `kind:value`, for messages. */
export function describeNames(names: RequestedNames): string[] {
  return [
    ...names.uris.map((u) => `URI:${u}`),
    ...names.dnsNames.map((d) => `DNS:${d}`),
    ...names.ipAddresses.map((i) => `IP:${i}`),
    ...names.emails.map((e) => `email:${e}`),
    ...(names.otherCount > 0 ? [`${names.otherCount} other name(s)`] : []),
  ];
}

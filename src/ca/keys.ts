// Keys: the public key of a CSR (strictly parsed, imported the fast way), key types, the CA's
// Signer, key generation and key identifiers.
//
// Import costs on Node 24 (OpenSSL 3.5; bench/ca.ts measures them): a P-256 SPKI as DER 11-14 µs
// (a JWK of the same point 14-18 µs; on OpenSSL 3.0 the SPKI was the slow way, 114 against 58 µs);
// an RSA key as PKCS#1 DER 5 µs (SPKI 7-8 µs). Asking the imported key for its size
// (asymmetricKeyDetails) costs 10 µs more: the RSA modulus size is read from the DER instead.
// Every key is checked by our own DER reading first (types, curves, sizes, point form).

import type { KeyObject } from 'node:crypto';
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPair as generateKeyPairCallback,
  sign,
} from 'node:crypto';
import { promisify } from 'node:util';
import { MooringError } from '../errors';
import {
  bytesOf,
  children,
  contentOf,
  DerError,
  derNull,
  oid,
  oidToString,
  readRoot,
  sequence,
  TAG,
} from './der';
import { OID } from './oids';
import type { KeyAlgorithm, Signer } from './ports';

/** Key types a root may be generated with (config.ca.rootKeyType). */
export type RootKeyType = Exclude<KeyAlgorithm, 'ed25519'>;

export interface KeyPair {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
}

/** An imported CSR public key and its type. */
export interface ImportedKey {
  readonly key: KeyObject;
  readonly keyType: KeyAlgorithm;
}

const keyTypeError = (message: string): MooringError =>
  new MooringError('CA_ERR_KEY_TYPE', message);

const RSA_SIZES: Readonly<Record<number, KeyAlgorithm>> = {
  2048: 'rsa-2048',
  3072: 'rsa-3072',
  4096: 'rsa-4096',
};

/** The accepted key type of a KeyObject, or null. */
export function keyTypeOf(key: KeyObject): KeyAlgorithm | null {
  const details = key.asymmetricKeyDetails;
  switch (key.asymmetricKeyType) {
    case 'ec':
      if (details?.namedCurve === 'prime256v1') return 'ecdsa-p256';
      if (details?.namedCurve === 'secp384r1') return 'ecdsa-p384';
      return null;
    case 'rsa':
      return RSA_SIZES[details?.modulusLength ?? 0] ?? null;
    case 'ed25519':
      return 'ed25519';
    default:
      return null;
  }
}

/** The parts of a SubjectPublicKeyInfo. */
interface SpkiParts {
  readonly algorithm: string;
  /** Encoded parameters of the AlgorithmIdentifier, absent when there are none. */
  readonly parameters: Buffer | undefined;
  /** The subjectPublicKey BIT STRING content without its unused-bits byte. */
  readonly publicKey: Buffer;
}

/** Splits an SPKI (DER) into algorithm, parameters and key bits. */
export function splitSpki(spki: Buffer): SpkiParts {
  const root = readRoot(spki);
  if (root.tag !== TAG.sequence) throw keyTypeError('the public key is not a SubjectPublicKeyInfo');
  const [algId, bits, extra] = children(spki, root);
  if (algId?.tag !== TAG.sequence || bits?.tag !== TAG.bitString || extra !== undefined) {
    throw keyTypeError('the public key is not a SubjectPublicKeyInfo');
  }
  const [algOid, params, more] = children(spki, algId);
  if (algOid?.tag !== TAG.oid || more !== undefined) {
    throw keyTypeError('the public key algorithm identifier is malformed');
  }
  const content = contentOf(spki, bits);
  if (content.length < 2 || content[0] !== 0) {
    throw keyTypeError('the public key bit string is malformed');
  }
  return {
    algorithm: oidToString(contentOf(spki, algOid)),
    parameters: params === undefined ? undefined : bytesOf(spki, params),
    publicKey: content.subarray(1),
  };
}

const NULL_DER = derNull();
const CURVES: Readonly<Record<string, { name: 'P-256' | 'P-384'; pointLength: number }>> = {
  [OID.p256]: { name: 'P-256', pointLength: 65 },
  [OID.p384]: { name: 'P-384', pointLength: 97 },
};

function importEc(parts: SpkiParts, spki: Buffer): ImportedKey {
  const params = parts.parameters;
  if (params?.[0] !== TAG.oid) throw keyTypeError('ECDSA keys must name their curve');
  let curveOid: string;
  try {
    curveOid = oidToString(contentOf(params, readRoot(params)));
  } catch (err) {
    throw new MooringError('CA_ERR_KEY_TYPE', 'the ECDSA curve identifier is malformed', {
      cause: err,
    });
  }
  const curve = CURVES[curveOid];
  if (curve === undefined) {
    throw keyTypeError(`ECDSA curve ${curveOid} is not accepted (P-256 and P-384 are)`);
  }
  if (parts.publicKey.length !== curve.pointLength || parts.publicKey[0] !== 0x04) {
    throw keyTypeError(`the ${curve.name} public key must be an uncompressed point`);
  }
  try {
    return {
      key: createPublicKey({ key: spki, format: 'der', type: 'spki' }),
      keyType: curve.name === 'P-256' ? 'ecdsa-p256' : 'ecdsa-p384',
    };
  } catch (err) {
    throw new MooringError('CA_ERR_KEY_TYPE', `the ${curve.name} public key is invalid`, {
      cause: err,
    });
  }
}

/** The size in bits of the modulus of a PKCS#1 RSAPublicKey (DER); DerError when malformed. */
export function rsaModulusBits(pkcs1: Buffer): number {
  const [modulus, exponent, extra] = children(pkcs1, readRoot(pkcs1));
  if (modulus?.tag !== TAG.integer || exponent?.tag !== TAG.integer || extra !== undefined) {
    throw new DerError('not an RSAPublicKey');
  }
  let bytes = contentOf(pkcs1, modulus);
  if ((bytes[0] ?? 0x80) & 0x80) throw new DerError('the RSA modulus is not positive');
  while (bytes.length > 1 && bytes[0] === 0) bytes = bytes.subarray(1);
  const top = bytes[0] as number;
  return (bytes.length - 1) * 8 + (top === 0 ? 0 : 32 - Math.clz32(top));
}

function importRsa(parts: SpkiParts): ImportedKey {
  if (parts.parameters === undefined || !parts.parameters.equals(NULL_DER)) {
    throw keyTypeError('RSA key parameters must be NULL');
  }
  const bits = rsaModulusBits(parts.publicKey);
  const keyType = RSA_SIZES[bits];
  if (keyType === undefined) {
    throw keyTypeError(`RSA keys of ${bits} bits are not accepted (2048, 3072 and 4096 are)`);
  }
  try {
    return {
      key: createPublicKey({ key: parts.publicKey, format: 'der', type: 'pkcs1' }),
      keyType,
    };
  } catch (err) {
    throw new MooringError('CA_ERR_KEY_TYPE', 'the RSA public key is invalid', { cause: err });
  }
}

function importEd25519(parts: SpkiParts, spki: Buffer): ImportedKey {
  if (parts.parameters !== undefined) throw keyTypeError('Ed25519 keys have no parameters');
  if (parts.publicKey.length !== 32) throw keyTypeError('the Ed25519 public key is invalid');
  try {
    return {
      key: createPublicKey({ key: spki, format: 'der', type: 'spki' }),
      keyType: 'ed25519',
    };
  } catch (err) {
    throw new MooringError('CA_ERR_KEY_TYPE', 'the Ed25519 public key is invalid', { cause: err });
  }
}

/**
 * Imports the public key of a SubjectPublicKeyInfo (DER), refusing every key type but ECDSA
 * P-256/P-384 (uncompressed points), RSA 2048/3072/4096 and Ed25519 with CA_ERR_KEY_TYPE.
 */
export function importPublicKey(spki: Buffer): ImportedKey {
  let parts: SpkiParts;
  try {
    parts = splitSpki(spki);
  } catch (err) {
    if (err instanceof MooringError) throw err;
    throw new MooringError('CA_ERR_KEY_TYPE', 'the public key is malformed', { cause: err });
  }
  try {
    switch (parts.algorithm) {
      case OID.ecPublicKey:
        return importEc(parts, spki);
      case OID.rsaEncryption:
        return importRsa(parts);
      case OID.ed25519:
        return importEd25519(parts, spki);
      default:
        throw keyTypeError(
          `key algorithm ${parts.algorithm} is not accepted (ECDSA P-256/P-384, RSA 2048-4096, Ed25519 are)`,
        );
    }
  } catch (err) {
    // Bytes from the network: whatever part of them is malformed DER is the caller's error.
    if (err instanceof DerError) {
      throw new MooringError('CA_ERR_KEY_TYPE', 'the public key is malformed', { cause: err });
    }
    throw err;
  }
}

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits. */
export function keyIdentifier(spki: Buffer): Buffer {
  return createHash('sha1').update(splitSpki(spki).publicKey).digest();
}

/** The signature scheme a CA key signs with. */
function signatureScheme(key: KeyObject): { hash: string | null; algorithm: Buffer } {
  switch (key.asymmetricKeyType) {
    case 'rsa':
      return { hash: 'sha256', algorithm: sequence(oid(OID.sha256WithRSA), derNull()) };
    case 'ed25519':
      return { hash: null, algorithm: sequence(oid(OID.ed25519)) };
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      if (curve === 'prime256v1')
        return { hash: 'sha256', algorithm: sequence(oid(OID.ecdsaWithSHA256)) };
      if (curve === 'secp384r1')
        return { hash: 'sha384', algorithm: sequence(oid(OID.ecdsaWithSHA384)) };
      if (curve === 'secp521r1')
        return { hash: 'sha512', algorithm: sequence(oid(OID.ecdsaWithSHA512)) };
      throw new MooringError(
        'CA_ERR_KEY_TYPE',
        `CA keys on curve ${curve ?? '?'} are not supported`,
      );
    }
    default:
      throw new MooringError(
        'CA_ERR_KEY_TYPE',
        `CA keys of type ${key.asymmetricKeyType ?? '?'} are not supported`,
      );
  }
}

/** A Signer over a private KeyObject (kept parsed: never re-read a PEM per signature). */
export function createSigner(privateKey: KeyObject): Signer {
  const scheme = signatureScheme(privateKey);
  return {
    algorithmIdentifierDer: scheme.algorithm,
    sign: (data: Buffer): Buffer => sign(scheme.hash, data, privateKey),
    signInPool: (data: Buffer): Promise<Buffer> =>
      new Promise((resolve, reject) => {
        sign(scheme.hash, data, privateKey, (err, signature) =>
          err === null ? resolve(signature) : reject(err),
        );
      }),
  };
}

const generate = promisify(generateKeyPairCallback);

/** A fresh key pair (native; RSA 2048 takes ~150 ms, ECDSA well under 1 ms). */
export async function generateKeyPair(type: KeyAlgorithm): Promise<KeyPair> {
  switch (type) {
    case 'ecdsa-p256':
      return generate('ec', { namedCurve: 'P-256' });
    case 'ecdsa-p384':
      return generate('ec', { namedCurve: 'P-384' });
    case 'rsa-2048':
      return generate('rsa', { modulusLength: 2048 });
    case 'rsa-3072':
      return generate('rsa', { modulusLength: 3072 });
    case 'rsa-4096':
      return generate('rsa', { modulusLength: 4096 });
    case 'ed25519':
      return generate('ed25519');
  }
}

/** Parses a PEM private key (PKCS#8, SEC1 or PKCS#1) into a key pair. */
export function keyPairFromPem(pem: string): KeyPair {
  const privateKey = createPrivateKey(pem);
  return { privateKey, publicKey: createPublicKey(privateKey) };
}

export const privateKeyToPem = (key: KeyObject): string =>
  key.export({ format: 'pem', type: 'pkcs8' }).toString();

export const spkiOf = (key: KeyObject): Buffer => key.export({ format: 'der', type: 'spki' });

// A PKCS#10 CSR for a key pair: the public key and the proof of possession (the signature),
// an empty subject and no attributes. The CA takes identities and names from elsewhere (the
// caller's token, the serving names), never from the CSR: the agent's workload CSRs and the
// server's own serving CSR (src/adapters/tls-reloader.ts) are both written here.

import { sign, type KeyObject } from 'node:crypto';
import { bitString, derNull, explicit, oid, sequence, smallInteger, toPem } from './der';
import type { KeyPair } from './keys';

export interface SignatureScheme {
  /** Hash for crypto.sign, null for Ed25519. */
  readonly hash: string | null;
  readonly algorithmIdentifier: Buffer;
}

/** The signature algorithm the agent uses with a key: SHA-256 (SHA-384 for P-384) or Ed25519. */
export function signatureScheme(publicKey: KeyObject): SignatureScheme {
  const type = publicKey.asymmetricKeyType;
  if (type === 'rsa') {
    // sha256WithRSAEncryption, parameters NULL.
    return {
      hash: 'sha256',
      algorithmIdentifier: sequence(oid('1.2.840.113549.1.1.11'), derNull()),
    };
  }
  if (type === 'ed25519') {
    return { hash: null, algorithmIdentifier: sequence(oid('1.3.101.112')) };
  }
  if (type === 'ec') {
    const curve = publicKey.asymmetricKeyDetails?.namedCurve;
    if (curve === 'secp384r1') {
      return { hash: 'sha384', algorithmIdentifier: sequence(oid('1.2.840.10045.4.3.3')) };
    }
    if (curve === 'prime256v1') {
      return { hash: 'sha256', algorithmIdentifier: sequence(oid('1.2.840.10045.4.3.2')) };
    }
  }
  throw new RangeError(`unsupported key type ${type ?? 'unknown'}`);
}

/** A PEM PKCS#10 CSR with an empty subject, no attributes, signed by `key`. */
export function buildCsr(key: KeyPair): string {
  const scheme = signatureScheme(key.publicKey);
  const spki = key.publicKey.export({ format: 'der', type: 'spki' });
  const info = sequence(smallInteger(0), sequence(), spki, explicit(0));
  const signature = sign(scheme.hash, info, key.privateKey);
  return toPem(
    'CERTIFICATE REQUEST',
    sequence(info, scheme.algorithmIdentifier, bitString(signature)),
  );
}

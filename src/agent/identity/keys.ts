// The agent's keys: the types it can make, and the private key as it writes it. Its CSRs carry
// only the public key and the proof of possession (src/ca/csr-writer.ts): the CA takes the
// identity from the caller's token (PRODUCT.md: the CA refuses SANs other than the caller's own).

import type { KeyPair } from '../../ca/keys';
import type { KeyAlgorithm } from '../../ca/ports';

export const AGENT_KEY_TYPES: readonly KeyAlgorithm[] = [
  'ecdsa-p256',
  'ecdsa-p384',
  'rsa-2048',
  'rsa-3072',
  'rsa-4096',
  'ed25519',
];

/** The private key as PKCS#8 PEM, for key.pem. */
export const privateKeyPem = (key: KeyPair): string =>
  key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();

// Fixture builders for the CA tests: keys (test/fixtures/keys.ts: slow ones made once), CSRs with
// modifiers, a fixed clock, a counting random source, a CA config with overrides, and an
// in-memory KeyStore.

import { createHash, sign, X509Certificate, type KeyObject } from 'node:crypto';
import type { CAConfig } from '../../../src/config/types';
import { defaultConfig } from '../../../src/config/validate';
import {
  bitString,
  derNull,
  explicit,
  implicitPrimitive,
  octetString,
  oid,
  sequence,
  set,
  smallInteger,
  toPem,
} from '../../../src/ca/der';
import type { KeyPair } from '../../../src/ca/keys';
import { OID } from '../../../src/ca/oids';
import type {
  Clock,
  KeyAlgorithm,
  KeyStore,
  RandomSource,
  StoredCAState,
} from '../../../src/ca/ports';
import type { CAState } from '../../../src/ca/rotation';
import { MooringError } from '../../../src/errors';
import { encodeName } from '../../../src/ca/x509';
import { fixtureKey } from '../../fixtures/keys';

// --- keys ----------------------------------------------------------------------------------

/** Each (type, slot) asked for gets its own index into the fixture keys of that type. */
const slots = new Map<string, number>();
const nextIndex = new Map<KeyAlgorithm, number>();

/**
 * A key of `type`; `slot` gives distinct keys of the same type. Slow (RSA) keys come from the pool
 * made once before the tests (test/fixtures/keys.ts).
 */
export function testKey(type: KeyAlgorithm, slot = 0): KeyPair {
  const id = `${type}#${slot}`;
  let index = slots.get(id);
  if (index === undefined) {
    index = nextIndex.get(type) ?? 0;
    nextIndex.set(type, index + 1);
    slots.set(id, index);
  }
  return fixtureKey(type, index);
}

let nextRootSlot = 100;

/**
 * A key generator for roots: a new key on every call (two CAs never share a root key), generated
 * synchronously (RSA roots in tests do not wait on the thread pool).
 */
export function cachedKeyGenerator(): (type: KeyAlgorithm) => Promise<KeyPair> {
  return (type) => Promise.resolve(testKey(type, nextRootSlot++));
}

// --- CSRs ----------------------------------------------------------------------------------

export interface CsrSpec {
  key: KeyPair;
  subjectCN?: string;
  uris: string[];
  dnsNames: string[];
  ipAddresses: Buffer[];
  emails: string[];
  /** Override the signature algorithm OID (dotted) and hash. */
  signature?: { oid: string; hash: string | null; params?: Buffer };
  /** Flip a byte of the signature. */
  corruptSignature?: boolean;
  /** Sign with this key instead of the CSR's own (proof of possession fails). */
  signWith?: KeyObject;
  /** Put these bytes in place of the key's SubjectPublicKeyInfo (signed as they are). */
  spki?: Buffer;
}

export type CsrModifier = (spec: CsrSpec) => void;

export const withKey =
  (key: KeyPair): CsrModifier =>
  (s) => {
    s.key = key;
  };
export const withKeyType = (type: KeyAlgorithm, slot = 0): CsrModifier =>
  withKey(testKey(type, slot));
export const withUri =
  (uri: string): CsrModifier =>
  (s) => {
    s.uris.push(uri);
  };
export const withDns =
  (name: string): CsrModifier =>
  (s) => {
    s.dnsNames.push(name);
  };
export const withIp =
  (bytes: number[]): CsrModifier =>
  (s) => {
    s.ipAddresses.push(Buffer.from(bytes));
  };
export const withEmail =
  (email: string): CsrModifier =>
  (s) => {
    s.emails.push(email);
  };
export const withSubject =
  (cn: string): CsrModifier =>
  (s) => {
    s.subjectCN = cn;
  };
export const withSignature =
  (sigOid: string, hash: string | null, params?: Buffer): CsrModifier =>
  (s) => {
    s.signature = { oid: sigOid, hash, ...(params === undefined ? {} : { params }) };
  };
export const withCorruptSignature = (): CsrModifier => (s) => {
  s.corruptSignature = true;
};
/** The CSR carries `spki` instead of its key's SubjectPublicKeyInfo. */
export const withSpki =
  (spki: Buffer): CsrModifier =>
  (s) => {
    s.spki = spki;
  };
/**
 * An ECDSA SubjectPublicKeyInfo around a P-256 point whose namedCurve parameter is `curve`
 * (encoded as given: an empty or truncated OBJECT IDENTIFIER, say).
 */
export function ecSpkiWithCurve(curve: Buffer): Buffer {
  const point = testKey('ecdsa-p256')
    .publicKey.export({ format: 'der', type: 'spki' })
    .subarray(-65);
  return sequence(sequence(oid(OID.ecPublicKey), curve), bitString(point));
}
export const signedBy =
  (key: KeyObject): CsrModifier =>
  (s) => {
    s.signWith = key;
  };

function defaultSignature(key: KeyObject): { oid: string; hash: string | null; params?: Buffer } {
  if (key.asymmetricKeyType === 'rsa')
    return { oid: OID.sha256WithRSA, hash: 'sha256', params: derNull() };
  if (key.asymmetricKeyType === 'ed25519') return { oid: OID.ed25519, hash: null };
  if (key.asymmetricKeyType === 'ed448') return { oid: '1.3.101.113', hash: null };
  const curve = key.asymmetricKeyDetails?.namedCurve;
  return curve === 'secp384r1'
    ? { oid: OID.ecdsaWithSHA384, hash: 'sha384' }
    : { oid: OID.ecdsaWithSHA256, hash: 'sha256' };
}

/** The DER of a CSR built from modifiers (default: ECDSA P-256 key, empty subject, no SANs). */
export function csrDer(...modifiers: CsrModifier[]): Buffer {
  const spec: CsrSpec = {
    key: testKey('ecdsa-p256'),
    uris: [],
    dnsNames: [],
    ipAddresses: [],
    emails: [],
  };
  for (const m of modifiers) m(spec);
  const names = [
    ...spec.emails.map((e) => implicitPrimitive(1, Buffer.from(e))),
    ...spec.dnsNames.map((d) => implicitPrimitive(2, Buffer.from(d))),
    ...spec.uris.map((u) => implicitPrimitive(6, Buffer.from(u))),
    ...spec.ipAddresses.map((ip) => implicitPrimitive(7, ip)),
  ];
  const attributes =
    names.length === 0
      ? explicit(0)
      : explicit(
          0,
          sequence(
            oid(OID.extensionRequest),
            set(sequence(sequence(oid(OID.subjectAltName), octetString(sequence(...names))))),
          ),
        );
  const subject =
    spec.subjectCN === undefined
      ? sequence()
      : encodeName([{ oid: OID.commonName, value: spec.subjectCN }]);
  const spki = spec.spki ?? spec.key.publicKey.export({ format: 'der', type: 'spki' });
  const info = sequence(smallInteger(0), subject, spki, attributes);
  const scheme = spec.signature ?? defaultSignature(spec.key.privateKey);
  const signature = sign(scheme.hash, info, spec.signWith ?? spec.key.privateKey);
  if (spec.corruptSignature)
    signature[signature.length - 1] = (signature[signature.length - 1] as number) ^ 0xff;
  const algId =
    scheme.params === undefined
      ? sequence(oid(scheme.oid))
      : sequence(oid(scheme.oid), scheme.params);
  return sequence(info, algId, bitString(signature));
}

export const csrPem = (...modifiers: CsrModifier[]): string =>
  toPem('CERTIFICATE REQUEST', csrDer(...modifiers));

// --- time, randomness, config, store --------------------------------------------------------

export const T0 = new Date('2030-01-01T00:00:00Z');

export interface FixedClock extends Clock {
  set(date: Date): void;
  advance(seconds: number): void;
}

export function fixedClock(start: Date = T0): FixedClock {
  let now = new Date(start);
  return {
    now: () => new Date(now),
    set: (d) => {
      now = new Date(d);
    },
    advance: (s) => {
      now = new Date(now.getTime() + s * 1000);
    },
  };
}

/** Deterministic, distinct bytes per call (SHA-256 of a counter). */
export function countingRandom(): RandomSource {
  let n = 0;
  return {
    bytes: (size) => {
      const out = Buffer.alloc(size);
      for (let off = 0; off < size; off += 32) {
        createHash('sha256').update(String(n++)).digest().copy(out, off);
      }
      return out;
    },
  };
}

export const DAY = 86400;

/** config.ca with overrides (deep for `rotation`). */
export function caConfig(
  overrides: Partial<Omit<CAConfig, 'rotation'>> & {
    rotation?: Partial<CAConfig['rotation']>;
  } = {},
): CAConfig {
  const base = defaultConfig().ca;
  return { ...base, ...overrides, rotation: { ...base.rotation, ...(overrides.rotation ?? {}) } };
}

/** A KeyStore in memory, with the same optimistic versioning as the real ones. */
export class MemoryStore implements KeyStore<CAState> {
  private data: { json: string; version: string } | null = null;
  private counter = 0;
  saves = 0;

  load(): Promise<StoredCAState<CAState> | null> {
    return Promise.resolve(
      this.data === null
        ? null
        : { state: JSON.parse(this.data.json) as CAState, version: this.data.version },
    );
  }

  save(state: CAState, expectedVersion: string | null): Promise<string> {
    if ((this.data?.version ?? null) !== expectedVersion) {
      return Promise.reject(new MooringError('CA_ERR_CONFLICT', 'version mismatch'));
    }
    this.saves++;
    this.data = { json: JSON.stringify(state), version: `v${++this.counter}` };
    return Promise.resolve(this.data.version);
  }
}

// --- checks --------------------------------------------------------------------------------

/** True if `leafPem` was signed by one of `bundle` (node:crypto checkIssued + verify). */
export function verifiesAgainst(leafPem: string, bundle: readonly string[], at?: Date): boolean {
  const leaf = new X509Certificate(leafPem);
  if (at !== undefined) {
    const t = at.getTime();
    if (t < Date.parse(leaf.validFrom) || t > Date.parse(leaf.validTo)) return false;
  }
  return bundle.some((pem) => {
    const root = new X509Certificate(pem);
    if (
      at !== undefined &&
      (at.getTime() < Date.parse(root.validFrom) || at.getTime() > Date.parse(root.validTo))
    ) {
      return false;
    }
    return leaf.checkIssued(root) && leaf.verify(root.publicKey);
  });
}

/** Reads a MooringError's code from a rejected promise or a throwing function. */
export async function errorCode(fn: () => unknown): Promise<string> {
  try {
    await fn();
  } catch (err) {
    if (err instanceof MooringError) return err.code;
    throw err;
  }
  return 'no error';
}

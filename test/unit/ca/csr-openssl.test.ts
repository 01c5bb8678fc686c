// Differential test of the CSR reader against OpenSSL on well-formed CSRs (seeded): random key
// types, subjects, requested names and signature hashes, written by our DER writer or by
// `openssl req`, with good, corrupted or foreign signatures. For each, `openssl req -verify`
// and readCsr() must agree on the signature, on the public key (the exact SPKI bytes) and on
// the names asked for.

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describeNames, readCsr } from '../../../src/ca/csr';
import { fromPemAll, toPem } from '../../../src/ca/der';
import { OID } from '../../../src/ca/oids';
import type { KeyAlgorithm } from '../../../src/ca/ports';
import { readTree, SEED, writeTree, type Tree } from './der-fuzz';
import {
  csrDer,
  errorCode,
  signedBy,
  testKey,
  withCorruptSignature,
  withDns,
  withEmail,
  withIp,
  withKeyType,
  withSignature,
  withSubject,
  withUri,
  type CsrModifier,
} from './fixtures';

const RUNS = Number(process.env.FC_RUNS ?? 60);
let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'mooring-csr-openssl-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Names {
  readonly uris: string[];
  readonly dnsNames: string[];
  readonly ips: number[][];
  readonly emails: string[];
}

interface Case {
  readonly writer: 'ours' | 'openssl';
  readonly keyType: KeyAlgorithm;
  readonly subject: string | undefined;
  readonly names: Names;
  /** ECDSA only: the hash of the signature (RSA signs SHA-256, Ed25519 none). */
  readonly ecdsaHash: 'sha256' | 'sha384' | 'sha512';
  readonly signature: 'good' | 'corrupted' | 'foreign';
}

const label = fc.stringMatching(/^[a-z][a-z0-9-]{0,8}[a-z0-9]$/);
const names: fc.Arbitrary<Names> = fc.record({
  uris: fc.array(
    fc.tuple(label, label).map(([td, path]) => `spiffe://${td}.local/ns/${path}`),
    { maxLength: 2 },
  ),
  dnsNames: fc.array(
    fc.tuple(label, label).map(([a, b]) => `${a}.${b}`),
    { maxLength: 2 },
  ),
  ips: fc.array(
    fc.oneof(
      fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 }),
      fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 16, maxLength: 16 }),
    ),
    { maxLength: 2 },
  ),
  emails: fc.array(
    fc.tuple(label, label).map(([a, b]) => `${a}@${b}.example`),
    { maxLength: 1 },
  ),
});
const csrCase: fc.Arbitrary<Case> = fc.record({
  writer: fc.constantFrom('ours', 'openssl'),
  keyType: fc.constantFrom<KeyAlgorithm>('ecdsa-p256', 'ecdsa-p384', 'rsa-2048', 'ed25519'),
  subject: fc.option(label, { nil: undefined }),
  names,
  ecdsaHash: fc.constantFrom('sha256', 'sha384', 'sha512'),
  signature: fc.constantFrom('good', 'good', 'corrupted', 'foreign'),
});

const ECDSA_OID = {
  sha256: OID.ecdsaWithSHA256,
  sha384: OID.ecdsaWithSHA384,
  sha512: OID.ecdsaWithSHA512,
} as const;

const hex = (bytes: number[]): string =>
  bytes.length === 4
    ? bytes.join('.')
    : Array.from({ length: 8 }, (_, i) =>
        (((bytes[2 * i] as number) << 8) | (bytes[2 * i + 1] as number)).toString(16),
      ).join(':');

function ourCsr(c: Case): Buffer {
  const modifiers: CsrModifier[] = [
    withKeyType(c.keyType),
    ...c.names.uris.map(withUri),
    ...c.names.dnsNames.map(withDns),
    ...c.names.ips.map(withIp),
    ...c.names.emails.map(withEmail),
  ];
  if (c.subject !== undefined) modifiers.push(withSubject(c.subject));
  if (c.keyType.startsWith('ecdsa-'))
    modifiers.push(withSignature(ECDSA_OID[c.ecdsaHash], c.ecdsaHash));
  if (c.signature === 'corrupted') modifiers.push(withCorruptSignature());
  if (c.signature === 'foreign') modifiers.push(signedBy(testKey(c.keyType, 1).privateKey));
  return csrDer(...modifiers);
}

function opensslReq(c: Case, slot: number): Buffer {
  const keyFile = join(dir, `${c.keyType}-${slot}.pem`);
  writeFileSync(
    keyFile,
    testKey(c.keyType, slot).privateKey.export({ format: 'pem', type: 'pkcs8' }),
  );
  const san = [
    ...c.names.uris.map((u) => `URI:${u}`),
    ...c.names.dnsNames.map((d) => `DNS:${d}`),
    ...c.names.ips.map((ip) => `IP:${hex(ip)}`),
    ...c.names.emails.map((e) => `email:${e}`),
  ];
  const pem = execFileSync(
    'openssl',
    [
      'req',
      '-new',
      '-key',
      keyFile,
      '-subj',
      c.subject === undefined ? '/' : `/CN=${c.subject}`,
      ...(c.keyType.startsWith('ecdsa-') ? [`-${c.ecdsaHash}`] : []),
      ...(san.length === 0 ? [] : ['-addext', `subjectAltName=${san.join(',')}`]),
    ],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  return fromPemAll(pem, 'CERTIFICATE REQUEST')[0] as Buffer;
}

function opensslCsr(c: Case): Buffer {
  const der = opensslReq(c, 0);
  if (c.signature === 'corrupted') der[der.length - 1] = (der[der.length - 1] as number) ^ 0x01;
  if (c.signature !== 'foreign') return der;
  // openssl signs with the key it puts in the CSR: take the signature of another key's CSR.
  const [info, algId] = (readTree(der) as { items: readonly Tree[] }).items as [Tree, Tree];
  const [, , foreignSignature] = (readTree(opensslReq(c, 1)) as { items: readonly Tree[] })
    .items as [Tree, Tree, Tree];
  return writeTree({ tag: 0x30, items: [info, algId, foreignSignature] });
}

/** What OpenSSL reads: the verdict of -verify, the SPKI, the names (normalized as ours). */
function opensslReads(der: Buffer): { verified: boolean; spki: Buffer; names: string[] } {
  const file = join(dir, 'req.csr');
  writeFileSync(file, toPem('CERTIFICATE REQUEST', der));
  const r = spawnSync('openssl', ['req', '-in', file, '-verify', '-noout', '-pubkey', '-text'], {
    encoding: 'utf8',
  });
  const san = /X509v3 Subject Alternative Name: *\n\s*(.*)\n/.exec(r.stdout)?.[1];
  return {
    verified: r.status === 0 && /verify OK/.test(r.stdout + r.stderr),
    spki: fromPemAll(r.stdout, 'PUBLIC KEY')[0] as Buffer,
    names: (san === undefined ? [] : san.split(', '))
      .map((n) => n.replace(/^IP Address:/, 'IP:').toLowerCase())
      .sort(),
  };
}

it('agrees with `openssl req -verify` on the signature, the key and the names of well-formed CSRs', async () => {
  const verdicts = new Set<string>();
  await fc.assert(
    fc.asyncProperty(csrCase, async (c) => {
      const der = c.writer === 'ours' ? ourCsr(c) : opensslCsr(c);
      const theirs = opensslReads(der);
      const pem = toPem('CERTIFICATE REQUEST', der);
      const code = await errorCode(() => readCsr(pem));
      verdicts.add(`${c.writer} ${code}`);
      expect({ openssl: theirs.verified, ours: code }).toEqual({
        openssl: c.signature === 'good',
        ours: c.signature === 'good' ? 'no error' : 'CA_ERR_CSR_SIGNATURE',
      });
      if (code !== 'no error') return;
      const ours = await readCsr(pem);
      expect(ours.spki.equals(theirs.spki)).toBe(true);
      expect(
        describeNames(ours.names)
          .map((n) => n.toLowerCase())
          .sort(),
      ).toEqual(theirs.names);
    }),
    { seed: SEED, numRuns: RUNS, interruptAfterTimeLimit: 60_000 },
  );
  // Both writers, both verdicts.
  expect([...verdicts].sort()).toEqual([
    'openssl CA_ERR_CSR_SIGNATURE',
    'openssl no error',
    'ours CA_ERR_CSR_SIGNATURE',
    'ours no error',
  ]);
}, 120_000);

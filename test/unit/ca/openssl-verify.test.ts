// Every combination of CA key and CSR key type, with CSRs written by `openssl req`, checked by
// `openssl verify -x509_strict` for both TLS purposes.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Authority } from '../../../src/ca/authority';
import type { KeyAlgorithm } from '../../../src/ca/ports';
import type { CAConfig } from '../../../src/config/types';
import {
  cachedKeyGenerator,
  caConfig,
  countingRandom,
  fixedClock,
  MemoryStore,
  testKey,
} from './fixtures';

jest.setTimeout(120_000);

const dir = mkdtempSync(join(tmpdir(), 'mooring-matrix-'));
const CA_KEYS: CAConfig['rootKeyType'][] = ['ecdsa-p256', 'ecdsa-p384', 'rsa-2048'];
const CSR_KEYS: KeyAlgorithm[] = [
  'ecdsa-p256',
  'ecdsa-p384',
  'rsa-2048',
  'rsa-3072',
  'rsa-4096',
  'ed25519',
];
const ID = 'spiffe://cluster.local/ns/matrix/sa/test';

function opensslCsr(type: KeyAlgorithm): string {
  const keyFile = join(dir, `${type}.key`);
  writeFileSync(keyFile, testKey(type).privateKey.export({ format: 'pem', type: 'pkcs8' }));
  const csrFile = join(dir, `${type}.csr`);
  execFileSync('openssl', [
    'req',
    '-new',
    '-key',
    keyFile,
    '-subj',
    '/CN=ignored',
    '-out',
    csrFile,
    '-addext',
    `subjectAltName=URI:${ID}`,
  ]);
  return readFileSync(csrFile, 'utf8');
}

const csrs = new Map(CSR_KEYS.map((t) => [t, opensslCsr(t)]));
const cases = CA_KEYS.flatMap((ca) => CSR_KEYS.map((csr) => [ca, csr] as const));

describe('openssl verify -x509_strict', () => {
  const authorities = new Map<string, Authority>();
  beforeAll(async () => {
    for (const rootKeyType of CA_KEYS) {
      authorities.set(
        rootKeyType,
        await Authority.open(
          {
            trustDomain: 'cluster.local',
            ca: caConfig({ rootKeyType }),
            clock: fixedClock(new Date()),
            random: countingRandom(),
            store: new MemoryStore(),
            generateKey: cachedKeyGenerator(),
          },
          { create: true },
        ),
      );
    }
  });

  it.each(cases)(
    'accepts a certificate from a %s CA for a %s CSR as sslclient and sslserver',
    async (caKey, csrKey) => {
      const authority = authorities.get(caKey) as Authority;
      const chain = await authority.issueWorkload({
        csrPem: csrs.get(csrKey) as string,
        spiffeId: ID,
      });
      expect(chain.keyType).toBe(csrKey);
      const leaf = join(dir, `${caKey}-${csrKey}.pem`);
      const bundle = join(dir, `${caKey}-bundle.pem`);
      writeFileSync(leaf, chain.certificateChain.join(''));
      writeFileSync(bundle, chain.trustBundle.join(''));
      for (const purpose of ['sslclient', 'sslserver']) {
        const out = execFileSync('openssl', [
          'verify',
          '-x509_strict',
          '-purpose',
          purpose,
          '-CAfile',
          bundle,
          leaf,
        ]).toString();
        expect(out.trim()).toBe(`${leaf}: OK`);
      }
    },
  );

  it('refuses a certificate from another CA (the check can fail)', async () => {
    const a = authorities.get('ecdsa-p256') as Authority;
    const b = authorities.get('ecdsa-p384') as Authority;
    const chain = await a.issueWorkload({ csrPem: csrs.get('ecdsa-p256') as string, spiffeId: ID });
    const leaf = join(dir, 'foreign.pem');
    const bundle = join(dir, 'other-bundle.pem');
    writeFileSync(leaf, chain.certificateChain.join(''));
    writeFileSync(bundle, b.trustBundle().join(''));
    expect(() =>
      execFileSync('openssl', ['verify', '-x509_strict', '-CAfile', bundle, leaf], {
        stdio: 'pipe',
      }),
    ).toThrow();
  });
});

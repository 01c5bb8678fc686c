import { execFileSync } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { AGENT_KEY_TYPES, privateKeyPem } from '../../../../src/agent/identity/keys';
import { buildCsr } from '../../../../src/ca/csr-writer';
import { generateKeyPair as generateKey } from '../../../../src/ca/keys';
import { oid, smallInteger as integer, toPem } from '../../../../src/ca/der';
import { csrPublicKey } from '../../../fixtures/agent-pki';
import { fixtureKey } from '../../../fixtures/keys';

const dir = mkdtempSync(path.join(tmpdir(), 'agent-csr-'));

function openssl(csr: string, ...args: string[]): string {
  const file = path.join(dir, 'req.csr');
  writeFileSync(file, csr);
  return execFileSync('openssl', ['req', '-in', file, '-noout', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  }).toString();
}

describe('buildCsr', () => {
  // The keys come from the fixture pool: an RSA-4096 key made inside a test's timeout failed a
  // run on a busy machine.
  it.each(AGENT_KEY_TYPES)('writes a %s CSR whose signature openssl verifies', (type) => {
    const key = fixtureKey(type);
    const csr = buildCsr(key);
    expect(() => openssl(csr, '-verify')).not.toThrow();
    expect(csrPublicKey(csr).equals(key.publicKey)).toBe(true);
  });

  it('names no identity: empty subject, no SAN, no attributes', async () => {
    const text = openssl(buildCsr(await generateKey('ecdsa-p256')), '-text');
    expect(text).toMatch(/Subject:\s*\n/);
    expect(text).not.toContain('Subject Alternative Name');
    expect(text).toContain('Attributes:');
    expect(text).toContain('ecdsa-with-SHA256');
  });

  it('signs P-384 keys with SHA-384', async () => {
    expect(openssl(buildCsr(await generateKey('ecdsa-p384')), '-text')).toContain(
      'ecdsa-with-SHA384',
    );
  });

  it('uses a fresh key each time', async () => {
    const a = await generateKey('ecdsa-p256');
    const b = await generateKey('ecdsa-p256');
    expect(a.publicKey.equals(b.publicKey)).toBe(false);
  });

  it('exports the private key as PKCS#8 PEM that reads back to the same key', async () => {
    const key = await generateKey('ed25519');
    const pem = privateKeyPem(key);
    expect(pem).toMatch(/^-----BEGIN PRIVATE KEY-----/);
    expect(createPublicKey(pem).equals(key.publicKey)).toBe(true);
  });
});

describe('der', () => {
  it.each([
    ['0', 0, '020100'],
    ['127', 127, '02017f'],
    ['128 (needs a leading zero)', 128, '02020080'],
    ['256', 256, '02020100'],
  ])('encodes INTEGER %s', (_n, value, hex) => {
    expect(integer(value).toString('hex')).toBe(hex);
  });

  it.each([
    ['ecdsa-with-SHA256', '1.2.840.10045.4.3.2', '06082a8648ce3d040302'],
    ['commonName', '2.5.4.3', '0603550403'],
    ['Ed25519', '1.3.101.112', '06032b6570'],
  ])('encodes the OID of %s', (_n, dotted, hex) => {
    expect(oid(dotted).toString('hex')).toBe(hex);
  });

  it('wraps PEM at 64 columns', () => {
    const lines = toPem('X', Buffer.alloc(100, 1)).trim().split('\n');
    expect(lines[0]).toBe('-----BEGIN X-----');
    expect(lines[1]).toHaveLength(64);
    expect(lines[lines.length - 1]).toBe('-----END X-----');
  });
});

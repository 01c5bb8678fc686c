import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { makeCa, makeIntermediate, makeLeaf, makeServing } from '../../../fixtures/agent-pki';

describe('the test PKI fixture', () => {
  it('builds chains that openssl verifies', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pki-'));
    const root = makeCa('Root');
    const inter = makeIntermediate(root, 'Inter');
    const leaf = makeLeaf(inter, generateKeyPairSync('ed25519').publicKey);
    const serving = makeServing(root);
    writeFileSync(path.join(dir, 'root.pem'), root.pem);
    writeFileSync(path.join(dir, 'inter.pem'), inter.pem);
    writeFileSync(path.join(dir, 'leaf.pem'), leaf);
    writeFileSync(path.join(dir, 'serving.pem'), serving.cert);
    const verify = (...args: string[]): string =>
      execFileSync('openssl', [
        'verify',
        '-x509_strict',
        '-CAfile',
        path.join(dir, 'root.pem'),
        ...args,
      ]).toString();
    expect(verify('-untrusted', path.join(dir, 'inter.pem'), path.join(dir, 'leaf.pem'))).toContain(
      'OK',
    );
    expect(verify('-purpose', 'sslserver', path.join(dir, 'serving.pem'))).toContain('OK');
  });
});

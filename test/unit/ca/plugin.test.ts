import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openLocalCA } from '../../../src/adapters/local-ca';
import { Authority } from '../../../src/ca/authority';
import { loadPluginCA, type PluginFiles } from '../../../src/ca/plugin';
import { validateConfig } from '../../../src/config/validate';
import { MooringError } from '../../../src/errors';
import { caConfig, countingRandom, csrPem, fixedClock, withKeyType } from './fixtures';

// A root, an intermediate below it, a second intermediate below that, a leaf (not a CA), and an
// unrelated root, made with openssl as an operator would.
const dir = mkdtempSync(join(tmpdir(), 'mooring-plugin-'));
const file = (name: string): string => join(dir, name);
const read = (name: string): string => readFileSync(file(name), 'utf8');
const openssl = (...args: string[]): void => {
  execFileSync('openssl', args, { stdio: 'pipe' });
};

writeFileSync(
  file('ext.cnf'),
  [
    '[ca]',
    'basicConstraints = critical, CA:TRUE',
    'keyUsage = critical, keyCertSign, cRLSign',
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid',
    '[leaf]',
    'basicConstraints = critical, CA:FALSE',
    'keyUsage = critical, digitalSignature',
    '',
  ].join('\n'),
);

function makeRoot(name: string, keyAlg: string[]): void {
  openssl(
    'req',
    '-x509',
    '-new',
    '-nodes',
    ...keyAlg,
    '-keyout',
    file(`${name}-key.pem`),
    '-out',
    file(`${name}-cert.pem`),
    '-subj',
    `/O=Test/CN=${name}`,
    '-days',
    '3650',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  );
}
function makeSigned(
  name: string,
  parent: string,
  section: 'ca' | 'leaf',
  keyAlg: string[],
  days = 365,
): void {
  openssl(
    'req',
    '-new',
    '-nodes',
    ...keyAlg,
    '-keyout',
    file(`${name}-key.pem`),
    '-out',
    file(`${name}.csr`),
    '-subj',
    `/O=Test/CN=${name}`,
  );
  openssl(
    'x509',
    '-req',
    '-in',
    file(`${name}.csr`),
    '-CA',
    file(`${parent}-cert.pem`),
    '-CAkey',
    file(`${parent}-key.pem`),
    '-CAcreateserial',
    '-days',
    String(days),
    '-extfile',
    file('ext.cnf'),
    '-extensions',
    section,
    '-out',
    file(`${name}-cert.pem`),
  );
}

const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'];
const rsa = ['-newkey', 'rsa:2048'];
makeRoot('root', ec);
makeRoot('other-root', ec);
makeSigned('inter', 'root', 'ca', ec);
makeSigned('inter2', 'inter', 'ca', rsa);
makeSigned('leaf', 'root', 'leaf', ec);

const NOW = new Date();

function files(overrides: Partial<PluginFiles> = {}): PluginFiles {
  return {
    caCertPem: read('inter-cert.pem'),
    caKeyPem: read('inter-key.pem'),
    certChainPem: read('inter-cert.pem') + read('root-cert.pem'),
    rootCertPem: read('root-cert.pem'),
    ...overrides,
  };
}

function failure(f: PluginFiles, now = NOW): string {
  try {
    loadPluginCA(f, now);
    return 'ok';
  } catch (err) {
    if (!(err instanceof MooringError)) throw err;
    expect(err.code).toBe('CA_ERR_PLUGIN');
    return err.message;
  }
}

describe('checking a plugged-in CA', () => {
  it.each<[string, Partial<PluginFiles>, string]>([
    ['accepts an intermediate whose cert-chain.pem holds it and the root (Istio)', {}, 'ok'],
    [
      'accepts a cert-chain.pem holding only the intermediate',
      { certChainPem: read('inter-cert.pem') },
      'ok',
    ],
    [
      'accepts an empty cert-chain.pem when the root signed ca-cert directly',
      { certChainPem: '' },
      'ok',
    ],
    [
      'accepts a second-level intermediate with its chain',
      {
        caCertPem: read('inter2-cert.pem'),
        caKeyPem: read('inter2-key.pem'),
        certChainPem: read('inter2-cert.pem') + read('inter-cert.pem') + read('root-cert.pem'),
      },
      'ok',
    ],
    [
      'accepts the root itself as ca-cert',
      { caCertPem: read('root-cert.pem'), caKeyPem: read('root-key.pem'), certChainPem: '' },
      'ok',
    ],
    [
      'refuses a ca-cert that is not a CA',
      { caCertPem: read('leaf-cert.pem'), caKeyPem: read('leaf-key.pem') },
      'ca-cert.pem is not a CA certificate',
    ],
    [
      'refuses a key that does not match ca-cert',
      { caKeyPem: read('other-root-key.pem') },
      'ca-key.pem does not match',
    ],
    [
      'refuses a ca-cert that does not chain to root-cert.pem',
      { rootCertPem: read('other-root-cert.pem') },
      'does not chain to a root',
    ],
    [
      'refuses a second-level intermediate whose chain misses a link',
      {
        caCertPem: read('inter2-cert.pem'),
        caKeyPem: read('inter2-key.pem'),
        certChainPem: read('inter2-cert.pem'),
      },
      'does not chain to a root',
    ],
    [
      'refuses a root-cert.pem holding a non-root',
      { rootCertPem: read('inter-cert.pem') },
      'not a self-signed root',
    ],
    ['refuses an empty root-cert.pem', { rootCertPem: '' }, 'root-cert.pem holds no certificate'],
    [
      'refuses two certificates in ca-cert.pem',
      { caCertPem: read('inter-cert.pem') + read('root-cert.pem') },
      'exactly one certificate',
    ],
    [
      'refuses an unreadable key',
      { caKeyPem: 'not a key' },
      'ca-key.pem is not a readable private key',
    ],
  ])('%s', (_name, overrides, expected) => {
    const result = failure(files(overrides));
    if (expected === 'ok') expect(result).toBe('ok');
    else expect(result).toContain(expected);
  });

  it('refuses a ca-cert that is not valid now', () => {
    expect(failure(files(), new Date(Date.now() + 400 * 86400 * 1000))).toContain(
      'is not valid now',
    );
  });
});

describe('issuing from a plugged-in CA', () => {
  it.each([
    ['a first-level intermediate', files(), 1],
    [
      'a second-level RSA intermediate',
      files({
        caCertPem: read('inter2-cert.pem'),
        caKeyPem: read('inter2-key.pem'),
        certChainPem: read('inter2-cert.pem') + read('inter-cert.pem') + read('root-cert.pem'),
      }),
      2,
    ],
  ])(
    'chains the leaf through %s to the plugged-in root, verified by openssl',
    async (_name, f, intermediates) => {
      const plugin = loadPluginCA(f, NOW);
      const authority = await Authority.open(
        {
          trustDomain: 'cluster.local',
          ca: caConfig(),
          clock: fixedClock(NOW),
          random: countingRandom(),
          plugin,
        },
        { create: false },
      );
      const chain = await authority.issueWorkload({
        csrPem: csrPem(withKeyType('ecdsa-p384')),
        spiffeId: 'spiffe://cluster.local/vm/db',
      });
      expect(chain.certificateChain).toHaveLength(1 + intermediates);
      expect(chain.trustBundle).toEqual([new X509Certificate(read('root-cert.pem')).toString()]);
      const status = authority.status();
      expect(status.intermediate).toBe(true);
      expect(status.nextRotationAt).toBeNull();
      expect(await authority.tick()).toEqual({ reloaded: false, events: [] });
      await expect(authority.rotate()).rejects.toMatchObject({ code: 'CA_ERR_ROTATION' });

      const [leaf, ...rest] = chain.certificateChain;
      writeFileSync(file('issued-leaf.pem'), leaf as string);
      writeFileSync(file('issued-chain.pem'), rest.join(''));
      for (const purpose of ['sslclient', 'sslserver']) {
        const out = execFileSync('openssl', [
          'verify',
          '-x509_strict',
          '-purpose',
          purpose,
          '-CAfile',
          file('root-cert.pem'),
          '-untrusted',
          file('issued-chain.pem'),
          file('issued-leaf.pem'),
        ]).toString();
        expect(out).toContain('OK');
      }
    },
  );
});

describe('a plugged-in CA in local mode', () => {
  it("puts the plug-in's roots into <data-dir>/root-cert.pem, replacing a stale self-made one", async () => {
    const pluginDir = mkdtempSync(join(tmpdir(), 'mooring-plugin-dir-'));
    const f = files();
    writeFileSync(join(pluginDir, 'ca-cert.pem'), f.caCertPem);
    writeFileSync(join(pluginDir, 'ca-key.pem'), f.caKeyPem, { mode: 0o600 });
    writeFileSync(join(pluginDir, 'cert-chain.pem'), f.certChainPem);
    writeFileSync(join(pluginDir, 'root-cert.pem'), f.rootCertPem);
    const dataDir = mkdtempSync(join(tmpdir(), 'mooring-plugin-data-'));
    writeFileSync(join(dataDir, 'root-cert.pem'), read('other-root-cert.pem'));
    await openLocalCA({ config: validateConfig({ ca: { pluginDir } }), dataDir, create: true });
    const exported = readFileSync(join(dataDir, 'root-cert.pem'), 'utf8');
    expect(new X509Certificate(exported).fingerprint256).toBe(
      new X509Certificate(read('root-cert.pem')).fingerprint256,
    );
    expect(statSync(join(dataDir, 'root-cert.pem')).mode & 0o777).toBe(0o644);
  });
});

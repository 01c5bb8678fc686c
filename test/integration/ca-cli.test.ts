import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { humanDuration, parseDuration } from '../../src/cli/ca';
import { runCli } from '../fixtures/cli';
import { defaultConfig } from '../../src/config/validate';
import { csrPem, withDns, withKeyType } from '../unit/ca/fixtures';

const run = (args: string[], stdinText?: string) => runCli(args, stdinText);

const tempDir = (): string => mkdtempSync(join(tmpdir(), 'mooring-ca-cli-'));
const ID = 'spiffe://cluster.local/ns/vm/sa/db';

/** `mooring ca issue` on the store in `dir` for the CSR file `csr`, then `extra`. */
const issueArgs = (dir: string, csr: string, ...extra: string[]): string[] => [
  ...['ca', 'issue', '--data-dir', dir, '--csr', csr, '--spiffe-id', ID],
  ...extra,
];

function writeCsr(dir: string, pem = csrPem()): string {
  const path = join(dir, 'req.csr');
  writeFileSync(path, pem);
  return path;
}

describe('mooring ca init', () => {
  it('creates the CA and the admin token, and keeps an existing CA on a second run', async () => {
    const dir = join(tempDir(), 'store');
    const first = await run(['ca', 'init', '--data-dir', dir]);
    expect(first).toMatchObject({ code: 0, stderr: '' });
    expect(first.stdout).toMatch(/^CA created: local store /);
    expect(statSync(join(dir, 'ca-state.json')).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'admin-token')).mode & 0o777).toBe(0o600);
    const rootBefore = readFileSync(join(dir, 'root-cert.pem'), 'utf8');

    const second = await run(['ca', 'init', '--data-dir', dir]);
    expect(second.code).toBe(0);
    expect(second.stdout).toMatch(/^CA already exists, nothing changed/);
    expect(readFileSync(join(dir, 'root-cert.pem'), 'utf8')).toBe(rootBefore);
  });

  it('takes the data dir from the config file when --data-dir is absent', async () => {
    const dir = tempDir();
    const config = join(dir, 'mooring.yaml');
    writeFileSync(
      config,
      `server:\n  dataDir: ${join(dir, 'from-config')}\nca:\n  rootKeyType: ecdsa-p384\n`,
    );
    expect((await run(['ca', 'init', '--config', config])).code).toBe(0);
    const root = new X509Certificate(readFileSync(join(dir, 'from-config', 'root-cert.pem')));
    expect(root.publicKey.asymmetricKeyDetails?.namedCurve).toBe('secp384r1');
  });

  it('fails with the config error for an invalid config', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'bad.yaml'), 'ca:\n  rootKeyType: dsa\n');
    const result = await run(['ca', 'init', '--config', join(dir, 'bad.yaml'), '--data-dir', dir]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('CFG_ERR_INVALID');
  });
});

describe('mooring ca status', () => {
  it('shows the root, its expiry and the next rotation as text', async () => {
    const dir = tempDir();
    await run(['ca', 'init', '--data-dir', dir]);
    const result = await run(['ca', 'status', '--data-dir', dir]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain(`CA:            local store ${dir}`);
    expect(result.stdout).toContain('Trust bundle:  1 root');
    expect(result.stdout).toMatch(
      /- active {3}O=cluster\.local, CN=Mooring Root CA, serialNumber=[0-9a-f]{16} {2}\[ecdsa-p256\]/,
    );
    expect(result.stdout).toMatch(
      /Next rotation: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(in 29\d\dd \d+h\)/,
    );
  });

  it('prints JSON for machines', async () => {
    const dir = tempDir();
    await run(['ca', 'init', '--data-dir', dir]);
    const result = await run(['ca', 'status', '--data-dir', dir, '-o', 'json']);
    const status = JSON.parse(result.stdout) as {
      mode: string;
      roots: { status: string; notAfter: string; fingerprint: string }[];
      issuer: { fingerprint: string };
      intermediate: boolean;
      nextRotationAt: string;
    };
    expect(status.mode).toBe('local');
    expect(status.roots).toHaveLength(1);
    expect(status.roots[0]?.status).toBe('active');
    expect(status.roots[0]?.notAfter).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(status.issuer.fingerprint).toBe(status.roots[0]?.fingerprint);
    expect(status.intermediate).toBe(false);
    expect(Date.parse(status.nextRotationAt)).toBeGreaterThan(Date.now());
  });

  it('fails when there is no CA yet, naming the directory, and creates nothing', async () => {
    const dir = join(tempDir(), 'empty');
    const result = await run(['ca', 'status', '--data-dir', dir]);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`CA_ERR_STORE: there is no CA in the data directory ${dir}:`);
    expect(result.stderr).toContain(
      'if your CA lives elsewhere, name its directory (--data-dir DIR',
    );
    expect(result.stderr).toContain(`mooring ca init --data-dir ${dir}`);
    expect(existsSync(join(dir, 'ca-state.json'))).toBe(false);
  });

  it('looks where `mooring serve` and `make run` keep the CA when --data-dir is absent, and says so', async () => {
    const cwd = tempDir();
    const expected = join(cwd, defaultConfig().server.dataDir);
    const before = process.cwd();
    process.chdir(cwd);
    try {
      for (const command of ['status', 'rotate']) {
        const result = await run(['ca', command]);
        expect(result.code).toBe(1);
        expect(result.stderr).toContain(`there is no CA in the data directory ${expected}:`);
      }
    } finally {
      process.chdir(before);
    }
    expect(existsSync(expected)).toBe(false);
  });

  it('rejects an unknown output format as a usage error', async () => {
    expect((await run(['ca', 'status', '-o', 'yaml'])).code).toBe(2);
  });
});

describe('mooring ca rotate', () => {
  it('adds a pending root that status shows, and refuses a second rotation', async () => {
    const dir = tempDir();
    await run(['ca', 'init', '--data-dir', dir]);
    const rotated = await run(['ca', 'rotate', '--data-dir', dir]);
    expect(rotated.code).toBe(0);
    expect(rotated.stdout).toMatch(/^rotation started: new root [0-9A-F:]{95} issues from \d{4}-/);
    expect(
      readFileSync(join(dir, 'root-cert.pem'), 'utf8').match(/BEGIN CERTIFICATE/g),
    ).toHaveLength(2);

    const status = await run(['ca', 'status', '--data-dir', dir]);
    expect(status.stdout).toContain('Trust bundle:  2 roots');
    expect(status.stdout).toMatch(/- pending {2}O=cluster\.local/);
    expect(status.stdout).toMatch(/issues from {2}\d{4}-.* \(in 1[45]m\)/);
    expect(status.stdout).toMatch(/Next rotation: under way, new root issues from /);

    const again = await run(['ca', 'rotate', '--data-dir', dir]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('CA_ERR_ROTATION');
  });
});

describe('mooring ca rotate beside a running server', () => {
  it('is picked up by the server on its next tick', async () => {
    const dir = tempDir();
    const { openLocalCA } = await import('../../src/adapters/local-ca');
    const { defaultConfig } = await import('../../src/config/validate');
    const server = await openLocalCA({ config: defaultConfig(), dataDir: dir, create: true });
    expect(server.authority.trustBundle()).toHaveLength(1);
    expect((await run(['ca', 'rotate', '--data-dir', dir])).code).toBe(0);
    expect(await server.authority.tick()).toEqual({ reloaded: true, events: [] });
    expect(server.authority.trustBundle()).toHaveLength(2);
    expect(server.authority.status().roots.map((r) => r.status)).toEqual(['active', 'pending']);
  });
});

describe('mooring ca issue', () => {
  it('prints the chain of a certificate for the SPIFFE ID that openssl verifies against the bundle', async () => {
    const dir = tempDir();
    await run(['ca', 'init', '--data-dir', dir]);
    const result = await run(
      issueArgs(dir, writeCsr(dir, csrPem(withKeyType('rsa-2048'))), '--ttl', '2h'),
    );
    expect(result.code).toBe(0);
    expect(result.stderr).toMatch(
      /issued spiffe:\/\/cluster\.local\/ns\/vm\/sa\/db, serial [0-9a-f]{32}, expires/,
    );
    const leaf = new X509Certificate(result.stdout);
    expect(leaf.subjectAltName).toBe(`URI:${ID}`);
    expect(Date.parse(leaf.validTo) - Date.parse(leaf.validFrom)).toBe((2 * 3600 + 60) * 1000);
    writeFileSync(join(dir, 'leaf.pem'), result.stdout);
    const out = execFileSync('openssl', [
      'verify',
      '-x509_strict',
      '-purpose',
      'sslclient',
      '-CAfile',
      join(dir, 'root-cert.pem'),
      join(dir, 'leaf.pem'),
    ]);
    expect(out.toString()).toContain('OK');
  });

  it('reads the CSR from stdin with --csr -', async () => {
    const dir = tempDir();
    await run(['ca', 'init', '--data-dir', dir]);
    const result = await run(issueArgs(dir, '-'), csrPem());
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^-----BEGIN CERTIFICATE-----/);
  });

  it.each([
    [
      'a SPIFFE ID outside the trust domain',
      ['--spiffe-id', 'spiffe://other/ns/a/sa/b'],
      1,
      'CA_ERR_SPIFFE_ID',
    ],
    ['a lifetime above the maximum', ['--spiffe-id', ID, '--ttl', '8d'], 1, 'CA_ERR_TTL'],
    ['an unreadable duration', ['--spiffe-id', ID, '--ttl', '2 weeks'], 2, 'invalid duration'],
    ['no SPIFFE ID', [], 2, "required option '--spiffe-id <id>' not specified"],
  ])('fails for %s', async (_name, extra, code, message) => {
    const dir = tempDir();
    await run(['ca', 'init', '--data-dir', dir]);
    const result = await run(['ca', 'issue', '--data-dir', dir, '--csr', writeCsr(dir), ...extra]);
    expect(result.code).toBe(code);
    expect(result.stderr).toContain(message);
    expect(result.stdout).toBe('');
  });

  it('names the CSR file it cannot read', async () => {
    const dir = tempDir();
    await run(['ca', 'init', '--data-dir', dir]);
    const missing = join(dir, 'missing.csr');
    const result = await run(issueArgs(dir, missing));
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(`CA_ERR_CSR: cannot read the CSR file ${missing}: ENOENT`);
  });

  it('refuses to issue without the configuration the CA was made with (another trust domain)', async () => {
    const dir = tempDir();
    const config = join(dir, 'acme.yaml');
    writeFileSync(config, 'trustDomain: acme.io\n');
    expect((await run(['ca', 'init', '--data-dir', dir, '--config', config])).code).toBe(0);
    const args = ['ca', 'issue', '--data-dir', dir, '--csr', writeCsr(dir)];
    const without = await run([...args, '--spiffe-id', 'spiffe://acme.io/vm/a']);
    expect(without.code).toBe(1);
    expect(without.stderr).toContain(
      'CFG_ERR_INVALID: the CA was made for trust domain "acme.io" but trustDomain is "cluster.local"',
    );
    const withConfig = await run([
      ...args,
      '--config',
      config,
      '--spiffe-id',
      'spiffe://acme.io/vm/a',
    ]);
    expect(withConfig.code).toBe(0);
  });

  it('refuses a CSR that asks for a DNS name', async () => {
    const dir = tempDir();
    await run(['ca', 'init', '--data-dir', dir]);
    const result = await run(issueArgs(dir, writeCsr(dir, csrPem(withDns('db.example')))));
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('CA_ERR_SAN: the CSR asks for DNS:db.example');
  });
});

describe('durations', () => {
  it.each([
    ['3600', 3600],
    ['24h', 86400],
    ['1d12h', 129600],
    ['90m', 5400],
    ['45s', 45],
  ])('parses %s', (text, seconds) => {
    expect(parseDuration(text)).toBe(seconds);
  });

  it.each([['2 weeks'], [''], ['1.5h'], ['h']])('refuses %j', (text) => {
    expect(() => parseDuration(text)).toThrow('invalid duration');
  });

  it.each([
    [0, 'now'],
    [59_000, '59s'],
    [15 * 60_000, '15m'],
    [(3 * 3600 + 120) * 1000, '3h 2m'],
    [(400 * 86400 + 7200) * 1000, '400d 2h'],
  ])('prints %d ms as %s', (ms, text) => {
    expect(humanDuration(ms)).toBe(text);
  });
});

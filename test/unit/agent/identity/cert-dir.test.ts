import {
  promises as fs,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { CertDirectory, DATA_LINK } from '../../../../src/agent/identity/cert-dir';

const fresh = (): string => mkdtempSync(path.join(tmpdir(), 'agent-out-'));
const content = (n: number) => ({
  'cert-chain.pem': `chain ${n}\n`.repeat(200),
  'key.pem': `key ${n}\n`,
  'root-cert.pem': `root ${n}\n`,
});
const versions = (dir: string): string[] => readdirSync(dir).filter((e) => e.startsWith('..v'));

describe('CertDirectory', () => {
  it('writes the three files under their stable names, the key 0600', async () => {
    const dir = fresh();
    await new CertDirectory(dir).write(content(1));
    expect(readFileSync(path.join(dir, 'cert-chain.pem'), 'utf8')).toBe(
      content(1)['cert-chain.pem'],
    );
    expect(readFileSync(path.join(dir, 'key.pem'), 'utf8')).toBe('key 1\n');
    expect(readFileSync(path.join(dir, 'root-cert.pem'), 'utf8')).toBe('root 1\n');
    expect(statSync(path.join(dir, 'key.pem')).mode & 0o777).toBe(0o600);
    expect(statSync(path.join(dir, 'cert-chain.pem')).mode & 0o777).toBe(0o644);
  });

  it('keeps the key 0600, and the directory it makes unwritable by others, whatever the umask', async () => {
    const dir = path.join(fresh(), 'out');
    const old = process.umask(0);
    try {
      await new CertDirectory(dir).write(content(1));
    } finally {
      process.umask(old);
    }
    expect(statSync(path.join(dir, 'key.pem')).mode & 0o777).toBe(0o600);
    expect(statSync(dir).mode & 0o777).toBe(0o755);
  });

  it('switches every file at once through the ..data symlink', async () => {
    const dir = fresh();
    const d = new CertDirectory(dir);
    const v1 = await d.write(content(1));
    const v2 = await d.write(content(2));
    expect(readlinkSync(path.join(dir, DATA_LINK))).toBe(v2);
    expect(readlinkSync(path.join(dir, 'key.pem'))).toBe(path.join(DATA_LINK, 'key.pem'));
    expect(readFileSync(path.join(dir, 'key.pem'), 'utf8')).toBe('key 2\n');
    expect(versions(dir).sort()).toEqual([v1, v2].sort());
  });

  it('keeps only the current and the previous version', async () => {
    const dir = fresh();
    const d = new CertDirectory(dir);
    for (let i = 1; i <= 4; i++) await d.write(content(i));
    expect(versions(dir)).toHaveLength(2);
    expect(readdirSync(dir).filter((e) => e.includes('.tmp-'))).toEqual([]);
  });

  it('writes only the root before the first certificate, then adds the certificate', async () => {
    const dir = fresh();
    const d = new CertDirectory(dir);
    await d.write({ 'root-cert.pem': 'root 0\n' });
    await expect(fs.access(path.join(dir, 'key.pem'))).rejects.toThrow();
    await d.write(content(1));
    expect(readFileSync(path.join(dir, 'key.pem'), 'utf8')).toBe('key 1\n');
  });

  it('replaces plain files left by an older writer', async () => {
    const dir = fresh();
    await fs.writeFile(path.join(dir, 'key.pem'), 'stale');
    await new CertDirectory(dir).write(content(1));
    expect(readFileSync(path.join(dir, 'key.pem'), 'utf8')).toBe('key 1\n');
  });

  it('reads back the current version', async () => {
    const dir = fresh();
    const d = new CertDirectory(dir);
    expect(await d.read()).toBeNull();
    await d.write(content(1));
    await d.write(content(2));
    expect(await d.read()).toEqual(content(2));
  });

  it('creates the output directory when it is missing', async () => {
    const dir = path.join(fresh(), 'a', 'b');
    await new CertDirectory(dir).write(content(1));
    expect(readFileSync(path.join(dir, 'root-cert.pem'), 'utf8')).toBe('root 1\n');
  });

  it('never shows a reader a half-written file or a mismatched pair through ..data', async () => {
    const dir = fresh();
    const d = new CertDirectory(dir);
    await d.write(content(0));
    let writing = true;
    const seen = new Set<string>();
    const problems: string[] = [];
    const reader = (async () => {
      while (writing) {
        // A careful reader resolves ..data once and reads both files from that version.
        const version = await fs.readlink(path.join(dir, DATA_LINK));
        try {
          const key = await fs.readFile(path.join(dir, version, 'key.pem'), 'utf8');
          const chain = await fs.readFile(path.join(dir, version, 'cert-chain.pem'), 'utf8');
          const n = /key (\d+)/.exec(key)?.[1];
          if (chain !== content(Number(n))['cert-chain.pem']) problems.push(`mismatch at ${n}`);
          seen.add(String(n));
        } catch (err) {
          // The version was removed two switches later: a slow reader retries.
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
        // A naive reader of the stable name always sees a whole file.
        const chain = await fs.readFile(path.join(dir, 'cert-chain.pem'), 'utf8');
        const n = /chain (\d+)/.exec(chain)?.[1];
        if (chain !== content(Number(n))['cert-chain.pem']) problems.push(`partial chain ${n}`);
      }
    })();
    for (let i = 1; i <= 150; i++) await d.write(content(i));
    writing = false;
    await reader;
    expect(problems).toEqual([]);
    expect(seen.size).toBeGreaterThan(3);
    // 150 versions, each written with fsyncs: seconds on a busy disk, not a speed goal.
  }, 60_000);
});

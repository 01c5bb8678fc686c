import crypto from 'node:crypto';
import { promises as fs, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { readRootFile, RootFileWatcher } from '../../../../src/agent/identity/root-watcher';
import { makeCa } from '../../../fixtures/agent-pki';

const log = pino({ level: 'silent' });
const rootA = makeCa('Root A').pem;
const rootB = makeCa('Root B').pem;

/** A directory laid out like a ConfigMap volume: ..data -> version, root-cert.pem -> ..data/... */
async function configMapVolume(
  content: string,
): Promise<{ dir: string; file: string; update(c: string): Promise<void> }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'agent-root-'));
  let n = 0;
  const update = async (c: string): Promise<void> => {
    n += 1;
    const version = `..2030_01_01_00_00_0${n}`;
    await fs.mkdir(path.join(dir, version));
    await fs.writeFile(path.join(dir, version, 'root-cert.pem'), c);
    await fs.symlink(version, path.join(dir, '..data_tmp'));
    await fs.rename(path.join(dir, '..data_tmp'), path.join(dir, '..data'));
  };
  await update(content);
  await fs.symlink('..data/root-cert.pem', path.join(dir, 'root-cert.pem'));
  return { dir, file: path.join(dir, 'root-cert.pem'), update };
}

function nextChange(): {
  onChange: (roots: readonly string[]) => void;
  changed: Promise<readonly string[]>;
} {
  let resolve: (roots: readonly string[]) => void = () => undefined;
  const changed = new Promise<readonly string[]>((r) => (resolve = r));
  return { onChange: (roots) => resolve(roots), changed };
}

async function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<T>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`nothing within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** A watcher that polls every 20 ms (no notifications), what it reported, and its first report. */
function pollingWatcher(file: string): {
  watcher: RootFileWatcher;
  seen: (readonly string[])[];
  firstChange(): Promise<void>;
} {
  const seen: (readonly string[])[] = [];
  const watcher = new RootFileWatcher(file, {
    pollMs: 20,
    log,
    onChange: (r) => void seen.push(r),
    watch: false,
  });
  const firstChange = (): Promise<void> =>
    within(
      (async () => {
        while (seen.length === 0) await new Promise((r) => setTimeout(r, 10));
      })(),
      3000,
    );
  return { watcher, seen, firstChange };
}

describe('readRootFile', () => {
  it('reads every root of a bundle', async () => {
    const v = await configMapVolume(rootA + rootB);
    expect(await readRootFile(v.file)).toEqual({ ok: true, roots: [rootA, rootB] });
  });

  it.each([
    ['an empty file', '', /no certificate/],
    [
      'a file with a broken certificate',
      '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n',
      /does not parse/,
    ],
  ])('refuses %s', async (_name, content, reason) => {
    const v = await configMapVolume(content);
    const r = await readRootFile(v.file);
    expect(r.ok).toBe(false);
    expect(r.ok ? '' : r.reason).toMatch(reason);
  });

  it('refuses a missing file', async () => {
    expect((await readRootFile('/nonexistent/root.pem')).ok).toBe(false);
  });
});

describe('RootFileWatcher', () => {
  it('sees the kubelet-style ..data symlink swap through directory notifications', async () => {
    const v = await configMapVolume(rootA);
    const { onChange, changed } = nextChange();
    const w = new RootFileWatcher(v.file, { pollMs: 60_000, log, onChange });
    w.start([rootA]);
    try {
      await v.update(rootA + rootB);
      expect(await within(changed, 3000)).toEqual([rootA, rootB]);
    } finally {
      w.stop();
    }
  });

  it('sees a change by polling when notifications are off', async () => {
    const v = await configMapVolume(rootA);
    const { onChange, changed } = nextChange();
    const w = new RootFileWatcher(v.file, { pollMs: 50, log, onChange, watch: false });
    w.start([rootA]);
    try {
      await v.update(rootB);
      expect(await within(changed, 3000)).toEqual([rootB]);
    } finally {
      w.stop();
    }
  });

  it('keeps the last roots while the file is unusable, then takes the next good content', async () => {
    const v = await configMapVolume(rootA);
    const { watcher: w, seen, firstChange } = pollingWatcher(v.file);
    w.start([rootA]);
    try {
      await v.update('garbage');
      await new Promise((r) => setTimeout(r, 150));
      expect(seen).toEqual([]);
      await v.update(rootB);
      await firstChange();
      expect(seen).toEqual([[rootB]]);
    } finally {
      w.stop();
    }
  });

  it('parses the file again only when its text has changed', async () => {
    const v = await configMapVolume(rootA);
    const { X509Certificate } = crypto;
    const parsed = jest
      .spyOn(crypto, 'X509Certificate')
      .mockImplementation((pem) => new X509Certificate(pem));
    const { watcher: w, seen, firstChange } = pollingWatcher(v.file);
    w.start([rootA]);
    try {
      await new Promise((r) => setTimeout(r, 200));
      // About ten polls of one unchanged certificate: parsed at the first only.
      expect(parsed).toHaveBeenCalledTimes(1);
      await v.update(rootA + rootB);
      await firstChange();
      expect(seen).toEqual([[rootA, rootB]]);
      expect(parsed).toHaveBeenCalledTimes(3);
    } finally {
      w.stop();
      parsed.mockRestore();
    }
  });

  it('does not report the content it started with', async () => {
    const v = await configMapVolume(rootA);
    const seen: unknown[] = [];
    const w = new RootFileWatcher(v.file, { pollMs: 20, log, onChange: (r) => void seen.push(r) });
    w.start([rootA]);
    await new Promise((r) => setTimeout(r, 120));
    w.stop();
    expect(seen).toEqual([]);
  });
});

// The original-destination addon builds with no network at all (a fresh network namespace: not
// even loopback is up), from a copy of native/original-dst, whatever nodedir `npm run` exports
// from a ~/.npmrc: node-gyp never downloads headers. Root (unshare --net), like the other netns tests.

import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { checkPreconditions, ROOT, run } from './support';

jest.setTimeout(180_000);

describe('building the original-destination addon', () => {
  let dir: string;
  beforeAll(async () => {
    await checkPreconditions(['unshare', 'python3', 'make', 'cc'], []);
    dir = mkdtempSync(join(tmpdir(), 'mooring-addon-build-'));
    cpSync(join(ROOT, 'native/original-dst'), join(dir, 'native/original-dst'), {
      recursive: true,
      filter: (src) => !/\/original-dst\/build(\/|$)/.test(src), // not this machine's build
    });
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
    symlinkSync(join(ROOT, 'hack'), join(dir, 'hack'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('builds offline with the running Node headers, then finds it up to date', async () => {
    const script = join(dir, 'native/original-dst/build.sh');
    const env = [
      `PATH=${dirname(process.execPath)}:${process.env.PATH ?? ''}`,
      `HOME=${process.env.HOME ?? '/root'}`,
      'npm_config_nodedir=/nonexistent', // what `npm run` exports from a ~/.npmrc nodedir=
    ];
    const build = await run('unshare', ['--net', 'env', '-i', ...env, 'bash', script], 170_000);
    expect({ code: build.code, stderr: build.code === 0 ? '' : build.stderr }).toEqual({
      code: 0,
      stderr: '',
    });
    const addon = join(dir, 'native/original-dst/build/Release/original_dst.node');
    expect(existsSync(addon)).toBe(true);
    expect(readFileSync(join(dir, 'native/original-dst/build/mooring-stamp'), 'utf8')).toMatch(
      new RegExp(`^node=${process.version} sources=[0-9a-f]{64}\\n$`),
    );
    expect(build.stderr).toContain(`[addon] node-gyp rebuild for Node ${process.version}`);

    const again = await run('unshare', ['--net', 'env', '-i', ...env, 'bash', script]);
    expect(again).toMatchObject({ code: 0, stdout: '', stderr: '' });
  });
});

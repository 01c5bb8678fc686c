// `make run` as a newcomer meets it: it compiles only when something changed, and runs the server
// on the data directory every other command uses by default. Checked with `make -n` (what make
// would run) in a copy of the Makefile whose files have times the test sets.

import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { defaultConfig } from '../../src/config/validate';

const ROOT = join(__dirname, '..', '..');

/** A checkout with the Makefile, its Node finder, the TypeScript settings and one source. */
function sandbox(): string {
  const dir = mkdtempSync(join(tmpdir(), 'mooring-make-'));
  for (const file of [
    'Makefile',
    'hack/node.sh',
    'package-lock.json',
    'tsconfig.json',
    'tsconfig.build.json',
  ]) {
    mkdirSync(dirname(join(dir, file)), { recursive: true });
    copyFileSync(join(ROOT, file), join(dir, file));
  }
  mkdirSync(join(dir, 'node_modules'));
  mkdirSync(join(dir, 'src', 'ca'), { recursive: true });
  writeFileSync(join(dir, 'src', 'ca', 'a.ts'), 'export const a = 1;\n');
  at(
    dir,
    [
      'Makefile',
      'package-lock.json',
      'tsconfig.json',
      'tsconfig.build.json',
      'node_modules',
      'src',
      'src/ca',
      'src/ca/a.ts',
    ],
    1000,
  );
  return dir;
}

/** Sets the modification time of `files` (relative to `dir`) to `seconds`. */
function at(dir: string, files: string[], seconds: number): void {
  for (const file of files) utimesSync(join(dir, file), seconds, seconds);
}

/** The commands `make -n <target>` prints (nothing runs). */
function dryRun(dir: string, ...args: string[]): string[] {
  // Run from `make test`, the environment holds the outer make's flags: not for this one.
  const { MAKEFLAGS: _flags, MAKELEVEL: _level, MFLAGS: _mflags, ...env } = process.env;
  const out = execFileSync('make', ['-n', '--no-print-directory', ...args], {
    cwd: dir,
    encoding: 'utf8',
    // The Node of this test run is >= 24: hack/node.sh takes it and installs nothing.
    env: { ...env, PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}` },
  });
  return out.trim().split('\n');
}

const compiles = (lines: string[]): boolean =>
  lines.some((l) => l.includes('tsc -p tsconfig.build.json'));

describe('make run', () => {
  it('compiles on the first run, and not again while nothing changed', () => {
    const dir = sandbox();
    expect(compiles(dryRun(dir, 'run'))).toBe(true);
    mkdirSync(join(dir, 'dist'));
    writeFileSync(join(dir, 'dist', '.built'), '');
    at(dir, ['dist/.built'], 2000);
    const lines = dryRun(dir, 'run');
    expect(compiles(lines)).toBe(false);
    // The addon's script is run every time: it decides itself, by its stamp, that nothing changed.
    expect(lines).toEqual([
      'bash native/original-dst/build.sh',
      expect.stringMatching(/^node bin\/mooring\.js serve /),
    ]);
  });

  it.each([
    ['a source changed', (dir: string) => at(dir, ['src/ca/a.ts'], 3000)],
    [
      'a source was added',
      (dir: string) => {
        writeFileSync(join(dir, 'src', 'ca', 'b.ts'), 'export const b = 2;\n');
        at(dir, ['src/ca/b.ts', 'src/ca'], 3000);
      },
    ],
    ['the TypeScript settings changed', (dir: string) => at(dir, ['tsconfig.build.json'], 3000)],
    ['the dependencies changed', (dir: string) => at(dir, ['package-lock.json'], 3000)],
  ])('compiles again when %s', (_name, change) => {
    const dir = sandbox();
    mkdirSync(join(dir, 'dist'));
    writeFileSync(join(dir, 'dist', '.built'), '');
    at(dir, ['dist/.built'], 2000);
    change(dir);
    expect(compiles(dryRun(dir, 'run'))).toBe(true);
  });

  it('serves the CA of the default data directory, where `mooring ca` looks too; DATA_DIR names another', () => {
    const dir = sandbox();
    const serve = (lines: string[]): string => lines.find((l) => l.includes(' serve ')) ?? '';
    // No --data-dir: server.dataDir's default, the same for `mooring serve` and `mooring ca`.
    expect(serve(dryRun(dir, 'run'))).toBe(
      'node bin/mooring.js serve --listen 127.0.0.1:8443 --admin-listen 127.0.0.1:9090',
    );
    expect(defaultConfig().server.dataDir).toBe('.data');
    expect(serve(dryRun(dir, 'run', 'DATA_DIR=/tmp/elsewhere'))).toContain(
      'serve --data-dir /tmp/elsewhere --listen',
    );
  });
});

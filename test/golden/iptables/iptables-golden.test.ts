// Golden files of `mooring iptables --dry-run`: each <case>.flags (the arguments, whitespace
// separated, `#` starts a comment line) has a <case>.rules holding exactly what the dry run prints.
// REFRESH_GOLDEN=1 (`make golden`) rewrites the .rules files; a stale or missing one fails.

import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { main } from '../../../src/cli/main';

const DIR = __dirname;
const refresh = process.env.REFRESH_GOLDEN === '1';

function parseFlags(text: string): string[] {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .flatMap((line) => line.split(/\s+/));
}

async function dryRun(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on('data', (c: Buffer) => out.push(c));
  stderr.on('data', (c: Buffer) => err.push(c));
  const code = await main(['node', 'mooring', 'iptables', '--dry-run', ...args], {
    stdin: new PassThrough(),
    stdout,
    stderr,
  });
  return { code, out: Buffer.concat(out).toString('utf8'), err: Buffer.concat(err).toString('utf8') };
}

const files = readdirSync(DIR);
const cases = files
  .filter((f) => f.endsWith('.flags'))
  .map((f) => f.slice(0, -'.flags'.length))
  .sort();

describe('golden iptables rules (test/golden/iptables)', () => {
  it('has cases, and no .rules file without its .flags', () => {
    expect(cases.length).toBeGreaterThanOrEqual(7);
    const orphans = files
      .filter((f) => f.endsWith('.rules'))
      .filter((f) => !cases.includes(f.slice(0, -'.rules'.length)));
    expect(orphans).toEqual([]);
  });

  it.each(cases)('%s: the dry run of the .flags file matches the .rules file', async (name) => {
    const args = parseFlags(readFileSync(join(DIR, `${name}.flags`), 'utf8'));
    const result = await dryRun(args);
    expect({ code: result.code, err: result.err }).toEqual({ code: 0, err: '' });
    const rulesPath = join(DIR, `${name}.rules`);
    if (refresh) {
      writeFileSync(rulesPath, result.out);
      return;
    }
    if (!existsSync(rulesPath)) {
      throw new Error(`${rulesPath} is missing: run \`make golden\` and review the new file`);
    }
    expect(result.out).toBe(readFileSync(rulesPath, 'utf8'));
  });
});

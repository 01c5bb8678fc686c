// A usage error (exit 2) is the error and one line that says where the usage is, not the whole
// help: for what commander refuses and for what a command refuses itself.

import { runCli } from '../fixtures/cli';

const run = (args: string[]) => runCli(args);

describe('a usage error', () => {
  it.each([
    [
      'an unknown option',
      ['serve', '--bogus'],
      "mooring: unknown option '--bogus'",
      'mooring serve',
    ],
    ['an unknown command', ['bogus'], "mooring: unknown command 'bogus'", 'mooring'],
    [
      'a value outside the choices',
      ['ca', 'status', '-o', 'yaml'],
      "mooring: option '-o, --output <format>' argument 'yaml' is invalid",
      'mooring ca status',
    ],
    [
      'a missing required option',
      ['ca', 'issue', '--csr', 'x.csr'],
      "mooring: required option '--spiffe-id <id>' not specified",
      'mooring ca issue',
    ],
    [
      'a rule of the command itself',
      ['webhook-config'],
      'mooring: give exactly one of --url URL and --service NS/NAME',
      'mooring webhook-config',
    ],
    [
      'a bad flag value the command checks',
      ['serve', '--listen', 'localhost'],
      'mooring: --listen must be HOST:PORT, got "localhost"',
      'mooring serve',
    ],
  ])('for %s is the error and one hint, exit 2', async (_name, args, error, command) => {
    const { code, stdout, stderr } = await run(args);
    expect(code).toBe(2);
    expect(stdout).toBe('');
    const lines = stderr.trimEnd().split('\n');
    expect(lines).toHaveLength(2);
    expect(lines[0]).toContain(error);
    expect(lines[1]).toBe(`mooring: run '${command} --help' for the usage`);
    expect(stderr).not.toMatch(/Usage:|Options:/);
  });

  it('leaves --help whole, on stdout, exit 0', async () => {
    const { code, stdout, stderr } = await run(['serve', '--help']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^Usage: mooring serve \[options\]/);
    expect(stdout).toContain('--data-dir <dir>');
    expect(stderr).toBe('');
  });
});

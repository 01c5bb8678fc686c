// The README as a newcomer follows it: the certificate example run as written (against a real
// `mooring serve`, only its address changed) leaves nothing in the checkout, the agent example
// runs beside `make run` without a second server on its ports, and the README says plainly what
// works today and what does not yet.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AGENT_DEFAULTS } from '../../src/agent/options';
import { defaultConfig } from '../../src/config/validate';
import { startServe, type ServeProcess } from './agent-harness';

const ROOT = join(__dirname, '..', '..');
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
const makefile = readFileSync(join(ROOT, 'Makefile'), 'utf8');

/** The text of the README from `heading` to the next heading of any level (not in code). */
function section(heading: string): string {
  const lines = readme.split('\n');
  const start = lines.indexOf(heading);
  if (start === -1) throw new Error(`the README has no section "${heading}"`);
  let inCode = false;
  const body: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith('```')) inCode = !inCode;
    if (!inCode && /^#{1,6} /.test(line)) break;
    body.push(line);
  }
  return body.join('\n');
}

/** The ```sh blocks of a text. */
const shellBlocks = (text: string): string[] =>
  [...text.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');

/** A variable of the Makefile (`NAME ?= value`). */
function makeVariable(name: string): string {
  const value = new RegExp(`^${name} \\?= ?(.*)$`, 'm').exec(makefile)?.[1];
  if (value === undefined) throw new Error(`the Makefile sets no ${name}`);
  return value.trim();
}

const LISTEN = makeVariable('LISTEN');
const ADMIN_LISTEN = makeVariable('ADMIN_LISTEN');
const portOf = (hostPort: string): number => Number(hostPort.split(':').pop());

describe('the certificate example (Get a certificate for a CSR made with openssl)', () => {
  let serve: ServeProcess;
  beforeAll(async () => {
    serve = await startServe();
  }, 60_000);
  afterAll(async () => {
    await serve.stop();
  });

  it('gets a certificate that openssl verifies, and leaves no file in the checkout', () => {
    const [block] = shellBlocks(section('### Get a certificate for a CSR made with openssl'));
    // It talks to `make run`'s server and CA, by the Makefile's address and the default data dir.
    const prelude = `DATA=$PWD/${defaultConfig().server.dataDir} CA=https://${LISTEN}`;
    expect(block).toContain(prelude);
    // A checkout with the data directory of a real server; only the address is this server's.
    const checkout = mkdtempSync(join(tmpdir(), 'mooring-readme-checkout-'));
    symlinkSync(serve.dataDir, join(checkout, '.data'));
    const script = (block ?? '').replace(prelude, `DATA=$PWD/.data CA=${serve.url}`);
    const out = execFileSync('bash', ['-euo', 'pipefail', '-c', script], {
      cwd: checkout,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    expect(out).toContain('vm.crt: OK');
    expect(out).toContain('URI:spiffe://cluster.local/vm/db-1');
    // The key, the CSR and the answers went to a temporary directory.
    expect(readdirSync(checkout)).toEqual(['.data']);
  }, 60_000);
});

describe('the agent example (The agent beside `make run`)', () => {
  const text = section('### The agent beside `make run` (local mode)');
  const [block = ''] = shellBlocks(text);

  it('starts no second server: the CA is the one `make run` started', () => {
    expect(block).toContain('node bin/mooring.js agent');
    expect(block).not.toMatch(/\bserve\b/);
    expect(block).toContain(`--ca-url https://${LISTEN}`);
    expect(block).toContain(`--root-cert ${defaultConfig().server.dataDir}/root-cert.pem`);
    expect(block).toContain(`> ${defaultConfig().server.dataDir}/tokens.json`);
  });

  it("takes ports that `make run`'s server does not hold", () => {
    const agentPorts = [AGENT_DEFAULTS.readinessPort, AGENT_DEFAULTS.agentPort];
    expect(block).not.toMatch(/--(readiness|agent)-port/);
    for (const port of agentPorts) {
      expect([portOf(LISTEN), portOf(ADMIN_LISTEN)]).not.toContain(port);
    }
    expect(text).toContain(`the agent takes the\nsidecar's ports, ${agentPorts.join(' and ')}`);
  });
});

describe('what Mooring does today, and what it does not do yet', () => {
  const text = section('## What Mooring does today, and what it does not do yet');

  it('names what works, and what does not yet in a paragraph of its own', () => {
    for (const part of [
      'Injection',
      'The init container',
      'The CA',
      'The workload agent',
      'The sidecar proxy',
      'The mesh push',
    ]) {
      expect(text).toContain(`**${part}**`);
    }
    expect(text).toMatch(/\n\nNot yet: /);
  });
});

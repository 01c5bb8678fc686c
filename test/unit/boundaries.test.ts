// The import boundaries between the parts of src/ (hack/eslint-boundaries.js, turned on by
// eslint.config.mjs): every zone refuses a wrong arrow and lets the right ones through, the
// configuration applies them to src/ and not to the tests, and src/ has no import cycle.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { Linter } from 'eslint';
import tseslint from 'typescript-eslint';
import ts from 'typescript';

const ROOT = join(__dirname, '..', '..');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const boundaries = require('../../hack/eslint-boundaries.js') as {
  rule: unknown;
  ZONES: readonly unknown[];
  PURE_GLOBALS: Linter.RulesRecord;
  PURE_FILES: string[];
};

/** The messages of the boundary rules for `code` as if it were the file `file`. */
function lint(file: string, code: string): string[] {
  const linter = new Linter({ configType: 'flat', cwd: ROOT });
  const config: Linter.Config[] = [
    {
      files: ['**/*.ts'],
      languageOptions: { parser: tseslint.parser },
      plugins: { mooring: { rules: { boundaries: boundaries.rule as never } } },
      rules: { 'mooring/boundaries': ['error', { zones: boundaries.ZONES, root: ROOT }] },
    },
    { files: boundaries.PURE_FILES, rules: boundaries.PURE_GLOBALS },
  ];
  return linter.verify(code, config, { filename: join(ROOT, file) }).map((m) => m.message);
}

describe('a wrong arrow is refused', () => {
  it.each([
    // The arrows the review found open: ../../cli from two levels down.
    ['src/http/plugins/ca.ts', "import { main } from '../../cli/main';", 'nothing imports the CLI'],
    ['src/adapters/kube/client.ts', "import { EXIT } from '../../cli/io';", 'nothing imports'],
    ['src/http/plugins/x.ts', "export const m = () => import('../../cli/main');", 'the CLI'],
    ['src/adapters/x.ts', "export * from '../cli/io';", 'nothing imports the CLI'],
    ['src/http/x.ts', "import { startServer } from '../server/server';", 'only the CLI starts'],
    [
      'src/http/x.ts',
      "import { KubeClient } from '../adapters/kube/client';",
      'through their deps',
    ],
    ['src/server/server.ts', "import { UsageError } from '../cli/io';", 'nothing imports the CLI'],
    ['src/server/server.ts', "import { Command } from 'commander';", 'without the CLI'],
    [
      'src/observability/logger.ts',
      "import { buildAdminApp } from '../http';",
      'no part that uses',
    ],
    // The agent runs in every Pod.
    ['src/agent/agent.ts', "import { startServer } from '../server/server';", 'only the CLI'],
    ['src/agent/identity/x.ts', "import { buildAdminApp } from '../../http';", 'every Pod'],
    [
      'src/agent/identity/x.ts',
      "import { KubeConfig } from '@kubernetes/client-node';",
      'every Pod',
    ],
    [
      'src/agent/proxy/l4/x.ts',
      "import { KubeClient } from '../../../adapters/kube/client';",
      'every Pod',
    ],
    ['src/agent/mesh-client/x.ts', "import { buildWebhookApp } from '../../http';", 'every Pod'],
    // Its parts do not lean on each other.
    [
      'src/agent/identity/x.ts',
      "import { listen } from '../health/servers';",
      'parts of the agent',
    ],
    [
      'src/agent/health/x.ts',
      "import type { CertificateLifecycle } from '../identity/lifecycle';",
      'parts of the agent',
    ],
    ['src/agent/process/x.ts', "import { runAgent } from '../agent';", 'parts of the agent'],
    [
      'src/agent/health/x.ts',
      "import type { AgentOptions } from '../options';",
      'parts of the agent',
    ],
    // Pure parts: no I/O, no framework, no adapter.
    ['src/api/mesh.ts', "import { readFileSync } from 'node:fs';", 'pure part'],
    ['src/api/x.ts', "import Fastify from 'fastify';", 'pure part'],
    ['src/mesh/x.ts', "import { KubeConfig } from '@kubernetes/client-node';", 'pure part'],
    ['src/mesh/x.ts', "import { Reflector } from '../adapters/kube/reflector';", 'pure part'],
    ['src/mesh/x.ts', "import { createLogger } from '../observability/logger';", 'pure part'],
    ['src/ca/x.ts', "import type { CAConfig } from '../config/types';", 'own policy types'],
    ['src/ca/x.ts', "import { writeFile } from 'fs/promises';", 'pure part'],
    ['src/config/x.ts', "import { readFileSync } from 'fs';", 'pure part'],
    ['src/injector/x.ts', "import { connect } from 'node:net';", 'pure part'],
    ['src/admission/x.ts', "import pino from 'pino';", 'pure part'],
    ['src/errors.ts', "import { spawn } from 'node:child_process';", 'pure part'],
    ['src/agent/proxy/core/route.ts', "import { Socket } from 'node:net';", 'decides'],
    ['src/agent/proxy/core/route.ts', "import { listen } from '../l4/listener';", 'decides'],
    [
      'src/agent/proxy/core/route.ts',
      "import { RootFileWatcher } from '../../identity/root-watcher';",
      'decides',
    ],
  ])('%s: %s', (file, code, why) => {
    const messages = lint(file, code);
    expect(messages).toHaveLength(1);
    expect(messages[0]).toContain(why);
  });

  it.each([
    ['src/admission/answer.ts', 'export const t = performance.now();'],
    ['src/injector/x.ts', 'export const t = Date.now();'],
    ['src/ca/x.ts', 'export const t = new Date();'],
    ['src/mesh/x.ts', 'export const r = Math.random();'],
    ['src/api/x.ts', 'export const e = process.env.HOME;'],
    ['src/agent/proxy/core/x.ts', 'setTimeout(() => undefined, 1);'],
  ])('%s: %s (time, randomness, the process and timers come in as parameters)', (file, code) => {
    expect(lint(file, code)).toEqual([expect.stringContaining('pure part')]);
  });
});

describe('a right arrow passes', () => {
  it.each([
    ['src/cli/serve.ts', "import { startServer } from '../server/server';"],
    ['src/server/server.ts', "import { buildWebhookApp } from '../http';"],
    ['src/server/server.ts', "import { TlsReloader } from '../adapters/tls-reloader';"],
    ['src/server/cluster-mode.ts', "import { KubeClient } from '../adapters/kube/client';"],
    ['src/http/plugins/ca.ts', "import { CA_PATHS } from '../../api/certificates';"],
    ['src/agent/agent.ts', "import { CertificateLifecycle } from './identity/lifecycle';"],
    ['src/agent/agent.ts', "import { supervise } from './process/supervisor';"],
    [
      'src/agent/identity/cert-dir.ts',
      "import { syncDirectory } from '../../adapters/atomic-file';",
    ],
    [
      'src/agent/identity/x.ts',
      "import { parseCertificateResponse } from '../../api/certificates';",
    ],
    ['src/agent/proxy/core/route.ts', "import { pick } from './weighted';"],
    ['src/agent/proxy/core/route.ts', "import { isIP } from 'node:net';"],
    ['src/agent/proxy/core/route.ts', "import type { MeshConfig } from '../../../api/mesh';"],
    ['src/mesh/x.ts', "import type { MeshConfig } from '../api/mesh';"],
    ['src/ca/x.ts', "import { createHash } from 'node:crypto';"],
    ['src/injector/x.ts', "import { isIP } from 'node:net';"],
    ['src/config/validate.ts', "import { checkCAPolicy } from '../ca/policy';"],
    ['src/ca/x.ts', 'export const epoch = new Date(0);'],
    ['test/unit/x.test.ts', "import { main } from '../../src/cli/main';"],
  ])('%s: %s', (file, code) => {
    expect(lint(file, code)).toEqual([]);
  });
});

describe('eslint.config.mjs', () => {
  const rulesOf = (file: string): Record<string, unknown> => {
    const text = execFileSync(
      process.execPath,
      [join(ROOT, 'node_modules', 'eslint', 'bin', 'eslint.js'), '--print-config', file],
      { cwd: ROOT, encoding: 'utf8' },
    );
    return (JSON.parse(text) as { rules: Record<string, unknown> }).rules;
  };

  it('applies every zone to the files of src/, and the rules of pure parts to pure parts', () => {
    expect(rulesOf('src/agent/identity/lifecycle.ts')['mooring/boundaries']).toEqual([
      2,
      { zones: boundaries.ZONES },
    ]);
    const core = rulesOf('src/admission/answer.ts');
    expect(core['mooring/boundaries']).toEqual([2, { zones: boundaries.ZONES }]);
    const [, ...globals] = boundaries.PURE_GLOBALS['no-restricted-globals'] as unknown[];
    expect(core['no-restricted-globals']).toEqual([2, ...globals]);
  }, 60_000);

  it('leaves the tests free to import any part', () => {
    expect(rulesOf('test/unit/boundaries.test.ts')['mooring/boundaries']).toBeUndefined();
  }, 60_000);
});

describe('src/', () => {
  /** Every import of every file of src/ (type-only and dynamic ones too), as repository paths. */
  function importGraph(): Map<string, string[]> {
    const list = execFileSync('git', ['ls-files', '-co', '--exclude-standard', 'src'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    const files = list.split('\n').filter((f) => f.endsWith('.ts'));
    const known = new Set(files.map((f) => f.slice(0, -3)));
    const resolve = (target: string): string =>
      known.has(target) ? target : known.has(`${target}/index`) ? `${target}/index` : target;
    const graph = new Map<string, string[]>();
    for (const file of files) {
      const info = ts.preProcessFile(readFileSync(join(ROOT, file), 'utf8'), true, true);
      graph.set(
        file.slice(0, -3),
        info.importedFiles
          .map((i) => i.fileName)
          .filter((name) => name.startsWith('.'))
          .map((name) => resolve(relative(ROOT, normalize(join(ROOT, dirname(file), name))))),
      );
    }
    return graph;
  }

  /** The cycles of a graph: each as the path that closes it. */
  function cycles(graph: Map<string, string[]>): string[][] {
    const found: string[][] = [];
    const state = new Map<string, 'open' | 'done'>();
    const stack: string[] = [];
    const visit = (node: string): void => {
      state.set(node, 'open');
      stack.push(node);
      for (const next of graph.get(node) ?? []) {
        if (state.get(next) === 'open') found.push([...stack.slice(stack.indexOf(next)), next]);
        else if (!state.has(next)) visit(next);
      }
      stack.pop();
      state.set(node, 'done');
    };
    for (const node of graph.keys()) if (!state.has(node)) visit(node);
    return found;
  }

  it('finds a cycle where there is one (the check itself)', () => {
    const graph = new Map([
      ['a', ['b']],
      ['b', ['c']],
      ['c', ['a']],
      ['d', ['a']],
    ]);
    expect(cycles(graph)).toEqual([['a', 'b', 'c', 'a']]);
  });

  it('has no import cycle', () => {
    const graph = importGraph();
    expect(graph.size).toBeGreaterThan(100);
    expect(graph.get('src/cli/serve')).toContain('src/server/config');
    expect(cycles(graph)).toEqual([]);
  });
});

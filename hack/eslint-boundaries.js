'use strict';
// The import boundaries of Mooring's parts (../shared/STYLE.md: dependencies point inward), as an
// ESLint rule of our own: `mooring/boundaries`. Each zone names the files it governs (`from`) and
// what they may not import (`disallow`): folders of src/ (relative imports are resolved, so
// `../../cli/main` and `../cli/main` are the same arrow) and packages (`node:` is ignored, so
// `fs` is also `node:fs`). eslint.config.mjs turns the rule on with ZONES;
// test/unit/boundaries.test.ts proves that every zone refuses a wrong arrow and lets the right
// ones through.

const path = require('node:path');

/** Node's modules that reach outside the process: files, sockets, processes, threads, the OS. */
const IO = [
  'fs',
  'fs/*',
  'child_process',
  'net',
  'http',
  'https',
  'http2',
  'tls',
  'dgram',
  'dns',
  'dns/*',
  'cluster',
  'worker_threads',
  'os',
  'readline',
  'process',
  'v8',
  'inspector',
];
/** The frameworks and infrastructure clients the shell and the adapters wire in. */
const FRAMEWORKS = [
  'fastify',
  'fastify/*',
  '@fastify/*',
  '@kubernetes/client-node',
  'pino',
  'prom-client',
  'commander',
];
/** Parts with I/O: adapters, HTTP apps, commands, compositions, logging and metrics, the agent. */
const NOT_PURE = [
  'src/adapters/**',
  'src/http/**',
  'src/cli/**',
  'src/server/**',
  'src/observability/**',
  'src/agent/**',
];
/** Pure functions of node:net that touch no socket. */
const NET_PURE_NAMES = ['isIP', 'isIPv4', 'isIPv6'];

const PURE = 'a pure part does no I/O and uses no framework or adapter (../shared/STYLE.md)';
const agentPart = (part) => ({
  from: [`src/agent/${part}/**`],
  disallow: ['health', 'identity', 'process', 'mesh-client', 'proxy']
    .filter((p) => p !== part)
    .map((p) => `src/agent/${p}/**`)
    .concat(['src/agent/agent', 'src/agent/options']),
  message: 'the parts of the agent do not import each other; agent.ts wires them',
});

/**
 * A zone: the files it governs (`from`, but not `exceptFrom`), what they may not import
 * (`disallow`, but `allow`; `allowNames`: a package of which these names alone may be imported),
 * and why; `pure` zones also get PURE_GLOBALS. The first zone that refuses an import names the
 * reason.
 * @type {readonly {from: string[], exceptFrom?: string[], disallow: string[], allow?: string[],
 *   allowNames?: Record<string, string[]>, pure?: boolean, message: string}[]}
 */
const ZONES = [
  {
    from: ['src/**'],
    exceptFrom: ['src/cli/**'],
    disallow: ['src/cli/**'],
    message: 'nothing imports the CLI but bin/mooring.js',
  },
  {
    from: ['src/**'],
    exceptFrom: ['src/cli/**', 'src/server/**'],
    disallow: ['src/server/**'],
    message: 'only the CLI starts the server',
  },
  {
    from: [
      'src/injector/**',
      'src/ca/**',
      'src/admission/**',
      'src/api/**',
      'src/mesh/**',
      'src/config/**',
      'src/ui/**',
      'src/*.ts',
    ],
    disallow: [...IO, ...FRAMEWORKS, ...NOT_PURE],
    allowNames: { net: NET_PURE_NAMES },
    pure: true,
    message: PURE,
  },
  {
    from: ['src/agent/proxy/core/**'],
    disallow: [...IO, ...FRAMEWORKS, 'src/adapters/**', 'src/observability/**', 'src/agent/**'],
    allow: ['src/agent/proxy/core/**'],
    allowNames: { net: NET_PURE_NAMES },
    pure: true,
    message: `the proxy's core decides (routes, picks, retries, ejections): ${PURE}`,
  },
  {
    from: ['src/ca/**'],
    disallow: ['src/config/**'],
    message: 'the CA has its own policy types (src/ca/policy.ts), not the configuration',
  },
  {
    from: ['src/adapters/**'],
    disallow: [
      'src/http/**',
      'src/cli/**',
      'src/server/**',
      'src/agent/**',
      'fastify',
      'fastify/*',
      'commander',
    ],
    message: 'adapters implement ports; they do not depend on the shell',
  },
  {
    from: ['src/http/**'],
    disallow: [
      '@kubernetes/client-node',
      'src/adapters/**',
      'src/cli/**',
      'src/server/**',
      'src/agent/**',
      'fs',
      'fs/*',
      'child_process',
    ],
    message: 'HTTP apps get adapters through their deps, never build them',
  },
  {
    from: ['src/observability/**'],
    disallow: ['src/adapters/**', 'src/http/**', 'src/cli/**', 'src/server/**', 'src/agent/**'],
    message: 'logging and metrics factories depend on no part that uses them',
  },
  {
    from: ['src/server/**'],
    disallow: ['src/cli/**', 'src/agent/**', 'commander'],
    message: 'the server is composed without the CLI (which parses its flags) and the agent',
  },
  {
    from: ['src/agent/**'],
    disallow: [
      'src/server/**',
      'src/cli/**',
      'src/http/**',
      'src/adapters/kube/**',
      '@kubernetes/client-node',
      'fastify',
      'fastify/*',
    ],
    message: 'the agent runs in every Pod: no server, CLI, HTTP app or Kubernetes client',
  },
  agentPart('identity'),
  agentPart('health'),
  agentPart('process'),
];

/** A glob of paths (`**` any depth, `*` one segment; `a/**` is also `a`) as a RegExp. */
function globToRegExp(glob) {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (glob.startsWith('/**', i) && i + 3 === glob.length) {
      re += '(/.*)?';
      i += 2;
    } else if (glob.startsWith('**', i)) {
      re += '.*';
      i += 1;
    } else if (c === '*') {
      re += '[^/]*';
    } else {
      re += c.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
    }
  }
  return new RegExp(`^${re}$`);
}

const matchesAny = (value, globs) => globs.some((g) => globToRegExp(g).test(value));
const stripExtension = (p) => p.replace(/\.(d\.ts|ts|tsx|js|mjs|cjs|json)$/, '');

/**
 * What an import names, comparable with a zone's globs: a path of the repository without its
 * extension (`src/cli/main`) for a relative import, else the package (`fs`, `@kubernetes/client-node`).
 */
function targetOf(source, fileFromRoot) {
  if (source.startsWith('.')) {
    return stripExtension(
      path.posix.normalize(path.posix.join(path.posix.dirname(fileFromRoot), source)),
    );
  }
  return source.replace(/^node:/, '');
}

/** @type {import('eslint').Rule.RuleModule} */
const rule = {
  meta: {
    type: 'problem',
    docs: { description: 'Enforce the import boundaries between the parts of src/' },
    schema: [
      {
        type: 'object',
        properties: { zones: { type: 'array' }, root: { type: 'string' } },
        additionalProperties: false,
      },
    ],
    messages: { forbidden: '{{file}} may not import {{target}}: {{why}}.' },
  },
  create(context) {
    const { zones = ZONES, root = context.cwd } = context.options[0] ?? {};
    const file = path.relative(root, context.filename).split(path.sep).join('/');
    const applicable = zones.filter(
      (z) => matchesAny(file, z.from) && !matchesAny(file, z.exceptFrom ?? []),
    );
    if (applicable.length === 0) return {};

    const check = (node, source, importedNames) => {
      if (typeof source !== 'string') return;
      const target = targetOf(source, file);
      for (const zone of applicable) {
        if (!matchesAny(target, zone.disallow)) continue;
        if (matchesAny(target, zone.allow ?? [])) continue;
        const allowed = zone.allowNames?.[target];
        if (
          allowed !== undefined &&
          importedNames !== null &&
          importedNames.every((n) => allowed.includes(n))
        ) {
          continue;
        }
        context.report({ node, messageId: 'forbidden', data: { file, target, why: zone.message } });
        return;
      }
    };
    /** The names an import takes; null when it takes the whole module. */
    const namesOf = (node) => {
      if (node.specifiers.length === 0) return null;
      const names = [];
      for (const s of node.specifiers) {
        if (s.type !== 'ImportSpecifier') return null;
        names.push(s.imported.type === 'Identifier' ? s.imported.name : s.imported.value);
      }
      return names;
    };
    return {
      ImportDeclaration: (node) => check(node, node.source.value, namesOf(node)),
      ExportNamedDeclaration: (node) => node.source && check(node, node.source.value, null),
      ExportAllDeclaration: (node) => check(node, node.source.value, null),
      ImportExpression: (node) =>
        node.source.type === 'Literal' && check(node, node.source.value, null),
      TSImportEqualsDeclaration: (node) =>
        node.moduleReference.type === 'TSExternalModuleReference' &&
        check(node, node.moduleReference.expression.value, null),
      CallExpression: (node) =>
        node.callee.type === 'Identifier' &&
        node.callee.name === 'require' &&
        node.arguments[0]?.type === 'Literal' &&
        check(node, node.arguments[0].value, null),
    };
  },
};

/** Globals and calls a pure part may not use: time, randomness, the process, timers. */
const PURE_GLOBALS = {
  'no-restricted-globals': [
    'error',
    ...['performance', 'process', 'setTimeout', 'setInterval', 'setImmediate', 'fetch'].map(
      (name) => ({ name, message: `${PURE}: ${name} comes in as a parameter or a port` }),
    ),
  ],
  'no-restricted-properties': [
    'error',
    { object: 'Date', property: 'now', message: `${PURE}: time comes from a Clock` },
    { object: 'Math', property: 'random', message: `${PURE}: randomness comes in as a parameter` },
  ],
  'no-restricted-syntax': [
    'error',
    {
      selector: "NewExpression[callee.name='Date'][arguments.length=0]",
      message: `${PURE}: the current time comes from a Clock`,
    },
  ],
};

/** The files of the pure zones, for the rules above. */
const PURE_FILES = ZONES.filter((z) => z.pure).flatMap((z) => z.from);

module.exports = { rule, ZONES, PURE_GLOBALS, PURE_FILES, globToRegExp, targetOf };

// ESLint: type-checked rules, and the import boundaries of ../shared/STYLE.md (core is pure,
// adapters are the only Kubernetes/fs code, the shell depends on everything else).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const infra = [
  'fastify',
  'fastify/*',
  '@kubernetes/client-node',
  'pino',
  'prom-client',
  'commander',
];
const io = ['fs', 'fs/*', 'node:fs', 'node:fs/*', 'child_process', 'node:child_process'];
const restrict = (patterns, message) => ({
  'no-restricted-imports': ['error', { patterns: [{ group: patterns, message }] }],
});

export default tseslint.config(
  {
    ignores: [
      'dist/',
      'node_modules/',
      '.cache/',
      'coverage/',
      'charts/',
      'webhook-config/',
      '**/*.js',
      '**/*.mjs',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': 'error',
    },
  },
  {
    files: ['src/injector/**', 'src/ca/**', 'src/admission/**', 'src/mesh/**'],
    rules: restrict(
      [...infra, ...io, '../adapters/*', '../http/*', '../cli/*', '../observability/*'],
      'The core is pure: no I/O, no framework, no adapters (../shared/STYLE.md).',
    ),
  },
  {
    files: ['src/adapters/**'],
    rules: restrict(['fastify', '../http/*', '../cli/*'], 'Adapters do not depend on the shell.'),
  },
  {
    files: ['src/http/**'],
    rules: restrict(
      ['@kubernetes/client-node', '../cli/*', ...io],
      'HTTP apps get adapters through their deps, never build them.',
    ),
  },
  {
    files: ['test/**', 'bench/**'],
    rules: {
      'no-console': 'off',
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/unbound-method': 'off',
    },
  },
);

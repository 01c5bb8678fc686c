// ESLint: type-checked rules, and the import boundaries of ../shared/STYLE.md (core is pure,
// adapters are the only Kubernetes/fs code, the shell depends on everything else).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import boundaries from './hack/eslint-boundaries.js';

// The import boundaries of every part: zones in hack/eslint-boundaries.js (test/unit/boundaries.test.ts).
const mooring = { rules: { boundaries: boundaries.rule } };

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
    files: ['src/**/*.ts'],
    plugins: { mooring },
    rules: { 'mooring/boundaries': ['error', { zones: boundaries.ZONES }] },
  },
  {
    files: boundaries.PURE_FILES,
    rules: boundaries.PURE_GLOBALS,
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

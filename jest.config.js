// Jest through ts-jest. @kubernetes/client-node 2.x, commander 15 and their ESM-only dependencies: they go
// through the same transform (allowJs) instead of being ignored (see ../shared/FACTS.md).
const esmOnly = [
  '@kubernetes/client-node',
  'openid-client',
  'oauth4webapi',
  'jose',
  'cookie',
  'commander',
  'socks-proxy-agent',
  'agent-base',
  'rfc4648',
  'jsonpath-plus',
  'jsep',
  '@jsep-plugin',
];
const transform = {
  '^.+\\.[jt]s$': [
    'ts-jest',
    {
      tsconfig: { allowJs: true, module: 'commonjs', isolatedModules: true, sourceMap: true },
      diagnostics: false,
    },
  ],
};
const common = {
  transform,
  // Slow test keys (RSA) are made once, before any test: test/fixtures/keys.ts.
  globalSetup: '<rootDir>/test/global-setup.ts',
  transformIgnorePatterns: [`/node_modules/(?!(${esmOnly.join('|')})/)`],
  testEnvironment: 'node',
  moduleFileExtensions: ['ts', 'js', 'json'],
  // .cache holds copies of package.json (the images' production node_modules): not modules.
  modulePathIgnorePatterns: ['<rootDir>/.cache/'],
};

module.exports = {
  projects: [
    {
      ...common,
      displayName: 'unit',
      testMatch: ['<rootDir>/test/**/*.test.ts'],
      testPathIgnorePatterns: [
        '<rootDir>/test/e2e/',
        '<rootDir>/test/e2e-node/',
        '<rootDir>/test/netns/',
      ],
    },
    {
      ...common,
      displayName: 'netns',
      testMatch: ['<rootDir>/test/netns/**/*.test.ts'],
    },
    {
      ...common,
      displayName: 'e2e',
      testMatch: ['<rootDir>/test/e2e/**/*.test.ts'],
    },
    {
      ...common,
      displayName: 'node',
      testMatch: ['<rootDir>/test/e2e-node/**/*.test.ts'],
    },
  ],
};

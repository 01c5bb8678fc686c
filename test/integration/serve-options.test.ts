// The small decisions of `mooring serve`: addresses, serving names, mode, flags over config.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseHostPort, resolveConfig, tickIntervalMs } from '../../src/server/config';
import { localServingNames } from '../../src/server/local-mode';
import { detectMode, SERVICE_ACCOUNT_TOKEN } from '../../src/server/mode';
import { validateConfig } from '../../src/config/validate';
import { MooringError } from '../../src/errors';

describe('parseHostPort', () => {
  it.each<[string, string, number]>([
    ['0.0.0.0:8443', '0.0.0.0', 8443],
    ['127.0.0.1:0', '127.0.0.1', 0],
    ['localhost:9090', 'localhost', 9090],
    ['[::1]:8443', '::1', 8443],
    ['[::]:9090', '::', 9090],
  ])('reads %s', (value, host, port) => {
    expect(parseHostPort(value, '--listen')).toEqual({ host, port });
  });

  it.each(['8443', 'localhost', ':8443', '::1:8443', 'host:99999', 'host:port'])(
    'refuses %s as a usage error',
    (value) => {
      expect(() => parseHostPort(value, '--listen')).toThrow(/^--listen must be HOST:PORT/);
    },
  );
});

describe('localServingNames', () => {
  it.each<[string, string[], string[]]>([
    ['0.0.0.0', ['localhost'], ['127.0.0.1']],
    ['::', ['localhost'], ['127.0.0.1']],
    ['127.0.0.1', ['localhost'], ['127.0.0.1']],
    ['10.1.2.3', ['localhost'], ['127.0.0.1', '10.1.2.3']],
    ['::1', ['localhost'], ['127.0.0.1', '::1']],
    ['mooring.example', ['localhost', 'mooring.example'], ['127.0.0.1']],
  ])(
    'for --listen host %s: localhost, 127.0.0.1 and the specific host',
    (host, dnsNames, ipAddresses) => {
      expect(localServingNames(host)).toEqual({ dnsNames, ipAddresses });
    },
  );
});

describe('detectMode', () => {
  const noToken = (): boolean => false;
  const token = (path: string): boolean => path === SERVICE_ACCOUNT_TOKEN;
  it.each<[string, Parameters<typeof detectMode>, 'local' | 'cluster']>([
    ['no cluster at all', [{}, {}, noToken], 'local'],
    ['--kubeconfig', [{ kubeconfig: '/k' }, {}, noToken], 'cluster'],
    [
      'an in-cluster service account',
      [{}, { KUBERNETES_SERVICE_HOST: '10.0.0.1' }, token],
      'cluster',
    ],
    [
      'KUBERNETES_SERVICE_HOST without a token',
      [{}, { KUBERNETES_SERVICE_HOST: '10.0.0.1' }, noToken],
      'local',
    ],
  ])('%s', (_name, args, mode) => {
    expect(detectMode(...args)).toBe(mode);
  });
});

describe('resolveConfig', () => {
  it('puts the flags over the configuration file and keeps the rest of the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mooring-cfg-'));
    const file = join(dir, 'config.yaml');
    writeFileSync(
      file,
      'server:\n  listen: 0.0.0.0:1443\n  dataDir: /from/file\n  logLevel: warn\ninjector:\n  failOpen: true\n',
    );
    const config = resolveConfig({ config: file, listen: '127.0.0.1:8443', dataDir: '/from/flag' });
    expect(config.server).toMatchObject({
      listen: '127.0.0.1:8443',
      dataDir: '/from/flag',
      logLevel: 'warn',
      adminListen: '0.0.0.0:9090',
    });
    expect(config.injector.failOpen).toBe(true);
  });

  it('defaults to 0.0.0.0:8443 and 0.0.0.0:9090 without file or flags', () => {
    expect(resolveConfig({}).server).toMatchObject({
      listen: '0.0.0.0:8443',
      adminListen: '0.0.0.0:9090',
    });
  });

  it('refuses an invalid configuration with every violation', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mooring-cfg-'));
    const file = join(dir, 'config.yaml');
    writeFileSync(file, 'server:\n  bodyLimitBytes: 1024\n  lisen: x\n');
    expect(() => resolveConfig({ config: file })).toThrow(MooringError);
    expect(() => resolveConfig({ config: file })).toThrow(
      /bodyLimitBytes[\s\S]*unknown key "lisen"|unknown key "lisen"[\s\S]*bodyLimitBytes/,
    );
  });
});

describe('tickIntervalMs', () => {
  it('runs the CA work at the configured interval, at least every 10 s', () => {
    expect(tickIntervalMs(validateConfig({ ca: { rotation: { checkIntervalSeconds: 2 } } }))).toBe(
      2000,
    );
    expect(tickIntervalMs(validateConfig({}))).toBe(10_000);
  });
});

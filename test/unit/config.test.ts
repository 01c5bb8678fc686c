import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readConfigFile } from '../../src/adapters/config-file';
import { defaultConfig, validateConfig } from '../../src/config/validate';
import { MooringError } from '../../src/errors';

function errorOf(fn: () => unknown): MooringError {
  try {
    fn();
  } catch (err) {
    if (err instanceof MooringError) return err;
    throw err;
  }
  throw new Error('expected a MooringError');
}

describe('configuration', () => {
  it('fills every default of PRODUCT.md when nothing is given', () => {
    const config = defaultConfig();
    expect(config.trustDomain).toBe('cluster.local');
    expect(config.injector.ports).toEqual({
      outboundCapture: 15001,
      inboundCapture: 15006,
      agent: 15020,
      readiness: 15021,
      proxyMetrics: 15090,
    });
    expect(config.injector.proxyUID).toBe(1337);
    expect(config.injector.resources).toEqual({
      cpuRequest: '100m',
      memoryRequest: '128Mi',
      cpuLimit: null,
      memoryLimit: '1Gi',
    });
    expect(config.injector.ignoredNamespaces).toEqual([
      'kube-system',
      'kube-public',
      'kube-node-lease',
    ]);
    expect(config.injector.nativeSidecar).toBe(true);
    expect(config.injector.holdApplication).toBe(true);
    expect(config.ca.rootKeyType).toBe('ecdsa-p256');
    expect(config.ca.workloadDefaultTtlSeconds).toBe(86400);
    expect(config.ca.workloadMaxTtlSeconds).toBe(604800);
    expect(config.server.listen).toBe('0.0.0.0:8443');
    expect(config.server.adminListen).toBe('0.0.0.0:9090');
  });

  it('keeps given values and defaults the rest', () => {
    const config = validateConfig({
      injector: { nativeSidecar: false },
      trustDomain: 'example.org',
    });
    expect(config.injector.nativeSidecar).toBe(false);
    expect(config.injector.holdApplication).toBe(true);
    expect(config.trustDomain).toBe('example.org');
  });

  it('is deeply frozen', () => {
    const config = defaultConfig();
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.injector.ports)).toBe(true);
    expect(Object.isFrozen(config.injector.ignoredNamespaces)).toBe(true);
  });

  it('does not change the object it was given', () => {
    const raw = { injector: {} };
    validateConfig(raw);
    expect(raw).toEqual({ injector: {} });
  });

  it('lists every violation with its path in one error', () => {
    const err = errorOf(() =>
      validateConfig({
        trustDomain: 'Not A Domain',
        injector: { ports: { inboundCapture: 70000 }, imagePullPolicy: 'Sometimes', colour: 'red' },
        ca: { rootKeyType: 'dsa' },
      }),
    );
    expect(err.code).toBe('CFG_ERR_INVALID');
    expect(err.details).toEqual(
      expect.arrayContaining([
        expect.stringContaining('/trustDomain'),
        expect.stringContaining('/injector/ports/inboundCapture'),
        expect.stringContaining(
          '/injector/imagePullPolicy: must be one of "Always", "IfNotPresent", "Never"',
        ),
        '/injector: unknown key "colour" (known keys: proxyImage, initImage, imagePullPolicy, proxyUID, proxyGID, ports, resources, initResources, ignoredNamespaces, nativeSidecar, holdApplication, rewriteProbes, logLevel, caAddress, drainSeconds, failOpen)',
        expect.stringContaining('/ca/rootKeyType'),
      ]),
    );
    expect(err.details).toHaveLength(5);
    expect(err.message).toContain('/injector/ports/inboundCapture');
  });

  it('refuses a default workload lifetime above the maximum', () => {
    const err = errorOf(() =>
      validateConfig({ ca: { workloadDefaultTtlSeconds: 900000, workloadMaxTtlSeconds: 3600 } }),
    );
    expect(err.message).toContain('/ca/workloadDefaultTtlSeconds');
  });

  describe('from a file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'mooring-config-'));
    const file = (name: string, text: string): string => {
      const path = join(dir, name);
      writeFileSync(path, text);
      return path;
    };

    it('reads YAML', () => {
      const config = readConfigFile(file('a.yaml', 'injector:\n  holdApplication: false\n'));
      expect(config.injector.holdApplication).toBe(false);
    });

    it('reads JSON', () => {
      const config = readConfigFile(file('a.json', '{"trustDomain": "corp.example"}'));
      expect(config.trustDomain).toBe('corp.example');
    });

    it('names the file in a validation error', () => {
      const path = file('bad.yaml', 'server:\n  listen: nowhere\n');
      const err = errorOf(() => readConfigFile(path));
      expect(err.message).toContain(path);
      expect(err.message).toContain('/server/listen');
    });

    it('reports unparsable YAML as a configuration error, with the position but no source line', () => {
      const path = file('broken.yaml', 'server: {listen: "x"\n  token: SECRET-NEAR-THE-ERROR\n');
      const err = errorOf(() => readConfigFile(path));
      expect(err.code).toBe('CFG_ERR_INVALID');
      expect(err.message).toMatch(
        new RegExp(`^${path} is not valid YAML or JSON: .* at line \\d+, column \\d+$`),
      );
      expect(err.message).not.toContain('SECRET-NEAR-THE-ERROR');
    });

    it('reports a missing file with its path', () => {
      const err = errorOf(() => readConfigFile(join(dir, 'missing.yaml')));
      expect(err.code).toBe('CFG_ERR_READ');
      expect(err.message).toContain('missing.yaml');
    });
  });
});

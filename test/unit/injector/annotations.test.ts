import { validateConfig } from '../../../src/config/validate';
import { ANNOTATION, INJECT_LABEL } from '../../../src/constants';
import { isMooringError, type MooringError } from '../../../src/errors';
import {
  ANNOTATIONS,
  annotationTable,
  closestKey,
  isImageReference,
  resolveSettings,
  type PodSettings,
} from '../../../src/injector/annotations';
import { inject } from '../../../src/injector/inject';
import { quantityValue } from '../../../src/injector/quantity';
import { pod, withAnnotation, withLabel } from '../../fixtures/pods';

const config = validateConfig({});
const settings = (annotations: Record<string, unknown>): PodSettings =>
  resolveSettings(annotations, {}, config.injector).settings;

function thrown(fn: () => unknown): MooringError {
  try {
    fn();
  } catch (err) {
    if (isMooringError(err)) return err;
    throw err;
  }
  throw new Error('did not throw');
}

describe('annotation registry', () => {
  it('has an entry for every Pod annotation key of the contract, once', () => {
    expect(ANNOTATIONS.map((a) => a.key).sort()).toEqual(Object.values(ANNOTATION).sort());
  });

  it('renders the README table with every key and its default', () => {
    const table = annotationTable(config.injector);
    for (const a of ANNOTATIONS) expect(table).toContain(`| \`${a.key}\` |`);
    expect(table).toContain('| 100m |');
    expect(table).toContain('| 1Gi |');
  });
});

describe('valid values', () => {
  it.each<[string, string, (s: PodSettings) => unknown, unknown]>([
    [
      ANNOTATION.proxyImage,
      'registry.example:5000/team/proxy:1.2.3',
      (s) => s.proxyImage,
      'registry.example:5000/team/proxy:1.2.3',
    ],
    [ANNOTATION.cpuRequest, '250m', (s) => s.resources.cpuRequest, '250m'],
    [ANNOTATION.memoryRequest, '64Mi', (s) => s.resources.memoryRequest, '64Mi'],
    [ANNOTATION.cpuLimit, '2', (s) => s.resources.cpuLimit, '2'],
    [ANNOTATION.memoryLimit, '2Gi', (s) => s.resources.memoryLimit, '2Gi'],
    [ANNOTATION.logLevel, 'trace', (s) => s.logLevel, 'trace'],
    [ANNOTATION.logLevel, 'off', (s) => s.logLevel, 'off'],
    [ANNOTATION.nativeSidecar, 'false', (s) => s.nativeSidecar, false],
    [ANNOTATION.holdApplication, 'false', (s) => s.holdApplication, false],
    [ANNOTATION.rewriteProbes, 'false', (s) => s.rewriteProbes, false],
    [
      ANNOTATION.includeOutboundIPRanges,
      '10.0.0.0/8, fd00::/8',
      (s) => s.traffic.includeOutboundIPRanges,
      ['10.0.0.0/8', 'fd00::/8'],
    ],
    [ANNOTATION.includeOutboundIPRanges, '*', (s) => s.traffic.includeOutboundIPRanges, '*'],
    [
      ANNOTATION.excludeOutboundIPRanges,
      '169.254.169.254',
      (s) => s.traffic.excludeOutboundIPRanges,
      ['169.254.169.254/32'],
    ],
    [ANNOTATION.includeInboundPorts, '80, 443', (s) => s.traffic.includeInboundPorts, [80, 443]],
    [ANNOTATION.includeInboundPorts, '', (s) => s.traffic.includeInboundPorts, []],
    [ANNOTATION.excludeInboundPorts, '9100', (s) => s.traffic.excludeInboundPorts, [9100]],
    [
      ANNOTATION.excludeOutboundPorts,
      '5432,5432,6379',
      (s) => s.traffic.excludeOutboundPorts,
      [5432, 6379],
    ],
  ])('%s: %j', (key, value, read, expected) => {
    expect(read(settings({ [key]: value }))).toEqual(expected);
  });

  it('defaults come from the configuration', () => {
    const custom = validateConfig({
      injector: { nativeSidecar: false, logLevel: 'debug', resources: { cpuLimit: '1' } },
    });
    const s = resolveSettings({}, {}, custom.injector).settings;
    expect(s).toMatchObject({ nativeSidecar: false, holdApplication: true, logLevel: 'debug' });
    expect(s.resources).toEqual({
      cpuRequest: '100m',
      memoryRequest: '128Mi',
      cpuLimit: '1',
      memoryLimit: '1Gi',
    });
  });
});

describe('invalid values: an error naming the key and the value', () => {
  it.each<[string, string, string]>([
    [ANNOTATION.proxyImage, 'Not An Image', 'is not an image reference'],
    [ANNOTATION.cpuRequest, 'lots', 'is not a Kubernetes quantity'],
    [ANNOTATION.memoryRequest, '-1Mi', 'is not a Kubernetes quantity'],
    [ANNOTATION.cpuLimit, '1 core', 'is not a Kubernetes quantity'],
    [ANNOTATION.memoryLimit, '1GB', 'is not a Kubernetes quantity'],
    [ANNOTATION.logLevel, 'verbose', 'must be one of trace, debug, info, warn, error, off'],
    [ANNOTATION.nativeSidecar, 'yes', 'must be "true" or "false"'],
    [ANNOTATION.holdApplication, 'True', 'must be "true" or "false"'],
    [ANNOTATION.rewriteProbes, '1', 'must be "true" or "false"'],
    [ANNOTATION.includeOutboundIPRanges, '10.0.0.0/33', 'is not an IPv4 or IPv6 CIDR'],
    [ANNOTATION.excludeOutboundIPRanges, '*', 'is not an IPv4 or IPv6 CIDR'],
    [ANNOTATION.excludeOutboundIPRanges, 'fe80::1%eth0', 'is not an IPv4 or IPv6 CIDR'],
    [ANNOTATION.includeInboundPorts, '80,abc', 'is not a port'],
    [ANNOTATION.excludeInboundPorts, '0', 'is not a port'],
    [ANNOTATION.excludeOutboundPorts, '70000', 'is not a port'],
  ])('%s: %j', (key, value, reason) => {
    const error = thrown(() =>
      inject(pod('web', withAnnotation(key, value)), { config, namespace: 'shop', version: '1' }),
    );
    expect(error.code).toBe('INJ_ERR_ANNOTATION');
    expect(error.status).toBe(400);
    expect(error.message).toContain(key);
    expect(error.message).toContain(JSON.stringify(value));
    expect(error.message).toContain(reason);
  });

  it('covers every key of the registry', () => {
    // The table above has one row per key; this keeps it honest when a key is added.
    const keys = new Set(Object.values(ANNOTATION));
    expect(keys.size).toBe(ANNOTATIONS.length);
  });

  it('lists every invalid annotation in one error', () => {
    const error = thrown(() =>
      settings({ [ANNOTATION.logLevel]: 'loud', [ANNOTATION.cpuRequest]: 'x' }),
    );
    expect(error.message).toMatch(/^invalid annotations: /);
    expect(error.details).toHaveLength(2);
  });

  it('refuses a value that is not a string (an unquoted YAML boolean)', () => {
    const error = thrown(() => settings({ [ANNOTATION.nativeSidecar]: true }));
    expect(error.message).toBe(
      'invalid annotation proxy.mooring.dev/native-sidecar: true must be a string (quote it in YAML: "…")',
    );
  });

  it('refuses a request above the limit, naming the annotation that was set', () => {
    expect(thrown(() => settings({ [ANNOTATION.memoryRequest]: '2Gi' })).message).toBe(
      'invalid annotation proxy.mooring.dev/memory-request: "2Gi" is above the memory limit 1Gi ' +
        '(raise it with proxy.mooring.dev/memory-limit)',
    );
    expect(thrown(() => settings({ [ANNOTATION.memoryLimit]: '64Mi' })).message).toBe(
      'invalid annotation proxy.mooring.dev/memory-limit: "64Mi" is below the memory request 128Mi',
    );
    expect(
      settings({ [ANNOTATION.cpuRequest]: '2', [ANNOTATION.cpuLimit]: '2000m' }).resources.cpuLimit,
    ).toBe('2000m');
  });

  it('refuses a mooring.dev/inject label that is neither "true" nor "false"', () => {
    const error = thrown(() =>
      inject(pod('web', withLabel(INJECT_LABEL, 'enabled')), {
        config,
        namespace: 'shop',
        version: '1',
      }),
    );
    expect(error.code).toBe('INJ_ERR_ANNOTATION');
    expect(error.message).toBe(
      'invalid label mooring.dev/inject: "enabled" must be "true" or "false"',
    );
  });
});

describe('warnings for keys that have no effect', () => {
  const warnings = (annotations: Record<string, string>, labels: Record<string, string> = {}) =>
    resolveSettings(annotations, labels, config.injector).warnings;

  it.each([
    [
      { 'proxy.mooring.dev/cpu-requests': '1' },
      'unknown annotation proxy.mooring.dev/cpu-requests is ignored (did you mean proxy.mooring.dev/cpu-request?)',
    ],
    [
      { 'proxy.mooring.dev/imgae': 'x' },
      'unknown annotation proxy.mooring.dev/imgae is ignored (did you mean proxy.mooring.dev/image?)',
    ],
    [
      { 'traffic.mooring.dev/whatever-this-is': 'x' },
      'unknown annotation traffic.mooring.dev/whatever-this-is is ignored',
    ],
    [
      { 'mooring.dev/inject': 'false' },
      "annotation mooring.dev/inject has no effect: mooring.dev/inject is read from the Pod's labels",
    ],
  ])('%j', (annotations, expected) => {
    expect(warnings(annotations)).toEqual([expected]);
  });

  it('warns about annotation keys used as labels and a misspelt inject label', () => {
    expect(warnings({}, { [ANNOTATION.logLevel]: 'debug', 'mooring.dev/injcet': 'true' })).toEqual([
      "label proxy.mooring.dev/log-level has no effect: proxy.mooring.dev/log-level is read from the Pod's annotations",
      'unknown label mooring.dev/injcet is ignored (did you mean mooring.dev/inject?)',
    ]);
  });

  it('says nothing about other domains, the status annotation or the inject label', () => {
    expect(
      warnings(
        { 'example.com/x': '1', 'mooring.dev/status': '{}', 'notmooring.dev/x': '1' },
        { 'mooring.dev/inject': 'true', app: 'web' },
      ),
    ).toEqual([]);
  });

  it('suggests only close keys', () => {
    expect(
      closestKey(
        'proxy.mooring.dev/totally-different',
        ANNOTATIONS.map((a) => a.key),
      ),
    ).toBeUndefined();
  });
});

describe('value parsers', () => {
  it.each([
    ['100m', 0.1],
    ['0.5', 0.5],
    ['.5', 0.5],
    ['128Mi', 128 * 2 ** 20],
    ['1Gi', 2 ** 30],
    ['2k', 2000],
    ['1e3', 1000],
    ['1E', 1e18],
  ])('quantity %s is %d', (text, value) => {
    expect(quantityValue(text)).toBeCloseTo(value);
  });

  it.each(['', 'm', '1.2.3', '-1', '+1', '1 Gi', '1gb', 'Mi'])('%j is not a quantity', (text) => {
    expect(quantityValue(text)).toBeUndefined();
  });

  it.each([
    'nginx',
    'nginx:1.25',
    'docker.io/library/nginx:1.25-alpine',
    'localhost:5000/a/b/c:tag_1.0',
    'ghcr.io/mooring-dev/mooring-proxy@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef',
  ])('%s is an image reference', (ref) => {
    expect(isImageReference(ref)).toBe(true);
  });

  it.each(['', 'Nginx', 'nginx:', 'a b', 'nginx:tag:tag', 'registry/-bad', 'image@sha256:short'])(
    '%j is not an image reference',
    (ref) => {
      expect(isImageReference(ref)).toBe(false);
    },
  );
});

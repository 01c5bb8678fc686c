import { parseAppProbes } from '../../../src/agent/probes';
import { probeForPath } from '../../../src/agent/servers';

const parse = (value: unknown) => parseAppProbes(JSON.stringify(value));

describe('parseAppProbes', () => {
  it('reads an HTTP probe with scheme, host, headers and timeout', () => {
    const probes = parse({
      'web/readyz': {
        httpGet: {
          path: '/ready',
          port: 8080,
          scheme: 'HTTPS',
          host: '10.0.0.1',
          httpHeaders: [{ name: 'X-Probe', value: 'yes' }],
        },
        timeoutSeconds: 3,
      },
    });
    expect(probes.get('web/readyz')).toEqual({
      action: {
        type: 'http',
        scheme: 'https',
        host: '10.0.0.1',
        port: 8080,
        path: '/ready',
        headers: [{ name: 'X-Probe', value: 'yes' }],
      },
      timeoutSeconds: 3,
    });
  });

  it('defaults to HTTP, path /, no host, a 1-second timeout', () => {
    expect(parse({ 'web/livez': { httpGet: { port: 80 } } }).get('web/livez')).toEqual({
      action: { type: 'http', scheme: 'http', host: undefined, port: 80, path: '/', headers: [] },
      timeoutSeconds: 1,
    });
  });

  it('reads TCP and gRPC probes', () => {
    const probes = parse({
      'db/livez': { tcpSocket: { port: 5432 } },
      'db/startupz': { grpc: { port: 9090, service: 'db' }, timeoutSeconds: 5 },
      'db/readyz': { grpc: { port: 9090 } },
    });
    expect(probes.get('db/livez')?.action).toEqual({ type: 'tcp', host: undefined, port: 5432 });
    expect(probes.get('db/startupz')).toEqual({
      action: { type: 'grpc', port: 9090, service: 'db' },
      timeoutSeconds: 5,
    });
    expect(probes.get('db/readyz')?.action).toEqual({ type: 'grpc', port: 9090, service: '' });
  });

  it('accepts a numeric string port', () => {
    expect(
      parse({ 'a/livez': { tcpSocket: { port: '81' } } }).get('a/livez')?.action,
    ).toMatchObject({ port: 81 });
  });

  it('reads empty text as no probes', () => {
    expect(parseAppProbes('').size).toBe(0);
  });

  it.each([
    ['a key without a kind', { web: { tcpSocket: { port: 1 } } }, /key "web"/],
    ['an unknown kind', { 'web/healthz': { tcpSocket: { port: 1 } } }, /livez\|readyz\|startupz/],
    ['no handler', { 'web/livez': { timeoutSeconds: 1 } }, /exactly one of/],
    [
      'two handlers',
      { 'web/livez': { tcpSocket: { port: 1 }, grpc: { port: 1 } } },
      /exactly one of/,
    ],
    ['a named port', { 'web/livez': { httpGet: { port: 'http' } } }, /named ports/],
    ['a port out of range', { 'web/livez': { tcpSocket: { port: 70000 } } }, /port/],
    ['an exec probe', { 'web/livez': { exec: { command: ['true'] } } }, /exactly one of/],
    ['a bad scheme', { 'web/livez': { httpGet: { port: 1, scheme: 'FTP' } } }, /HTTP or HTTPS/],
    [
      'a bad header',
      { 'web/livez': { httpGet: { port: 1, httpHeaders: [{ name: 'x' }] } } },
      /httpHeaders\[0\]/,
    ],
    [
      'a zero timeout',
      { 'web/livez': { tcpSocket: { port: 1 }, timeoutSeconds: 0 } },
      /timeoutSeconds/,
    ],
    ['a list', [1], /JSON object/],
  ])('refuses %s', (_name, value, message) => {
    expect(() => parse(value)).toThrow(message);
  });

  it('refuses text that is not JSON', () => {
    expect(() => parseAppProbes('{')).toThrow(/not valid JSON/);
  });
});

describe('probeForPath', () => {
  const probes = parse({
    'web/livez': { tcpSocket: { port: 1 } },
    'my-app/readyz': { tcpSocket: { port: 2 } },
  });

  it.each([
    ['/app-health/web/livez', 1],
    ['/app-health/my-app/readyz', 2],
  ])('finds %s', (path, port) => {
    expect(probeForPath(path, probes)?.action).toMatchObject({ port });
  });

  it.each([
    ['an unknown container', '/app-health/db/livez'],
    ['an unknown kind', '/app-health/web/healthz'],
    ['a known container without that probe', '/app-health/web/readyz'],
    ['no container', '/app-health/livez'],
    ['another prefix', '/health/web/livez'],
  ])('finds nothing for %s', (_name, path) => {
    expect(probeForPath(path, probes)).toBeUndefined();
  });
});

describe('the contract with the injector (MOORING_APP_PROBES)', () => {
  it("reads what the injector's probe rewriting hands over, named ports resolved", async () => {
    const { appProbesJson, rewriteProbes } = await import('../../../src/injector/probes');
    const container = {
      name: 'web',
      ports: [{ name: 'http', containerPort: 8080 }],
      livenessProbe: {
        httpGet: {
          path: '/live',
          port: 'http',
          scheme: 'HTTPS',
          httpHeaders: [{ name: 'X-A', value: 'b' }],
        },
        timeoutSeconds: 4,
      },
      readinessProbe: { tcpSocket: { port: 8080 } },
      startupProbe: { grpc: { port: 9090, service: 'web' } },
    };
    const { probes } = rewriteProbes(container, 15020);
    const parsed = parseAppProbes(appProbesJson(probes) ?? '');
    expect(parsed.get('web/livez')).toEqual({
      action: {
        type: 'http',
        scheme: 'https',
        host: undefined,
        port: 8080,
        path: '/live',
        headers: [{ name: 'X-A', value: 'b' }],
      },
      timeoutSeconds: 4,
    });
    expect(parsed.get('web/readyz')).toEqual({
      action: { type: 'tcp', host: undefined, port: 8080 },
      timeoutSeconds: 1,
    });
    expect(parsed.get('web/startupz')).toEqual({
      action: { type: 'grpc', port: 9090, service: 'web' },
      timeoutSeconds: 1,
    });
  });
});

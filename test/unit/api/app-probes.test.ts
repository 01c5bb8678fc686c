import { parseAppProbes } from '../../../src/api/app-probes';

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
      httpGet: {
        scheme: 'HTTPS',
        host: '10.0.0.1',
        port: 8080,
        path: '/ready',
        httpHeaders: [{ name: 'X-Probe', value: 'yes' }],
      },
      timeoutSeconds: 3,
    });
  });

  it('defaults to HTTP, path /, no host, a 1-second timeout; adds a missing leading slash', () => {
    expect(parse({ 'web/livez': { httpGet: { port: 80 } } }).get('web/livez')).toStrictEqual({
      httpGet: { scheme: 'HTTP', port: 80, path: '/', httpHeaders: [] },
      timeoutSeconds: 1,
    });
    expect(
      parse({ 'web/livez': { httpGet: { port: 80, path: 'live', scheme: 'https' } } }).get(
        'web/livez',
      ),
    ).toMatchObject({ httpGet: { path: '/live', scheme: 'HTTPS' } });
  });

  it('reads TCP and gRPC probes', () => {
    const probes = parse({
      'db/livez': { tcpSocket: { port: 5432 } },
      'db/startupz': { grpc: { port: 9090, service: 'db' }, timeoutSeconds: 5 },
      'db/readyz': { grpc: { port: 9090 } },
    });
    expect(probes.get('db/livez')).toStrictEqual({ tcpSocket: { port: 5432 }, timeoutSeconds: 1 });
    expect(probes.get('db/startupz')).toEqual({
      grpc: { port: 9090, service: 'db' },
      timeoutSeconds: 5,
    });
    expect(probes.get('db/readyz')).toEqual({
      grpc: { port: 9090, service: '' },
      timeoutSeconds: 1,
    });
  });

  it('accepts a numeric string port', () => {
    expect(parse({ 'a/livez': { tcpSocket: { port: '81' } } }).get('a/livez')).toMatchObject({
      tcpSocket: { port: 81 },
    });
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

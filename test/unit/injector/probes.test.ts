import { appProbesText, parseAppProbes } from '../../../src/api/app-probes';
import type { Container, Probe } from '../../../src/injector/pod';
import { rewriteProbes } from '../../../src/injector/probes';
import {
  container,
  execProbe,
  grpc,
  httpGet,
  tcpSocket,
  withPort,
  withProbe,
} from '../../fixtures/pods';

const AGENT = 15020;
const agentProbe = (path: string, timing: Partial<Probe> = { periodSeconds: 10 }): Probe => ({
  httpGet: { path, port: AGENT, scheme: 'HTTP' },
  ...timing,
});

function rewrite(c: Container) {
  const copy = structuredClone(c);
  return { container: copy, ...rewriteProbes(copy, AGENT) };
}

describe('rewriteProbes', () => {
  it.each<[string, Probe, Record<string, unknown>]>([
    [
      'an HTTP probe on a named port',
      httpGet('http', '/ready'),
      { httpGet: { path: '/ready', port: 8080 }, timeoutSeconds: 1 },
    ],
    [
      'an HTTP probe on a number',
      httpGet(9090, '/ready'),
      { httpGet: { path: '/ready', port: 9090 }, timeoutSeconds: 1 },
    ],
    [
      'an HTTP probe with host, scheme and headers',
      httpGet('https', '/x', {
        host: '10.0.0.1',
        scheme: 'HTTPS',
        httpHeaders: [{ name: 'A', value: 'b' }],
      }),
      {
        httpGet: {
          path: '/x',
          port: 8443,
          host: '10.0.0.1',
          scheme: 'HTTPS',
          httpHeaders: [{ name: 'A', value: 'b' }],
        },
        timeoutSeconds: 1,
      },
    ],
    [
      'a TCP probe on a named port',
      tcpSocket('http'),
      { tcpSocket: { port: 8080 }, timeoutSeconds: 1 },
    ],
    [
      'a TCP probe with a host',
      tcpSocket(8080, { host: 'localhost' }),
      { tcpSocket: { port: 8080, host: 'localhost' }, timeoutSeconds: 1 },
    ],
    ['a gRPC probe', grpc(9090), { grpc: { port: 9090 }, timeoutSeconds: 1 }],
    [
      'a gRPC probe with a service',
      grpc(9090, 'health'),
      { grpc: { port: 9090, service: 'health' }, timeoutSeconds: 1 },
    ],
    [
      'a probe with a timeout',
      { ...tcpSocket(8080), timeoutSeconds: 7 },
      { tcpSocket: { port: 8080 }, timeoutSeconds: 7 },
    ],
  ])('%s becomes an HTTP GET on the agent, the original handed over', (_name, probe, original) => {
    const c = container(
      'web',
      withPort(8080, 'http'),
      withPort(8443, 'https'),
      withProbe('readinessProbe', probe),
    );
    const result = rewrite(c);
    const { httpGet: _h, tcpSocket: _t, grpc: _g, ...timing } = probe;
    expect(result.container.readinessProbe).toEqual(agentProbe('/app-health/web/readyz', timing));
    expect(result.probes).toEqual([['web/readyz', original]]);
    expect(result.warnings).toEqual([]);
  });

  it('keeps every timing field', () => {
    const probe: Probe = {
      tcpSocket: { port: 8080 },
      initialDelaySeconds: 3,
      periodSeconds: 4,
      timeoutSeconds: 5,
      successThreshold: 1,
      failureThreshold: 6,
      terminationGracePeriodSeconds: 7,
    };
    const { container: out } = rewrite(container('web', withProbe('livenessProbe', probe)));
    const { tcpSocket: _t, ...timing } = probe;
    expect(out.livenessProbe).toEqual(agentProbe('/app-health/web/livez', timing));
  });

  it('names the three kinds livez, readyz and startupz, in that order', () => {
    const c = container(
      'db',
      withProbe('startupProbe', tcpSocket(5432)),
      withProbe('readinessProbe', tcpSocket(5432)),
      withProbe('livenessProbe', tcpSocket(5432)),
    );
    const { container: out, probes } = rewrite(c);
    expect(probes.map(([key]) => key)).toEqual(['db/livez', 'db/readyz', 'db/startupz']);
    expect(out.startupProbe?.httpGet?.path).toBe('/app-health/db/startupz');
  });

  it('leaves exec probes untouched', () => {
    const c = container('web', withProbe('livenessProbe', execProbe('cat', '/tmp/ok')));
    const result = rewrite(c);
    expect(result.container).toEqual(c);
    expect(result.probes).toEqual([]);
  });

  it('leaves a probe on an unknown named port as it is, with a warning', () => {
    const c = container(
      'web',
      withPort(8080, 'http'),
      withProbe('readinessProbe', httpGet('htpp')),
    );
    const result = rewrite(c);
    expect(result.container).toEqual(c);
    expect(result.probes).toEqual([]);
    expect(result.warnings).toEqual([
      'container web: readinessProbe port "htpp" is not a named port of the container; the probe is not rewritten and the kubelet calls the app directly',
    ]);
  });

  it('leaves a probe whose header value is not a string as it is, with a warning', () => {
    const probe = {
      httpGet: { path: '/', port: 8080, httpHeaders: [{ name: 'X-Probe', value: true }] },
    } as unknown as Probe;
    const c = container('web', withProbe('livenessProbe', probe));
    const result = rewrite(c);
    expect(result.container).toEqual(c);
    expect(result.probes).toEqual([]);
    expect(result.warnings).toEqual([
      'container web: livenessProbe httpHeaders are not {name, value} strings (quote them in YAML); the probe is not rewritten and the kubelet calls the app directly',
    ]);
  });

  it('does not change the key order of the probe (the handler stays in its place)', () => {
    const probe = { periodSeconds: 1, tcpSocket: { port: 1 }, failureThreshold: 2 } as Probe;
    const { container: out } = rewrite(container('web', withProbe('livenessProbe', probe)));
    expect(Object.keys(out.livenessProbe ?? {})).toEqual([
      'periodSeconds',
      'httpGet',
      'failureThreshold',
    ]);
  });
});

describe('MOORING_APP_PROBES', () => {
  it('is absent when there is nothing to hand over', () => {
    expect(appProbesText([])).toBeUndefined();
  });

  it("is the shape the agent's parser reads (src/api/app-probes.ts)", () => {
    const c = container(
      'web',
      withPort(8080, 'http'),
      withProbe(
        'livenessProbe',
        httpGet('http', '/live', { httpHeaders: [{ name: 'X', value: 'y' }], host: '127.0.0.1' }),
      ),
      withProbe('readinessProbe', { ...tcpSocket('http'), timeoutSeconds: 3 }),
      withProbe('startupProbe', grpc(9090, 'svc')),
    );
    const json = appProbesText(rewrite(c).probes);
    const parsed = parseAppProbes(json ?? '');
    expect(Object.fromEntries(parsed)).toEqual({
      'web/livez': {
        httpGet: {
          scheme: 'HTTP',
          host: '127.0.0.1',
          port: 8080,
          path: '/live',
          httpHeaders: [{ name: 'X', value: 'y' }],
        },
        timeoutSeconds: 1,
      },
      'web/readyz': { tcpSocket: { port: 8080 }, timeoutSeconds: 3 },
      'web/startupz': { grpc: { port: 9090, service: 'svc' }, timeoutSeconds: 1 },
    });
  });
});
